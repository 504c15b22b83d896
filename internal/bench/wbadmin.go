package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/linuxvss/vss/internal/backupfmt"
	"github.com/linuxvss/vss/internal/cli/wbadmin"
)

// The change of the differential part: wbPagePercent % of the database
// file's pages of wbPageSize bytes, chosen at random (a fixed seed per
// round), each overwritten with fresh random bytes.
const (
	wbPageSize    = 8 << 10
	wbPagePercent = 1
	// resticPassword is the password of the benchmark's restic repositories.
	resticPassword = "vssbench"
)

// benchWbadmin measures wbadmin's backups against cp -a and restic, on the
// same data in one run, the source a btrfs volume, every backup written
// into a fresh directory of a separate ext4 volume, and the page cache
// dropped (sync; echo 3 > /proc/sys/vm/drop_caches) before every timed run
// so that each tool reads its source from disk:
//
//   - full backup throughput of a tree of large and small files: `wbadmin
//     start backup` (run in this process, embedded service, reading from a
//     btrfs shadow copy it makes) against `cp -a` and `restic backup` (a new
//     local repository each time, default options), interleaved round after
//     round after a warm-up round; each time is taken with and without a
//     syncfs of the target after the command, since cp leaves its data in
//     the page cache;
//   - a differential backup of a database file after 1% of its 8 KiB pages
//     changed: `wbadmin start backup -vssFull -differential` after a
//     `-vssFull -full` one, against a second `restic backup` after a first;
//     the bytes each read from storage (this process's read_bytes for
//     wbadmin, the child's ru_inblock for restic), the bytes each added to
//     its target (the new version's directory; the growth of the
//     repository) and the times.
func (r *runner) benchWbadmin(ctx context.Context) (rows []*Row, err error) {
	fx, err := NewFixtures(r.fx.Dir(), "wbadmin-", r.log)
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, fx.Cleanup()) }()
	wp := r.p.wb
	const smallMax = 64 << 10 // the largest small file fillTree makes
	treeMax := wp.large + int64(wp.smallFiles)*smallMax
	src, err := fx.NewFS(ctx, "btrfs", "src", 2*(treeMax+wp.db)+(1<<30))
	if err != nil {
		return nil, err
	}
	dst, err := fx.NewFS(ctx, "ext4", "target", 2*treeMax+4*wp.db+(2<<30))
	if err != nil {
		return nil, err
	}
	_, rerr := exec.LookPath("restic")
	haveRestic := rerr == nil
	if !haveRestic {
		r.log.Warn("wbadmin: restic is not installed; its rows are not measured (apt-get install restic)")
	}
	w := &wbBench{runner: r, src: src, dst: dst, state: filepath.Join(fx.Dir(), "state"),
		cache: filepath.Join(fx.Dir(), "restic-cache"), haveRestic: haveRestic}

	full, err := w.fullBackups(ctx)
	rows = append(rows, full...)
	if err != nil {
		return rows, err
	}
	diff, err := w.differential(ctx)
	return append(rows, diff...), err
}

// wbBench is the state of the wbadmin benchmark.
type wbBench struct {
	*runner
	src, dst   *FS
	state      string // wbadmin's state directory (on the work directory's filesystem)
	cache      string // restic's cache directory (idem)
	haveRestic bool
}

