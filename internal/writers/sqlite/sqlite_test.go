package sqlite_test

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	_ "modernc.org/sqlite"

	"github.com/linuxvss/vss/internal/testutil"
	"github.com/linuxvss/vss/internal/vsserr"
	"github.com/linuxvss/vss/internal/writers"
	"github.com/linuxvss/vss/internal/writers/sqlite"
	"github.com/linuxvss/vss/pkg/vssmeta"
)

// childEnv makes the test binary a process that freezes a database through
// a writer and waits to be killed (see TestKilledServiceReleases).
const childEnv = "SQLITE_WRITER_TEST_CHILD"

func TestMain(m *testing.M) {
	if p := os.Getenv(childEnv); p != "" {
		os.Exit(child(p))
	}
	os.Exit(m.Run())
}

func child(path string) int {
	w, err := sqlite.New(sqlite.Config{Name: "child", Paths: []string{path}}, slog.New(slog.NewTextHandler(os.Stderr, nil)))
	if err != nil {
		fmt.Println("ERR", err)
		return 1
	}
	ctx := context.Background()
	req := &writers.Request{Volumes: []string{filepath.Dir(path)}, Deadline: time.Now().Add(time.Minute)}
	for _, ev := range []writers.Event{writers.PrepareSnapshot, writers.Freeze} {
		if err := w.Handle(ctx, ev, req); err != nil {
			fmt.Println("ERR", err)
			return 1
		}
	}
	fmt.Println("FROZEN")
	time.Sleep(time.Hour)
	return 0
}

