package wbadmin_test

// Shared parts of the acceptance tests on real databases: an insert load
// that remembers when each row was sent and committed, the check that a
// restored database holds exactly the rows committed before a backup's
// freeze, and the count of the bytes that changed between two versions.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/linuxvss/vss/internal/backupfmt"
	"github.com/linuxvss/vss/internal/config"
	"github.com/linuxvss/vss/internal/service"
)

// insertLoad inserts rows 1, 2, 3… one after the other, each in its own
// transaction, until halted.
type insertLoad struct {
	insert func(ctx context.Context, id int64) error
	cancel context.CancelFunc
	done   chan struct{}

	mu   sync.Mutex
	sent []time.Time // sent[i]: when row i+1 was sent
	ret  []time.Time // ret[i]: when its commit returned (zero: not yet)
	err  error
}

func startLoad(t *testing.T, period time.Duration, insert func(ctx context.Context, id int64) error) *insertLoad {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	l := &insertLoad{insert: insert, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(l.done)
		tick := time.NewTicker(period)
		defer tick.Stop()
		for id := int64(1); ; id++ {
			l.mu.Lock()
			l.sent = append(l.sent, time.Now())
			l.ret = append(l.ret, time.Time{})
			l.mu.Unlock()
			err := insert(ctx, id)
			if ctx.Err() != nil {
				return
			}
			l.mu.Lock()
			if err != nil {
				l.err = fmt.Errorf("insert %d: %w", id, err)
				l.mu.Unlock()
				return
			}
			l.ret[id-1] = time.Now()
			l.mu.Unlock()
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	t.Cleanup(l.halt)
	return l
}

// halt stops the load and waits for it.
func (l *insertLoad) halt() {
	l.cancel()
	<-l.done
}

// failed returns the load's error, if an insert failed.
func (l *insertLoad) failed() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// committedBefore returns the highest row whose commit returned before at.
func (l *insertLoad) committedBefore(at time.Time) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	var n int64
	for i, r := range l.ret {
		if !r.IsZero() && r.Before(at) {
			n = int64(i + 1)
		}
	}
	return n
}

// sentAfter returns the first row sent after at (one past the last row
// when none was).
func (l *insertLoad) sentAfter(at time.Time) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, s := range l.sent {
		if s.After(at) {
			return int64(i + 1)
		}
	}
	return int64(len(l.sent) + 1)
}