// fullBackups times full backups of a tree by wbadmin, cp -a and restic.
func (w *wbBench) fullBackups(ctx context.Context) ([]*Row, error) {
	wp := w.p.wb
	tree := filepath.Join(w.src.Dir, "tree")
	t := time.Now()
	nLarge, err := fillData(ctx, filepath.Join(tree, "large"), wp.large, wp.largeFile, 300)
	if err != nil {
		return nil, err
	}
	small, err := fillTree(ctx, filepath.Join(tree, "small"), wp.smallFiles, 100, 301)
	if err != nil {
		return nil, err
	}
	treeBytes := wp.large + small
	w.log.Info("wbadmin: tree ready", "large files", nLarge, "small files", wp.smallFiles, "data", FormatBytes(treeBytes),
		"took", time.Since(t).Round(time.Millisecond), "rounds", wp.reps)

	type tool struct {
		name string
		// prepare makes what the tool needs in dest, untimed.
		prepare func(dest string) error
		// backup backs the tree up into dest and returns its time and the
		// bytes it read from storage.
		backup       func(dest string) (time.Duration, int64, error)
		proc, synced *Measure
		read, stored []int64
	}
	wbArgs := w.wbadminArgs("DEST", tree)
	tools := []*tool{
		{name: "wbadmin", backup: func(dest string) (time.Duration, int64, error) {
			res, err := w.wbadmin(ctx, dest, tree)
			return res.d, res.read, err
		}, proc: &Measure{Label: "wbadmin " + strings.Join(wbArgs, " ") + " (in process)"}},
		{name: "cp", backup: func(dest string) (time.Duration, int64, error) {
			var u syscall.Rusage
			c := cmd("cp", "-a", tree, dest)
			c.usage = &u
			d, _, err := c.run(ctx)
			return d, u.Inblock * 512, err
		}, proc: &Measure{Label: "cp -a " + tree + " DEST"}},
	}
	if w.haveRestic {
		tools = append(tools, &tool{name: "restic",
			prepare: func(dest string) error {
				_, _, err := w.restic(dest, "init").run(ctx)
				return err
			},
			backup: func(dest string) (time.Duration, int64, error) {
				res, err := w.resticBackup(ctx, dest, tree)
				return res.d, res.read, err
			}, proc: &Measure{Label: "restic --repo DEST backup " + tree}})
	}
	for _, tl := range tools {
		tl.proc.Bytes = treeBytes
		tl.synced = &Measure{Label: tl.proc.Label + " && syncfs", Bytes: treeBytes}
	}
	for round := 0; round <= wp.reps; round++ {
		w.log.Info("wbadmin: full backups", "round", round, "of", wp.reps, "warm-up", round == 0)
		for _, k := range rotate(len(tools), round) {
			tl := tools[k]
			dest := filepath.Join(w.dst.Dir, fmt.Sprintf("full-%s-%d", tl.name, round))
			if tl.prepare != nil {
				if err := tl.prepare(dest); err != nil {
					return nil, err
				}
			}
			if err := dropCaches(); err != nil {
				return nil, err
			}
			d, read, err := tl.backup(dest)
			if err != nil {
				return nil, err
			}
			t := time.Now()
			if err := syncFS(w.dst.Dir); err != nil {
				return nil, err
			}
			s := time.Since(t)
			stored, err := dirBytes(dest)
			if err != nil {
				return nil, err
			}
			if round > 0 {
				tl.proc.Add(d)
				tl.synced.Add(d + s)
				tl.read = append(tl.read, read)
				tl.stored = append(tl.stored, stored)
			}
			w.log.Debug("wbadmin: full backup", "tool", tl.name, "took", d, "syncfs", s, "read", FormatBytes(read), "stored", FormatBytes(stored))
			if err := w.clean(ctx, dest); err != nil {
				return nil, err
			}
		}
	}
	var ios []string
	for _, tl := range tools {
		ios = append(ios, fmt.Sprintf("%s read %s, wrote %s", tl.name, FormatBytes(int64(MedianBytes(tl.read))), FormatBytes(int64(MedianBytes(tl.stored)))))
	}
	what := fmt.Sprintf("full backup, %s tree (%d x %s + %d small files), btrfs -> ext4",
		FormatBytes(treeBytes), nLarge, FormatBytes(wp.largeFile), wp.smallFiles)
	wb, cp := tools[0], tools[1]
	gcp := SpeedAtLeast(0.9)
	rows := []*Row{
		{Bench: BenchWbadmin, What: what + ": wbadmin vs cp -a, both + syncfs", Ours: wb.synced, Theirs: cp.synced, Goal: &gcp,
			Note: fmt.Sprintf("n=%d (+1 warm-up), interleaved, page cache dropped before each; wbadmin includes its shadow copy; medians: %s", wp.reps, strings.Join(ios, "; "))},
		{Bench: BenchWbadmin, What: what + ": wbadmin vs cp -a (cp's data not yet on disk)", Ours: wb.proc, Theirs: cp.proc,
			Note: "information: cp exits with its data in the page cache; wbadmin has fsynced everything"},
	}
	if w.haveRestic {
		rs := tools[2]
		g := SpeedAtLeast(2)
		rows = append(rows, &Row{Bench: BenchWbadmin, What: what + ": wbadmin vs restic backup (new repository), both + syncfs",
			Ours: wb.synced, Theirs: rs.synced, Goal: &g,
			Note: fmt.Sprintf("restic without syncfs %s; restic compresses and deduplicates, wbadmin does neither (incompressible data)", cell(rs.proc))})
	} else {
		rows = append(rows, &Row{Bench: BenchWbadmin, What: what + ": wbadmin vs restic backup", NotMeasured: "restic is not installed"})
	}
	return rows, nil
}

