// Package bench is the benchmark of the shadow copy service against what a
// user would do instead (btrfs subvolume snapshot, snapper, cp --reflink;
// for wbadmin's backups, cp -a and restic),
// measured in one run on the same volumes: the compared commands are
// interleaved, round after round, and the table quotes medians and their
// ratios. Machines are shared and noisy: nothing here asserts a timing in a
// test; the table says whether each goal was met in this run.
//
// The benchmarks make their own filesystems on loop devices from sparse
// files (btrfs, XFS with reflink, ext4) and always unmount, detach and
// remove them, also on an error or a signal.
package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/linuxvss/vss/internal/config"
	"github.com/linuxvss/vss/internal/service"
)

// Benchmark names, in the order they run.
const (
	BenchCreate  = "create"
	BenchHold    = "hold"
	BenchReflink = "reflink"
	BenchCopy    = "copy"
	BenchList    = "list"
	BenchWriters = "writers"
	BenchPgbench = "pgbench"
	BenchWbadmin = "wbadmin"
)

// All lists the benchmarks in the order they run.
var All = []string{BenchCreate, BenchHold, BenchReflink, BenchCopy, BenchList, BenchWriters, BenchPgbench, BenchWbadmin}

// needVssadmin are the benchmarks that run the vssadmin binary.
var needVssadmin = []string{BenchCreate, BenchReflink, BenchList}

// Options configure a run.
type Options struct {
	// Quick uses smaller sizes and fewer repetitions (a couple of minutes).
	Quick bool
	// WorkDir holds the sparse images and the state directories; it should
	// be on the root filesystem (default /var/tmp).
	WorkDir string
	// Vssadmin is the vssadmin binary to time.
	Vssadmin string
	// Reps overrides the number of repetitions of the interleaved rounds.
	Reps int
	// Only runs these benchmarks (names of All); empty runs all.
	Only []string
	// Log receives progress; nil means slog.Default().
	Log *slog.Logger
	// ServiceLog receives the in-process service's log; nil discards all
	// but errors.
	ServiceLog *slog.Logger
}

// params are the sizes and counts of a mode.
type params struct {
	reps        int     // rounds of the interleaved comparisons (create, reflink, list)
	holdReps    int     // creates per volume for the btrfs hold
	holdSizes   []int64 // data written on the btrfs volumes of the hold benchmark
	treeFiles   int     // files of the reflink tree
	copyReps    int     // rounds of the copy provider benchmark
	copySizes   []int64 // data on the two source volumes of the copy benchmark
	copyFile    int64   // size of each data file of the copy benchmark
	copyChanges []int64 // bytes changed after the pre-copy
	listVolumes int     // btrfs subvolumes of the list benchmark
	listPerVol  int     // shadows per subvolume
	wb          wbParams
}

// wbParams are the sizes of the wbadmin benchmark.
type wbParams struct {
	reps       int   // rounds of the full backups (+1 warm-up) and of the differential
	large      int64 // data in large files in the tree
	largeFile  int64 // size of each large file
	smallFiles int   // small files (512 B to 64 KiB) in the tree
	db         int64 // size of the database file of the differential
}

func paramsFor(quick bool) params {
	if quick {
		return params{
			reps: 5, holdReps: 5, holdSizes: []int64{256 << 20, 2 << 30}, treeFiles: 10000,
			copyReps: 3, copySizes: []int64{1 << 30, 2 << 30}, copyFile: 32 << 20,
			copyChanges: []int64{0, 1 << 20, 16 << 20, 64 << 20},
			listVolumes: 20, listPerVol: 100,
			wb: wbParams{reps: 3, large: 64 << 20, largeFile: 32 << 20, smallFiles: 1000, db: 128 << 20},
		}
	}
	return params{
		reps: 15, holdReps: 15, holdSizes: []int64{1 << 30, 10 << 30}, treeFiles: 10000,
		copyReps: 5, copySizes: []int64{1 << 30, 2 << 30}, copyFile: 32 << 20,
		copyChanges: []int64{0, 1 << 20, 16 << 20, 64 << 20, 256 << 20},
		listVolumes: 20, listPerVol: 500,
		wb: wbParams{reps: 5, large: 256 << 20, largeFile: 64 << 20, smallFiles: 8000, db: 1 << 30},
	}
}

// runner is the state of one run.
type runner struct {
	opts   Options
	p      params
	log    *slog.Logger
	svcLog *slog.Logger
	fx     *Fixtures // the run's directory
	// config is a vssadmin configuration file that raises
	// max_shadow_copies to its maximum.
	config string
}