// waitRows waits until at least n rows are committed.
func (l *insertLoad) waitRows(t *testing.T, n int64) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for l.committedBefore(time.Now()) < n {
		if err := l.failed(); err != nil {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the load did not reach %d rows", n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// requireRowsAt checks that ids are exactly 1…K for a K that every row
// committed before the backup began is in (K ≥ before) and no row sent
// after it returned is (K < after): the rows committed before the freeze.
func requireRowsAt(t *testing.T, what string, ids []int64, before, after int64) int64 {
	t.Helper()
	slices.Sort(ids)
	for i, id := range ids {
		if id != int64(i+1) {
			t.Fatalf("%s: the rows are not 1…%d: row %d where %d should be (a hole or a duplicate)", what, len(ids), id, i+1)
		}
	}
	k := int64(len(ids))
	if k < before || k >= after {
		t.Fatalf("%s holds rows 1…%d; the backup must hold every row committed before it began (%d) and none sent after it returned (%d)", what, k, before, after)
	}
	t.Logf("%s: rows 1…%d (committed before the backup began: %d; first sent after it: %d)", what, k, before, after)
	return k
}

// backupResult is the final JSON event of a backup.
type backupResult struct {
	Version     string `json:"version"`
	Kind        string `json:"kind"`
	BytesRead   int64  `json:"bytes_read"`
	BytesStored int64  `json:"bytes_stored"`
}

// lastEvent returns the "done" event of a --format json backup.
func lastEvent(t *testing.T, out string) backupResult {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var r backupResult
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &r); err != nil || r.Version == "" {
		t.Fatalf("no result event in:\n%s", out)
	}
	return r
}

// changedBytes returns the bytes of the regular files under b that differ
// from the same files under a, counted in 4 KiB pages (a new file or a
// grown part counts whole).
func changedBytes(t *testing.T, a, b string) int64 {
	t.Helper()
	const page = 4096
	var n int64
	err := filepath.WalkDir(b, func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		rel, _ := filepath.Rel(b, p)
		nb, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		na, err := os.ReadFile(filepath.Join(a, rel))
		if err != nil && !os.IsNotExist(err) {
			return err
		}
		for off := 0; off < len(nb); off += page {
			end := min(off+page, len(nb))
			if end > len(na) || !bytes.Equal(na[off:end], nb[off:end]) {
				n += int64(end - off)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// manifestBytes returns the size of a version's manifest and metadata
// documents: everything it stores besides data/.
func manifestBytes(t *testing.T, target, id string) int64 {
	t.Helper()
	var n int64
	root := filepath.Join(target, id)
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && p == filepath.Join(root, backupfmt.DataDir) {
			return filepath.SkipDir
		}
		if d.Type().IsRegular() {
			st, err := d.Info()
			if err != nil {
				return err
			}
			n += st.Size()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// baseOf returns the base version of version id.
func baseOf(t *testing.T, target, id string) string {
	t.Helper()
	tg, err := backupfmt.Open(target)
	if err != nil {
		t.Fatal(err)
	}
	m, err := tg.Manifest(id)
	if err != nil {
		t.Fatal(err)
	}
	return m.Base
}

// versionIDs returns the version identifiers get versions prints.
func versionIDs(t *testing.T, out string) []string {
	var ids []string
	for _, m := range regexp.MustCompile(`Version identifier: (\S+)`).FindAllStringSubmatch(out, -1) {
		ids = append(ids, m[1])
	}
	return ids
}

// requireNoShadow checks that the service of stateDir holds no shadow copy.
func requireNoShadow(t *testing.T, stateDir string) {
	t.Helper()
	cfg := config.Default()
	cfg.StateDir = stateDir
	s, err := service.Open(context.Background(), service.Options{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if left, err := s.ListShadows(context.Background(), service.Selection{}); err != nil || len(left) != 0 {
		t.Errorf("%d shadow copies left, %v", len(left), err)
	}
}

// tool runs wbadmin with a configuration and the embedded service.
type tool struct {
	config, state string
}

func newTool(t *testing.T, config string) tool {
	cfg := filepath.Join(t.TempDir(), "vss.toml")
	if err := os.WriteFile(cfg, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	return tool{config: cfg, state: t.TempDir()}
}

func (w tool) run(t *testing.T, args ...string) result {
	t.Helper()
	return run(t, append(args, "--config", w.config, "--embedded", "--state-dir", w.state)...)
}

// backup runs a backup with --format json and returns its result.
func (w tool) backup(t *testing.T, args ...string) backupResult {
	t.Helper()
	return lastEvent(t, w.run(t, append([]string{"start", "backup", "--format", "json"}, args...)...).must(t).out)
}

// acceptance is a database the acceptance scenario runs on.
type acceptance struct {
	what   string // "database", "cluster", "server": for messages
	tool   tool
	comp   string // WRITER\COMPONENT
	live   string // the component's live path: its data directory or file
	insert func(ctx context.Context, id int64) error
	// newName is the name of the copy restored beside the original.
	newName string
	// items must be lines of get items, notItems must not be in it.
	items, notItems []string
	// liveIDs returns the rows of the original; copyIDs those of the copy
	// at path, started (and stopped) on it when it needs a server.
	liveIDs func(t *testing.T) []int64
	copyIDs func(t *testing.T, path string) []int64
	// running reports whether the original server runs (nil: no server).
	running func() bool
	// closeApp, if not nil, is what the application does before a
	// restore in place: close the database.
	closeApp func()
	// check, if not nil, checks more once everything is restored (moved:
	// the directory of the restore with move).
	check func(t *testing.T, moved string)
}

// runAcceptance is the acceptance run of the issue on one database: under
// a live insert load it is backed up as a component (full, -vssFull),
// more rows go in, a differential follows; a copy-only backup leaves the
// differential base where it was; restored into a new directory and under
// a new name next to the original while the original keeps taking
// inserts, each copy (a server started on it) holds exactly the rows
// committed before the differential's freeze; the differential stores at
// most 1.1× the bytes that changed; restored in place from the full
// backup through PreRestore and PostRestore, the original holds the full
// backup's rows; no shadow copy is left.
func runAcceptance(t *testing.T, a acceptance) {
	w := a.tool
	target := filepath.Join(t.TempDir(), "backups")
	backup := func(args ...string) backupResult {
		t.Helper()
		return w.backup(t, append([]string{"-backupTarget:" + target, "-component:" + a.comp}, args...)...)
	}
	restore := func(version string, args ...string) {
		t.Helper()
		w.run(t, append([]string{"start", "recovery", "-backupTarget:" + target, "-version:" + version, "-itemType:Component", "-items:" + a.comp, "-quiet"}, args...)...).must(t)
	}
	load := startLoad(t, time.Millisecond, a.insert)
	load.waitRows(t, 300)

	beforeFull := time.Now()
	full := backup("-vssFull", "-full")
	lo0, hi0 := load.committedBefore(beforeFull), load.sentAfter(time.Now())
	if full.Kind != "full" {
		t.Fatalf("first backup: kind %s", full.Kind)
	}
	load.waitRows(t, load.committedBefore(time.Now())+3500)
	before := time.Now()
	diff := backup("-vssFull", "-differential")
	lo, hi := load.committedBefore(before), load.sentAfter(time.Now())
	if diff.Kind != "differential" || baseOf(t, target, diff.Version) != full.Version {
		t.Fatalf("differential: kind %s, base %s (full %s)", diff.Kind, baseOf(t, target, diff.Version), full.Version)
	}

	// A copy-only backup (complete) is no base: the next differential is
	// still relative to the full backup.
	if cp := backup("-vssCopy", "-full"); cp.Kind != "copy" {
		t.Fatalf("copy-only backup: kind %s", cp.Kind)
	}
	diff2 := backup("-vssFull", "-differential")
	if b := baseOf(t, target, diff2.Version); b != full.Version {
		t.Errorf("a differential after a copy-only backup has base %s, want the full backup %s", b, full.Version)
	}

	items := w.run(t, "get", "items", "-backupTarget:"+target, "-version:"+diff.Version).must(t).out
	for _, want := range append([]string{"Item: " + a.comp}, a.items...) {
		if !strings.Contains(items, want) {
			t.Errorf("get items lacks %q:\n%s", want, items)
		}
	}
	for _, not := range a.notItems {
		if strings.Contains(items, not) {
			t.Errorf("the component's backup holds %s:\n%s", not, items)
		}
	}

	// Restore with move, while the original goes on taking inserts; what
	// the differential stored against what changed since the full,
	// measured on the restored files before anything opens them.
	moved := filepath.Join(t.TempDir(), "moved")
	restore(diff.Version, "-recoveryTarget:"+moved)
	fullDir := filepath.Join(t.TempDir(), "full")
	restore(full.Version, "-recoveryTarget:"+fullDir)
	changed := changedBytes(t, fullDir, moved)
	t.Logf("differential: %d bytes changed since the full backup, %d read, %d stored (%.3f×), %d of manifest and documents",
		changed, diff.BytesRead, diff.BytesStored, float64(diff.BytesStored)/float64(changed), manifestBytes(t, target, diff.Version))
	if changed == 0 || float64(diff.BytesStored) > 1.1*float64(changed) {
		t.Errorf("the differential stored %d bytes for %d changed (goal: at most 1.1×)", diff.BytesStored, changed)
	}
	k := requireRowsAt(t, "the "+a.what+" restored with move", a.copyIDs(t, filepath.Join(moved, a.live)), lo, hi)
	// Under a new name next to the original.
	restore(diff.Version, "-newName:"+a.newName)
	renamed := filepath.Join(filepath.Dir(a.live), a.newName)
	if k2 := requireRowsAt(t, "the "+a.what+" restored under a new name", a.copyIDs(t, renamed), lo, hi); k2 != k {
		t.Errorf("the two restores of one version hold rows 1…%d and 1…%d", k, k2)
	}
	// The original kept running.
	n := load.committedBefore(time.Now())
	load.waitRows(t, n+50)
	load.halt()
	if err := load.failed(); err != nil {
		t.Fatalf("the original %s during the restores: %v", a.what, err)
	}
	if a.running != nil && !a.running() {
		t.Fatalf("the original %s does not run any more", a.what)
	}
	if ids := a.liveIDs(t); int64(len(ids)) < n+50 {
		t.Errorf("the original holds %d rows, want at least %d", len(ids), n+50)
	}
	w.run(t, "verify", "-backupTarget:"+target, "-version:"+diff2.Version).must(t)

	// In place: the writer releases the database (PreRestore: a server is
	// stopped), the full version replaces it (the later state's files go),
	// and the writer recovers it (PostRestore: a server is started); the
	// copy beside it stays.
	if a.closeApp != nil {
		a.closeApp()
	}
	restore(full.Version)
	if a.running != nil && !a.running() {
		t.Fatalf("the %s does not run after the restore in place", a.what)
	}
	requireRowsAt(t, "the "+a.what+" restored in place from the full backup", a.liveIDs(t), lo0, hi0)
	if _, err := os.Stat(renamed); err != nil {
		t.Errorf("the copy beside the original after a restore in place: %v", err)
	}
	if a.check != nil {
		a.check(t, moved)
	}
	requireNoShadow(t, w.state)
}