// differential times a differential backup of a database file after 1%
// of its pages changed, by wbadmin and by restic.
func (w *wbBench) differential(ctx context.Context) ([]*Row, error) {
	wp := w.p.wb
	dbDir := filepath.Join(w.src.Dir, "db")
	t := time.Now()
	if _, err := fillData(ctx, dbDir, wp.db, wp.db, 400); err != nil {
		return nil, err
	}
	dbFile := dataFile(dbDir, 0)
	w.log.Info("wbadmin: database file ready", "file", dbFile, "size", FormatBytes(wp.db), "took", time.Since(t).Round(time.Millisecond), "rounds", wp.reps)
	wbCmd := "wbadmin start backup -include:" + dbDir
	rsCmd := "restic backup " + dbDir
	label := func(l string) *Measure { return &Measure{Label: l} }
	var (
		wbFull, rsFull   = label(wbCmd + " -vssFull -full"), label(rsCmd + " (first)")
		wbDiff, rsDiff   = label(wbCmd + " -vssFull -differential && syncfs"), label(rsCmd + " (second) && syncfs")
		wbRead, rsRead   = label("bytes read from storage by " + wbCmd + " -vssFull -differential (/proc/self/io)"), label("bytes read from storage by " + rsCmd + " (second; ru_inblock)")
		wbStore, rsStore = label("size of the version made by " + wbCmd + " -vssFull -differential"), label("growth of the repository by " + rsCmd + " (second)")
		wbOwnRead        []int64 // what wbadmin says it read and stored
		wbOwnStored      []int64
		rsProcessed      []int64 // what restic says it processed and added
		rsAdded          []int64
		changed          int
	)
	wbFull.Bytes, rsFull.Bytes = wp.db, wp.db
	for round := 1; round <= wp.reps; round++ {
		w.log.Info("wbadmin: differential", "round", round, "of", wp.reps)
		target := filepath.Join(w.dst.Dir, fmt.Sprintf("diff-wbadmin-%d", round))
		repo := filepath.Join(w.dst.Dir, fmt.Sprintf("diff-restic-%d", round))
		// The full backups the differential ones start from.
		if err := dropCaches(); err != nil {
			return nil, err
		}
		res, err := w.wbadmin(ctx, target, dbDir, "-vssFull", "-full")
		if err != nil {
			return nil, err
		}
		wbFull.Add(res.d)
		if err := settleBtrfs(ctx, w.src.Dir); err != nil {
			return nil, err
		}
		if w.haveRestic {
			if _, _, err := w.restic(repo, "init").run(ctx); err != nil {
				return nil, err
			}
			if err := dropCaches(); err != nil {
				return nil, err
			}
			rres, err := w.resticBackup(ctx, repo, dbDir)
			if err != nil {
				return nil, err
			}
			rsFull.Add(rres.d)
		}
		if changed, err = changePages(ctx, dbFile, wbPageSize, wbPagePercent, uint64(500+round)); err != nil {
			return nil, err
		}
		variants := []func() error{
			func() error {
				if err := dropCaches(); err != nil {
					return err
				}
				res, err := w.wbadmin(ctx, target, dbDir, "-vssFull", "-differential")
				if err != nil {
					return err
				}
				t := time.Now()
				if err := syncFS(w.dst.Dir); err != nil {
					return err
				}
				wbDiff.Add(res.d + time.Since(t))
				size, err := dirBytes(filepath.Join(target, res.version))
				if err != nil {
					return err
				}
				wbRead.Sizes = append(wbRead.Sizes, res.read)
				wbStore.Sizes = append(wbStore.Sizes, size)
				wbOwnRead = append(wbOwnRead, res.bytesRead)
				wbOwnStored = append(wbOwnStored, res.bytesStored)
				return settleBtrfs(ctx, w.src.Dir)
			},
			func() error {
				if !w.haveRestic {
					return nil
				}
				before, err := dirBytes(repo)
				if err != nil {
					return err
				}
				if err := dropCaches(); err != nil {
					return err
				}
				res, err := w.resticBackup(ctx, repo, dbDir)
				if err != nil {
					return err
				}
				t := time.Now()
				if err := syncFS(w.dst.Dir); err != nil {
					return err
				}
				rsDiff.Add(res.d + time.Since(t))
				after, err := dirBytes(repo)
				if err != nil {
					return err
				}
				rsRead.Sizes = append(rsRead.Sizes, res.read)
				rsStore.Sizes = append(rsStore.Sizes, after-before)
				rsProcessed = append(rsProcessed, res.summary.TotalBytesProcessed)
				rsAdded = append(rsAdded, res.summary.DataAdded)
				return nil
			},
		}
		for _, k := range rotate(len(variants), round) {
			if err := variants[k](); err != nil {
				return nil, err
			}
		}
		if err := w.clean(ctx, target, repo); err != nil {
			return nil, err
		}
	}
	what := fmt.Sprintf("differential, %s file, %d%% of its 8 KiB pages changed", FormatBytes(wp.db), wbPagePercent)
	n := fmt.Sprintf("n=%d, page cache dropped before each; %d pages at random (a new seed each round) changed after a full backup", wp.reps, changed)
	med := func(v []int64) string { return FormatBytes(int64(MedianBytes(v))) }
	if !w.haveRestic {
		return []*Row{
			{Bench: BenchWbadmin, What: what + ": wbadmin -vssFull -differential, + syncfs", Ours: wbDiff,
				Note: fmt.Sprintf("%s; read %s, stored %s; restic not installed", n, cell(wbRead), cell(wbStore))},
		}, nil
	}
	return []*Row{
		{Bench: BenchWbadmin, What: what + ": time, wbadmin -differential vs restic (2nd backup), + syncfs",
			Ours: wbDiff, Theirs: rsDiff, Note: n},
		{Bench: BenchWbadmin, What: what + ": bytes read from storage, wbadmin vs restic", Ours: wbRead, Theirs: rsRead,
			Note: fmt.Sprintf("file bytes read: wbadmin %s (its bytes_read), restic %s (total_bytes_processed)", med(wbOwnRead), med(rsProcessed))},
		{Bench: BenchWbadmin, What: what + ": bytes added to the target, wbadmin vs restic", Ours: wbStore, Theirs: rsStore,
			Note: fmt.Sprintf("wbadmin's new version directory (bytes_stored %s) vs the repository's growth (data_added %s); %d KiB blocks vs restic's content-defined chunks",
				med(wbOwnStored), med(rsAdded), backupfmt.DefaultChunkSize>>10)},
		{Bench: BenchWbadmin, What: fmt.Sprintf("full backup, %s file (the base): wbadmin -vssFull -full vs restic (1st backup)", FormatBytes(wp.db)),
			Ours: wbFull, Theirs: rsFull, Note: "information; times without a syncfs after"},
	}, nil
}