func testLog(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(b []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

// newWriter makes a writer for the databases and closes it at the end.
func newWriter(t *testing.T, cfg sqlite.Config) *sqlite.Writer {
	t.Helper()
	if cfg.Name == "" {
		cfg.Name = "test"
	}
	w, err := sqlite.New(cfg, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return w
}

// openDB opens a database as an application does.
func openDB(t *testing.T, path, journal string, busy time.Duration) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", fmt.Sprintf("%s?_pragma=busy_timeout(%d)&_pragma=journal_mode(%s)", path, busy.Milliseconds(), journal))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// createDB makes a database with table t in the given journal mode and
// returns the application's handle to it.
func createDB(t *testing.T, path, journal string) *sql.DB {
	t.Helper()
	db := openDB(t, path, journal, 30*time.Second)
	if _, err := db.Exec(`CREATE TABLE IF NOT EXISTS t (n INTEGER PRIMARY KEY, ts INTEGER, pad BLOB);
		CREATE INDEX IF NOT EXISTS t_ts ON t(ts)`); err != nil {
		t.Fatal(err)
	}
	return db
}

// app inserts rows 1, 2, 3... into t, one transaction each, as an
// application would, until stopped.
type app struct {
	db        *sql.DB
	started   atomic.Int64 // the row being inserted
	committed atomic.Int64 // the last row committed
	mu        sync.Mutex
	commits   []time.Time // commits[n-1]: when row n's INSERT returned
	err       error
	stop      chan struct{}
	done      chan struct{}
}

func startApp(t *testing.T, db *sql.DB) *app {
	t.Helper()
	a := &app{db: db, stop: make(chan struct{}), done: make(chan struct{})}
	var n int64
	if err := db.QueryRow("SELECT coalesce(max(n), 0) FROM t").Scan(&n); err != nil {
		t.Fatal(err)
	}
	a.committed.Store(n)
	a.started.Store(n)
	go func() {
		defer close(a.done)
		for n := n + 1; ; n++ {
			select {
			case <-a.stop:
				return
			default:
			}
			a.started.Store(n)
			if _, err := db.Exec("INSERT INTO t (n, ts, pad) VALUES (?, ?, randomblob(?))", n, time.Now().UnixNano(), 200+n%1800); err != nil {
				a.mu.Lock()
				a.err = err
				a.mu.Unlock()
				return
			}
			now := time.Now()
			a.committed.Store(n)
			a.mu.Lock()
			a.commits = append(a.commits, now)
			a.mu.Unlock()
		}
	}()
	t.Cleanup(a.halt)
	return a
}

func (a *app) halt() {
	select {
	case <-a.stop:
	default:
		close(a.stop)
	}
	<-a.done
}

func (a *app) check(t *testing.T) {
	t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.err != nil {
		t.Fatalf("application: %v", a.err)
	}
}

// waitCommit waits until the application commits a row after row n and
// returns when that commit happened.
func (a *app) waitCommit(t *testing.T, n int64, limit time.Duration) time.Time {
	t.Helper()
	end := time.Now().Add(limit)
	for a.committed.Load() <= n {
		a.check(t)
		if time.Now().After(end) {
			t.Fatalf("the application committed nothing after row %d for %v", n, limit)
		}
		time.Sleep(time.Millisecond)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.commits[len(a.commits)-1]
}

func (a *app) commitTime(n int64) time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	first := a.committed.Load() - int64(len(a.commits)) + 1
	if i := n - first; i >= 0 && i < int64(len(a.commits)) {
		return a.commits[i]
	}
	return time.Time{}
}

func handle(t *testing.T, w *sqlite.Writer, ev writers.Event, req *writers.Request) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := w.Handle(ctx, ev, req); err != nil {
		t.Fatalf("%v: %v", ev, err)
	}
}

// copyFiles copies the database and its siblings that exist, one after the
// other, with reflink clones: a non-atomic copy of a live database.
func copyFiles(t *testing.T, db, dst string) {
	t.Helper()
	args := []string{"--reflink=always"}
	for _, suffix := range []string{"", "-wal", "-shm", "-journal"} {
		if _, err := os.Stat(db + suffix); err == nil {
			args = append(args, db+suffix)
		}
	}
	testutil.Run(t, "cp", append(args, dst+"/")...)
}

type content struct {
	Integrity     string
	Count, Lo, Hi int64
}

// inspect opens a database copy and reads what it holds.
func inspect(t *testing.T, path string) content {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?mode=rw")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var c content
	if err := db.QueryRow("PRAGMA integrity_check").Scan(&c.Integrity); err != nil {
		t.Fatalf("integrity_check of %s: %v", path, err)
	}
	if err := db.QueryRow("SELECT count(*), coalesce(min(n), 0), coalesce(max(n), 0) FROM t").Scan(&c.Count, &c.Lo, &c.Hi); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return c
}

func code(err error) vsserr.Code { return vsserr.CodeOf(err) }

func TestIdentify(t *testing.T) {
	w := newWriter(t, sqlite.Config{Name: "app", Paths: []string{"/srv/app/main.db", "/var/lib/app/cache.sqlite"}})
	got, err := w.Identify(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	comp := func(dir, base string) vssmeta.Component {
		return vssmeta.Component{
			Type: vssmeta.ComponentDatabase, LogicalPath: `SQLite\app`, Name: base, Caption: dir + "/" + base,
			Selectable: true, SelectableForRestore: true,
			Files: []vssmeta.File{{Path: dir, Filespec: base + "*"}},
		}
	}
	want := &vssmeta.WriterMetadata{
		WriterID: sqlite.ClassID, InstanceID: uuid.NewSHA1(sqlite.ClassID, []byte("app")),
		Name: "SQLite Writer", InstanceName: "app",
		Usage: vssmeta.UsageUserData, Source: vssmeta.SourceTransactedDB,
		Schema:     vssmeta.SchemaCopy | vssmeta.SchemaWriterSupportsNewTarget | vssmeta.SchemaWriterSupportsRestoreWithMove | vssmeta.SchemaRestoreRename,
		Restore:    vssmeta.RestoreMethodInfo{Method: vssmeta.RestoreIfCanReplace, WriterRestore: vssmeta.WriterRestoreAlways},
		Components: []vssmeta.Component{comp("/srv/app", "main.db"), comp("/var/lib/app", "cache.sqlite")},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("Identify (-want +got):\n%s", d)
	}
}

func TestNewRejects(t *testing.T) {
	for _, c := range []struct {
		name string
		cfg  sqlite.Config
	}{
		{"no name", sqlite.Config{Paths: []string{"/a.db"}}},
		{"no paths", sqlite.Config{Name: "x"}},
		{"relative", sqlite.Config{Name: "x", Paths: []string{"a.db"}}},
		{"same base name", sqlite.Config{Name: "x", Paths: []string{"/a/x.db", "/b/x.db"}}},
		{"negative busy timeout", sqlite.Config{Name: "x", Paths: []string{"/a.db"}, BusyTimeout: -time.Second}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, err := sqlite.New(c.cfg, nil); code(err) != vsserr.E_INVALIDARG {
				t.Errorf("New: %v, want E_INVALIDARG", err)
			}
		})
	}
}

// TestFreezeCopyIsConsistent copies a database that an application writes
// to without pause, file by file, while the writer holds it frozen, ten
// times; every copy must be a sound database holding exactly a prefix of
// the rows: all committed before the Freeze, none begun after the copy.
func TestFreezeCopyIsConsistent(t *testing.T) {
	testutil.RequireTools(t, "cp")
	for _, journal := range []string{"WAL", "DELETE"} {
		t.Run(journal, func(t *testing.T) {
			fs := testutil.NewFS(t, "xfs", 512<<20)
			path := filepath.Join(fs.Dir, "app.db")
			a := startApp(t, createDB(t, path, journal))
			w := newWriter(t, sqlite.Config{Paths: []string{path}})
			var maxFrozen time.Duration
			for i := 0; i < 10; i++ {
				time.Sleep(time.Duration(50+i*20) * time.Millisecond)
				a.waitCommit(t, a.committed.Load(), 10*time.Second)
				req := &writers.Request{SetID: uuid.New(), Volumes: []string{fs.Dir}, Deadline: time.Now().Add(20 * time.Second)}
				handle(t, w, writers.PrepareSnapshot, req)
				before := a.committed.Load()
				handle(t, w, writers.Freeze, req)
				frozen := time.Now()
				atFreeze := a.committed.Load()
				dst := filepath.Join(fs.Dir, fmt.Sprintf("copy%d", i))
				if err := os.Mkdir(dst, 0o755); err != nil {
					t.Fatal(err)
				}
				copyFiles(t, path, dst)
				time.Sleep(20 * time.Millisecond) // the application would commit now if it could
				atCopy, startedAtCopy := a.committed.Load(), a.started.Load()
				handle(t, w, writers.Thaw, req)
				maxFrozen = max(maxFrozen, time.Since(frozen))
				handle(t, w, writers.PostSnapshot, req)
				handle(t, w, writers.BackupComplete, req)
				handle(t, w, writers.BackupShutdown, req)
				// At most the commit that raced the Freeze is counted late.
				if atCopy > atFreeze+1 {
					t.Errorf("copy %d: the application committed rows %d..%d while frozen", i, atFreeze+1, atCopy)
				}
				got := inspect(t, filepath.Join(dst, "app.db"))
				if got.Integrity != "ok" {
					t.Fatalf("copy %d: integrity_check: %s", i, got.Integrity)
				}
				if got.Count != got.Hi || (got.Count > 0 && got.Lo != 1) {
					t.Errorf("copy %d: rows %d..%d, %d of them: not a prefix", i, got.Lo, got.Hi, got.Count)
				}
				if got.Hi < before || got.Hi > startedAtCopy {
					t.Errorf("copy %d holds rows up to %d; want at least %d (committed before Freeze) and at most %d (begun before the copy ended)",
						i, got.Hi, before, startedAtCopy)
				}
				t.Logf("copy %d: %d rows (committed before Freeze: %d)", i, got.Hi, before)
			}
			a.waitCommit(t, a.committed.Load(), 10*time.Second)
			t.Logf("%s: longest freeze (copy included) %v; application committed %d rows", journal, maxFrozen, a.committed.Load())
		})
	}
}

// TestFreezeBlocksWrites measures how long the application's writes stop
// while frozen and that they resume on Thaw.
func TestFreezeBlocksWrites(t *testing.T) {
	for _, journal := range []string{"WAL", "DELETE"} {
		t.Run(journal, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "app.db")
			a := startApp(t, createDB(t, path, journal))
			w := newWriter(t, sqlite.Config{Paths: []string{path}})
			a.waitCommit(t, 10, 10*time.Second)
			req := &writers.Request{Volumes: []string{dir}, Deadline: time.Now().Add(20 * time.Second)}
			handle(t, w, writers.PrepareSnapshot, req)
			handle(t, w, writers.Freeze, req)
			frozen := time.Now()
			n0 := a.committed.Load()
			time.Sleep(300 * time.Millisecond)
			if n := a.committed.Load(); n > n0+1 {
				t.Fatalf("the application committed rows %d..%d while frozen", n0+1, n)
			}
			n1 := a.committed.Load()
			lastBefore := a.commitTime(n1)
			thawed := time.Now()
			handle(t, w, writers.Thaw, req)
			resumed := a.waitCommit(t, n1, 5*time.Second)
			t.Logf("%s: frozen %v; application writes stopped for %v; first commit %v after Thaw",
				journal, thawed.Sub(frozen), resumed.Sub(lastBefore), resumed.Sub(thawed))
			if resumed.Sub(thawed) > time.Second {
				t.Errorf("writes resumed only %v after Thaw", resumed.Sub(thawed))
			}
		})
	}
}