// Run runs the benchmarks and returns their rows. A benchmark that fails
// leaves a "not measured" row and its error in the report; Run goes on with
// the next one. Run returns an error only when it could not start, or when
// ctx was cancelled (with the rows measured so far).
func Run(ctx context.Context, o Options) (*Report, error) {
	start := time.Now()
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.ServiceLog == nil {
		o.ServiceLog = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	}
	for _, b := range o.Only {
		if !slices.Contains(All, b) {
			return nil, fmt.Errorf("unknown benchmark %q (known: %s)", b, strings.Join(All, ", "))
		}
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("the benchmark makes filesystems on loop devices: run it as root")
	}
	for _, tool := range []string{"losetup", "mkfs.btrfs", "btrfs", "mkfs.xfs", "mkfs.ext4", "cp"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("%s is missing (scripts/bench.sh installs what is needed): %w", tool, err)
		}
	}
	if slices.ContainsFunc(needVssadmin, func(b string) bool { return len(o.Only) == 0 || slices.Contains(o.Only, b) }) {
		if o.Vssadmin == "" {
			return nil, errors.New("no vssadmin binary given")
		}
		if _, err := os.Stat(o.Vssadmin); err != nil {
			return nil, fmt.Errorf("vssadmin binary: %w", err)
		}
	}
	work, err := filepath.Abs(o.WorkDir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(work, 0o755); err != nil {
		return nil, err
	}
	if work, err = filepath.EvalSymlinks(work); err != nil {
		return nil, err
	}
	o.WorkDir = work
	r := &runner{opts: o, p: paramsFor(o.Quick), log: o.Log, svcLog: o.ServiceLog}
	if o.Reps > 0 {
		r.p.reps, r.p.holdReps, r.p.copyReps, r.p.wb.reps = o.Reps, o.Reps, o.Reps, o.Reps
	}
	rep := &Report{Environment: CollectEnvironment(ctx, work), Mode: map[bool]string{true: "quick", false: "full"}[o.Quick]}
	fx, err := NewFixtures(work, "vssbench-", o.Log)
	if err != nil {
		return nil, err
	}
	r.fx = fx
	defer func() {
		if err := fx.Cleanup(); err != nil {
			rep.Errors = append(rep.Errors, "cleanup: "+err.Error())
		}
	}()
	r.config = filepath.Join(fx.Dir(), "vssadmin.toml")
	if err := os.WriteFile(r.config, []byte(fmt.Sprintf("max_shadow_copies = %d\n", config.MaxMaxShadowCopies)), 0o644); err != nil {
		return nil, err
	}
	benches := map[string]func(context.Context) ([]*Row, error){
		BenchCreate:  r.benchCreate,
		BenchHold:    r.benchHold,
		BenchReflink: r.benchReflink,
		BenchCopy:    r.benchCopy,
		BenchList:    r.benchList,
		BenchWriters: r.benchWriters,
		BenchPgbench: r.benchPgbench,
		BenchWbadmin: r.benchWbadmin,
	}
	for _, name := range All {
		if len(o.Only) > 0 && !slices.Contains(o.Only, name) {
			continue
		}
		t := time.Now()
		r.log.Info("benchmark start", "bench", name, "mode", rep.Mode)
		rows, err := benches[name](ctx)
		rep.Rows = append(rep.Rows, rows...)
		if err != nil {
			r.log.Error("benchmark failed", "bench", name, "err", err)
			rep.Errors = append(rep.Errors, name+": "+err.Error())
			if len(rows) == 0 {
				why := "failed: " + err.Error()
				if ctx.Err() != nil {
					why = "interrupted"
				}
				rep.Rows = append(rep.Rows, &Row{Bench: name, What: "(whole benchmark)", NotMeasured: why})
			}
		}
		r.log.Info("benchmark done", "bench", name, "took", time.Since(t).Round(time.Millisecond))
		if ctx.Err() != nil {
			rep.Elapsed = time.Since(start)
			return rep, ctx.Err()
		}
	}
	rep.Elapsed = time.Since(start)
	return rep, nil
}

// openService opens the service in this process on stateDir.
func (r *runner) openService(ctx context.Context, stateDir string, fault func(context.Context, string) error) (*service.Service, error) {
	cfg := config.Default()
	cfg.StateDir = stateDir
	cfg.MaxShadowCopies = config.MaxMaxShadowCopies
	s, err := service.Open(ctx, service.Options{Config: cfg, LockWait: 30 * time.Second, Fault: fault, Log: r.svcLog})
	if err != nil {
		return nil, fmt.Errorf("opening the service on %s: %w", stateDir, err)
	}
	return s, nil
}

// deleteAll deletes every shadow of the state directory through the
// service in this process.
func (r *runner) deleteAll(ctx context.Context, stateDir string) error {
	s, err := r.openService(ctx, stateDir, nil)
	if err != nil {
		return err
	}
	defer s.Close()
	shadows, err := s.ListShadows(ctx, service.Selection{})
	if err != nil {
		return fmt.Errorf("listing shadows: %w", err)
	}
	if len(shadows) == 0 {
		return nil
	}
	ids := make([]uuid.UUID, len(shadows))
	for i, sh := range shadows {
		ids[i] = sh.ID
	}
	if _, err := s.DeleteShadows(ctx, ids); err != nil {
		return fmt.Errorf("deleting shadows: %w", err)
	}
	return nil
}

// vssadmin returns a vssadmin command in embedded mode on stateDir.
func (r *runner) vssadmin(stateDir string, args ...string) command {
	return cmd(r.opts.Vssadmin, append([]string{"--embedded", "--state-dir", stateDir, "--config", r.config}, args...)...)
}

// rotate returns the order of n interleaved variants in round i: each
// variant takes each position equally often, so that none always runs
// right after the untimed cleanup.
func rotate(n, i int) []int {
	out := make([]int, n)
	for k := range out {
		out[k] = (k + i) % n
	}
	return out
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}