// wbadminArgs returns the command line of a wbadmin backup of include
// into target.
func (w *wbBench) wbadminArgs(target, include string, opts ...string) []string {
	return append([]string{"start", "backup", "-backupTarget:" + target, "-include:" + include,
		"--embedded", "--state-dir", w.state, "--config", w.config, "-quiet", "--format", "json"}, opts...)
}

// wbRun is the result of one wbadmin backup.
type wbRun struct {
	d       time.Duration
	version string
	// read is what this process read from storage meanwhile
	// (/proc/self/io read_bytes).
	read int64
	// What wbadmin reports.
	bytesRead, bytesStored int64
}

// wbadmin runs `wbadmin start backup` in this process (the service
// embedded) and returns its wall time and what it reported.
func (w *wbBench) wbadmin(ctx context.Context, target, include string, opts ...string) (wbRun, error) {
	args := w.wbadminArgs(target, include, opts...)
	var out, errb bytes.Buffer
	before, err := processReadBytes()
	if err != nil {
		return wbRun{}, err
	}
	start := time.Now()
	code := wbadmin.Main(ctx, wbadmin.Env{Args: args, Stdout: &out, Stderr: &errb})
	res := wbRun{d: time.Since(start)}
	after, err := processReadBytes()
	if err != nil {
		return wbRun{}, err
	}
	res.read = after - before
	if code != 0 {
		if ctx.Err() != nil {
			return wbRun{}, ctx.Err()
		}
		return wbRun{}, fmt.Errorf("wbadmin %s: exit status %d: %s", strings.Join(args, " "), code, strings.TrimSpace(errb.String()))
	}
	for _, line := range bytes.Split(out.Bytes(), []byte("\n")) {
		var e struct {
			Event       string `json:"event"`
			Version     string `json:"version"`
			BytesRead   int64  `json:"bytes_read"`
			BytesStored int64  `json:"bytes_stored"`
		}
		if json.Unmarshal(line, &e) == nil && e.Event == "done" {
			res.version, res.bytesRead, res.bytesStored = e.Version, e.BytesRead, e.BytesStored
		}
	}
	if res.version == "" {
		return wbRun{}, fmt.Errorf("wbadmin %s: no \"done\" event in its output: %s", strings.Join(args, " "), strings.TrimSpace(out.String()))
	}
	return res, nil
}