// TestFreezeDeadline: no Thaw comes; the writer releases the lock by
// itself at the deadline and Thaw then reports the time-out.
func TestFreezeDeadline(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "app.db")
	a := startApp(t, createDB(t, path, "WAL"))
	w := newWriter(t, sqlite.Config{Paths: []string{path}})
	a.waitCommit(t, 10, 10*time.Second)
	const window = 700 * time.Millisecond
	req := &writers.Request{Volumes: []string{dir}, Deadline: time.Now().Add(window)}
	handle(t, w, writers.PrepareSnapshot, req)
	req.Deadline = time.Now().Add(window)
	handle(t, w, writers.Freeze, req)
	n := a.committed.Load() + 1 // the commit that may race the Freeze
	resumed := a.waitCommit(t, n, 10*time.Second)
	late := resumed.Sub(req.Deadline)
	t.Logf("writes resumed %v after the freeze deadline", late)
	if late < -50*time.Millisecond || late > 500*time.Millisecond {
		t.Errorf("writes resumed %v after the deadline", late)
	}
	err := w.Handle(context.Background(), writers.Thaw, req)
	if code(err) != vsserr.VSS_E_WRITERERROR_TIMEOUT {
		t.Errorf("Thaw after the deadline: %v, want VSS_E_WRITERERROR_TIMEOUT", err)
	}
	for i := 0; i < 2; i++ { // Abort is idempotent
		if err := w.Handle(context.Background(), writers.Abort, req); err != nil {
			t.Errorf("Abort: %v", err)
		}
	}
}

// lockHolder is another process (the sqlite3 shell) that holds a lock on a
// database until it is closed.
type lockHolder struct {
	cmd *exec.Cmd
	in  io.WriteCloser
}

func holdLock(t *testing.T, path, sqlText string) *lockHolder {
	t.Helper()
	testutil.RequireTools(t, "sqlite3")
	cmd := exec.Command("sqlite3", path)
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := &lockHolder{cmd: cmd, in: in}
	t.Cleanup(h.release)
	fmt.Fprintf(in, ".timeout 5000\n%s\nSELECT 'HELD';\n", sqlText)
	rd := bufio.NewReader(out)
	for {
		line, err := rd.ReadString('\n')
		if strings.TrimSpace(line) == "HELD" {
			return h
		}
		if err != nil {
			t.Fatalf("sqlite3 did not take the lock: %v", err)
		}
	}
}

func (h *lockHolder) release() {
	if h.cmd.ProcessState != nil {
		return
	}
	h.in.Close()
	done := make(chan struct{})
	go func() { h.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		h.cmd.Process.Kill()
		<-done
	}
}

// TestFreezeLockedByAnother: a process holds the write lock longer than
// the writer may wait; Freeze fails (time-out or retryable) and holds
// nothing.
func TestFreezeLockedByAnother(t *testing.T) {
	for _, c := range []struct {
		name    string
		ctxWait time.Duration // 0: no deadline on ctx
		busy    time.Duration
		want    vsserr.Code
	}{
		{"freeze deadline first", 800 * time.Millisecond, 10 * time.Second, vsserr.VSS_E_WRITERERROR_TIMEOUT},
		{"busy timeout first", 0, 400 * time.Millisecond, vsserr.VSS_E_WRITERERROR_RETRYABLE},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "app.db")
			db := createDB(t, path, "WAL")
			w := newWriter(t, sqlite.Config{Paths: []string{path}, BusyTimeout: c.busy})
			req := &writers.Request{Volumes: []string{dir}, Deadline: time.Now().Add(time.Minute)}
			handle(t, w, writers.PrepareSnapshot, req)
			h := holdLock(t, path, "BEGIN IMMEDIATE; INSERT INTO t (n) VALUES (-1);")
			ctx := context.Background()
			if c.ctxWait > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, c.ctxWait)
				defer cancel()
			}
			start := time.Now()
			err := w.Handle(ctx, writers.Freeze, req)
			t.Logf("Freeze failed after %v: %v", time.Since(start), err)
			if code(err) != c.want {
				t.Fatalf("Freeze: %v, want %v", err, c.want)
			}
			if c.ctxWait > 0 && time.Since(start) > c.ctxWait+200*time.Millisecond {
				t.Errorf("Freeze took %v with a %v deadline", time.Since(start), c.ctxWait)
			}
			// The writer holds nothing: once the other process lets go,
			// the application writes at once.
			h.release()
			if _, err := db.Exec("PRAGMA busy_timeout = 100; INSERT INTO t (n) VALUES (1)"); err != nil {
				t.Fatalf("application write after the failed Freeze: %v", err)
			}
			// And the writer can freeze again.
			handle(t, w, writers.Freeze, req)
			handle(t, w, writers.Thaw, req)
		})
	}
}