// restic returns a restic command on the repository repo, with the
// benchmark's password and a cache directory in the fixtures (restic's
// cache is on, as by default; only its place differs).
func (w *wbBench) restic(repo string, args ...string) command {
	c := cmd("restic", append([]string{"--repo", repo, "--cache-dir", w.cache}, args...)...)
	c.env = []string{"RESTIC_PASSWORD=" + resticPassword}
	return c
}

// resticSummary is the last line of `restic backup --json`.
type resticSummary struct {
	MessageType         string `json:"message_type"`
	DataAdded           int64  `json:"data_added"`
	TotalBytesProcessed int64  `json:"total_bytes_processed"`
}

// resticRun is the result of one restic backup.
type resticRun struct {
	d       time.Duration
	read    int64 // bytes read from storage (ru_inblock)
	summary resticSummary
}

// resticBackup runs `restic backup --json path` into repo.
func (w *wbBench) resticBackup(ctx context.Context, repo, path string) (resticRun, error) {
	var u syscall.Rusage
	c := w.restic(repo, "backup", "--json", path)
	c.usage = &u
	d, out, err := c.run(ctx)
	if err != nil {
		return resticRun{}, err
	}
	res := resticRun{d: d, read: u.Inblock * 512}
	for _, line := range bytes.Split(out, []byte("\n")) {
		var s resticSummary
		if json.Unmarshal(line, &s) == nil && s.MessageType == "summary" {
			res.summary = s
		}
	}
	if res.summary.MessageType == "" {
		return resticRun{}, fmt.Errorf("%s: no summary in its output", c)
	}
	return res, nil
}

// clean removes backups from the target volume and restic's cache, and
// lets both volumes settle, untimed.
func (w *wbBench) clean(ctx context.Context, dirs ...string) error {
	for _, d := range append(dirs, w.cache) {
		if err := os.RemoveAll(d); err != nil {
			return err
		}
	}
	if err := syncFS(w.dst.Dir); err != nil {
		return err
	}
	return settleBtrfs(ctx, w.src.Dir)
}

// dropCaches writes dirty data out and empties the page cache, dentries
// and inodes, so that the next command reads from disk.
func dropCaches() error {
	unix.Sync()
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0o644); err != nil {
		return fmt.Errorf("dropping the page cache: %w", err)
	}
	return nil
}

// processReadBytes returns the bytes this process has read from storage
// (read_bytes of /proc/self/io).
func processReadBytes() (int64, error) {
	f, err := os.Open("/proc/self/io")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "read_bytes:"); ok {
			return strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, errors.New("/proc/self/io has no read_bytes")
}

// dirBytes returns the size of the regular files below dir.
func dirBytes(dir string) (int64, error) {
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		n += fi.Size()
		return nil
	})
	return n, err
}

// changePages overwrites percent % of the pageSize pages of the file at
// path, chosen at random from seed (each at most once), with fresh random
// bytes, fsyncs it, and returns how many pages it changed.
func changePages(ctx context.Context, path string, pageSize int64, percent int, seed uint64) (int, error) {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	pages := int(fi.Size() / pageSize)
	pick := rand.New(rand.NewPCG(seed, 3)).Perm(pages)[:pages*percent/100]
	slices.Sort(pick)
	src := randomSource(seed)
	buf := make([]byte, pageSize)
	for i, p := range pick {
		if i%256 == 0 {
			if err := ctx.Err(); err != nil {
				return 0, err
			}
		}
		_, _ = src.Read(buf)
		if _, err := f.WriteAt(buf, int64(p)*pageSize); err != nil {
			return 0, fmt.Errorf("changing %s: %w", path, err)
		}
	}
	if err := f.Sync(); err != nil {
		return 0, err
	}
	return len(pick), f.Close()
}