// TestKilledServiceReleases freezes in a child process and kills it with
// SIGKILL: the application can write at once.
func TestKilledServiceReleases(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "app.db")
	db := createDB(t, path, "WAL")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+path)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	line, _ := bufio.NewReader(out).ReadString('\n')
	if strings.TrimSpace(line) != "FROZEN" {
		t.Fatalf("child: %q", line)
	}
	probe := openDB(t, path, "WAL", 200*time.Millisecond)
	if _, err := probe.Exec("INSERT INTO t (n) VALUES (1)"); err == nil {
		t.Fatal("the application could write while the child held the database frozen")
	}
	killed := time.Now()
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	if _, err := db.Exec("PRAGMA busy_timeout = 5000; INSERT INTO t (n) VALUES (2)"); err != nil {
		t.Fatalf("application write after the service was killed: %v", err)
	}
	t.Logf("application wrote %v after SIGKILL of the freezing process", time.Since(killed))
	if el := time.Since(killed); el > time.Second {
		t.Errorf("the lock was released only %v after SIGKILL", el)
	}
}

// TestCoverage: PrepareSnapshot refuses a set whose volumes do not hold
// the database.
func TestCoverage(t *testing.T) {
	fs := testutil.NewFS(t, "xfs", 512<<20)
	sub := filepath.Join(fs.Dir, "sub")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(sub, "app.db")
	createDB(t, path, "WAL")
	for _, c := range []struct {
		name    string
		paths   []string
		volumes []string
		want    vsserr.Code
	}{
		{"mount point", []string{path}, []string{fs.Dir}, vsserr.S_OK},
		{"directory volume", []string{path}, []string{"/nonexistent", sub}, vsserr.S_OK},
		{"no volumes", []string{path}, nil, vsserr.VSS_E_WRITERERROR_INCONSISTENTSNAPSHOT},
		{"another directory", []string{path}, []string{t.TempDir()}, vsserr.VSS_E_WRITERERROR_INCONSISTENTSNAPSHOT},
		// The parent of the mount point is on another filesystem: its
		// shadow does not hold the database.
		{"parent of the mount", []string{path}, []string{filepath.Dir(fs.Dir)}, vsserr.VSS_E_WRITERERROR_INCONSISTENTSNAPSHOT},
		{"missing database", []string{filepath.Join(sub, "none.db")}, []string{fs.Dir}, vsserr.VSS_E_WRITERERROR_NONRETRYABLE},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := newWriter(t, sqlite.Config{Paths: c.paths})
			err := w.Handle(context.Background(), writers.PrepareSnapshot, &writers.Request{Volumes: c.volumes})
			if code(err) != c.want {
				t.Errorf("PrepareSnapshot: %v, want %v", err, c.want)
			}
			if err := w.Handle(context.Background(), writers.Abort, &writers.Request{}); err != nil {
				t.Errorf("Abort: %v", err)
			}
		})
	}
}

// TestRestore restores a database in place: PreRestore refuses while the
// database is in use, then removes its -wal and -shm; PostRestore checks
// the restored file.
func TestRestore(t *testing.T) {
	for _, journal := range []string{"WAL", "DELETE"} {
		t.Run(journal, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "app.db")
			backup := filepath.Join(t.TempDir(), "app.db")
			db := createDB(t, path, journal)
			for n := 1; n <= 100; n++ {
				if _, err := db.Exec("INSERT INTO t (n, ts, pad) VALUES (?, ?, randomblob(1000))", n, n); err != nil {
					t.Fatal(err)
				}
			}
			db.Close()
			testutil.Run(t, "cp", path, backup)
			db = openDB(t, path, journal, 5*time.Second)
			if _, err := db.Exec("INSERT INTO t (n, ts) VALUES (101, 101)"); err != nil {
				t.Fatal(err)
			}
			w := newWriter(t, sqlite.Config{Paths: []string{path}})
			ctx := context.Background()
			req := &writers.Request{}

			// Another process reading the database.
			h := holdLock(t, path, "BEGIN; SELECT count(*) FROM t;")
			if err := w.Handle(ctx, writers.PreRestore, req); code(err) != vsserr.VSS_E_WRITERERROR_RETRYABLE {
				t.Fatalf("PreRestore with a reader in another process: %v, want RETRYABLE", err)
			} else {
				t.Logf("PreRestore with a reader: %v", err)
			}
			h.release()
			if journal == "WAL" {
				// An idle connection of an application in WAL mode.
				if err := w.Handle(ctx, writers.PreRestore, req); code(err) != vsserr.VSS_E_WRITERERROR_RETRYABLE {
					t.Fatalf("PreRestore with the application's connection open: %v, want RETRYABLE", err)
				}
			}
			db.Close()
			if err := w.Handle(ctx, writers.PreRestore, req); err != nil {
				t.Fatalf("PreRestore: %v", err)
			}
			for _, s := range []string{"-wal", "-shm"} {
				if _, err := os.Stat(path + s); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("%s still there after PreRestore (%v)", path+s, err)
				}
			}
			testutil.Run(t, "cp", backup, path)
			if err := w.Handle(ctx, writers.PostRestore, req); err != nil {
				t.Fatalf("PostRestore: %v", err)
			}
			if got := inspect(t, path); got != (content{"ok", 100, 1, 100}) {
				t.Errorf("restored database: %+v", got)
			}

			// Restore with move into another directory.
			target := t.TempDir()
			testutil.Run(t, "cp", backup, target)
			moved := &writers.Request{RestoreTarget: target}
			for _, ev := range []writers.Event{writers.PreRestore, writers.PostRestore} {
				if err := w.Handle(ctx, ev, moved); err != nil {
					t.Fatalf("%v with move: %v", ev, err)
				}
			}

			// A damaged restored file.
			corrupt(t, path)
			err := w.Handle(ctx, writers.PostRestore, req)
			if code(err) != vsserr.VSS_E_WRITERERROR_NONRETRYABLE {
				t.Fatalf("PostRestore of a damaged database: %v, want NONRETRYABLE", err)
			}
			t.Logf("PostRestore of a damaged database: %v", err)
		})
	}
}

// corrupt overwrites the root page of the index of t.
func corrupt(t *testing.T, path string) {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	var root, pageSize int64
	err = db.QueryRow("SELECT rootpage FROM sqlite_master WHERE name = 't_ts'").Scan(&root)
	if err == nil {
		err = db.QueryRow("PRAGMA page_size").Scan(&pageSize)
	}
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	junk := []byte(strings.Repeat("\x0d\xff\x00\x42", int(pageSize)/4))
	if _, err := f.WriteAt(junk, (root-1)*pageSize); err != nil {
		t.Fatal(err)
	}
}
