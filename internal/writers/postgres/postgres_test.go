package postgres

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/linuxvss/vss/internal/testutil"
	"github.com/linuxvss/vss/internal/testutil/pgtest"
	"github.com/linuxvss/vss/internal/vsserr"
	"github.com/linuxvss/vss/internal/writers"
	"github.com/linuxvss/vss/pkg/vssmeta"
)

// tLog sends the writer's log to the test log until the test ends.
type tLog struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (l *tLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.done {
		l.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func newWriter(t testing.TB, cfg Config) *Writer {
	t.Helper()
	tl := &tLog{t: t}
	t.Cleanup(func() { tl.mu.Lock(); tl.done = true; tl.mu.Unlock() })
	w, err := New(cfg, slog.New(slog.NewTextHandler(tl, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Close() })
	return w
}

// handle delivers an event with a time limit, as the service does.
func handle(t testing.TB, w *Writer, ev writers.Event, req *writers.Request) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	return w.Handle(ctx, ev, req)
}

func mustHandle(t testing.TB, w *Writer, ev writers.Event, req *writers.Request) {
	t.Helper()
	if err := handle(t, w, ev, req); err != nil {
		t.Fatalf("%s: %v", ev, err)
	}
}

// postgresOwner returns the uid and gid of the server's OS user (ours
// when the test does not run as root).
func postgresOwner(t testing.TB) (int, int) {
	t.Helper()
	if os.Geteuid() != 0 {
		return os.Getuid(), os.Getgid()
	}
	u, err := user.Lookup(pgtest.OSUser)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return uid, gid
}

// serverDir makes a directory owned by the server user (a tablespace, a
// WAL directory).
func serverDir(t testing.TB, path string) {
	t.Helper()
	if err := os.MkdirAll(path, 0o700); err != nil {
		t.Fatal(err)
	}
	uid, gid := postgresOwner(t)
	if err := os.Chown(path, uid, gid); err != nil {
		t.Fatal(err)
	}
}

func exec1(t testing.TB, c *pgx.Conn, sql string, args ...any) {
	t.Helper()
	if _, err := c.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// backupState is what the server shows of the writer's backup sessions.
type backupState struct{ sessions, slots int }

func stateOf(t testing.TB, srv *pgtest.Server) backupState {
	t.Helper()
	c, err := pgx.Connect(context.Background(), srv.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	var s backupState
	if err := c.QueryRow(context.Background(),
		"SELECT (SELECT count(*) FROM pg_stat_activity WHERE application_name = $1), (SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'vss\\_%')",
		applicationName).Scan(&s.sessions, &s.slots); err != nil {
		t.Fatal(err)
	}
	return s
}

// waitNoBackup waits until the server has no session and no slot of the
// writer (a session ending takes the server a moment) and returns when
// that was first seen.
func waitNoBackup(t testing.TB, srv *pgtest.Server, within time.Duration) time.Time {
	t.Helper()
	end := time.Now().Add(within)
	for {
		s := stateOf(t, srv)
		if s == (backupState{}) {
			return time.Now()
		}
		if time.Now().After(end) {
			t.Fatalf("after %v the server still has %d writer session(s) and %d slot(s): a backup is still in progress", within, s.sessions, s.slots)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// copyTree makes a non-atomic reflink copy of src at dst, as the reflink
// provider does, while the server runs. Files the server removes during
// the copy are fine (the backup does not need them).
func copyTree(t testing.TB, src, dst string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("cp", "-a", "--reflink=always", src, dst).CombinedOutput()
	if err != nil {
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if !strings.Contains(line, "No such file or directory") {
				t.Fatalf("cp -a --reflink=always %s %s: %v\n%s", src, dst, err, out)
			}
		}
		t.Logf("cp: files vanished during the copy:\n%s", out)
	}
}

// insertRec is one INSERT of an inserter: when it was sent and when its
// commit returned.
type insertRec struct {
	id        int64
	client    int
	sent      time.Time
	committed time.Time
}

// inserters run one client per period, each inserting a timestamped row
// per period and recording it.
type inserters struct {
	stop atomic.Bool
	wg   sync.WaitGroup
	mu   sync.Mutex
	recs []insertRec
	errs []error
}

func startInserters(t testing.TB, srv *pgtest.Server, periods ...time.Duration) *inserters {
	t.Helper()
	ins := &inserters{}
	for client, period := range periods {
		c := srv.Connect(t, "postgres")
		ins.wg.Add(1)
		go func() {
			defer ins.wg.Done()
			ctx := context.Background()
			for !ins.stop.Load() {
				r := insertRec{client: client, sent: time.Now()}
				err := c.QueryRow(ctx, "INSERT INTO rows (t, client) VALUES (now(), $1) RETURNING id", client).Scan(&r.id)
				r.committed = time.Now()
				ins.mu.Lock()
				if err != nil {
					ins.errs = append(ins.errs, err)
				} else {
					ins.recs = append(ins.recs, r)
				}
				ins.mu.Unlock()
				time.Sleep(period)
			}
		}()
	}
	t.Cleanup(ins.halt)
	return ins
}

func (ins *inserters) halt() {
	ins.stop.Store(true)
	ins.wg.Wait()
}

// ids returns the ids of table rows.
func ids(t testing.TB, c *pgx.Conn) map[int64]bool {
	t.Helper()
	rows, err := c.Query(context.Background(), "SELECT id FROM rows")
	if err != nil {
		t.Fatal(err)
	}
	got := map[int64]bool{}
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		got[id] = true
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return got
}

// checkRows checks a shadow against what the inserters saw: every row
// committed before the freeze is there, no row sent after the thaw is.
func checkRows(t testing.TB, recs []insertRec, got map[int64]bool, freezeStart, thawEnd time.Time) {
	t.Helper()
	var before, window, windowIn, after int
	for _, r := range recs {
		switch {
		case r.committed.Before(freezeStart):
			before++
			if !got[r.id] {
				t.Errorf("row %d (client %d) committed %v before the freeze is missing from the shadow", r.id, r.client, freezeStart.Sub(r.committed))
			}
		case r.sent.After(thawEnd):
			after++
			if got[r.id] {
				t.Errorf("row %d (client %d) sent %v after the thaw is in the shadow", r.id, r.client, r.sent.Sub(thawEnd))
			}
		default:
			window++
			if got[r.id] {
				windowIn++
			}
		}
	}
	lat := make([]time.Duration, 0, len(recs))
	for _, r := range recs {
		lat = append(lat, r.committed.Sub(r.sent))
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	if len(lat) > 0 {
		t.Logf("INSERT to commit: median %v, max %v", lat[len(lat)/2].Round(time.Microsecond), lat[len(lat)-1].Round(time.Microsecond))
	}
	t.Logf("rows: %d inserted; %d committed before the freeze, all in the shadow; %d in flight between freeze and thaw, %d of them in the shadow; %d sent after the thaw, none in the shadow; the shadow holds %d rows",
		len(recs), before, window, windowIn, after, len(got))
	if before == 0 || after == 0 {
		t.Errorf("the test proves little: %d rows before the freeze, %d after the thaw", before, after)
	}
}

func TestConsistency(t *testing.T) { testConsistency(t, false) }

// TestConsistencyTablespaceAndWAL has a tablespace and the WAL directory
// on a second filesystem (btrfs), so the set has two volumes and the
// writer maps the tablespace_map and the pg_wal link into the shadows.
func TestConsistencyTablespaceAndWAL(t *testing.T) { testConsistency(t, true) }

func testConsistency(t *testing.T, spread bool) {
	pgtest.Require(t)
	fs := testutil.NewFS(t, "xfs", 1<<30)
	pgDir := filepath.Join(fs.Dir, "pg")
	dataDir := filepath.Join(pgDir, "data")
	var fs2 *testutil.FS
	if spread {
		// Before the server, so that its cleanup (unmount) comes after
		// the server's (stop).
		fs2 = testutil.NewFS(t, "btrfs", 0)
	}
	srv := pgtest.Start(t, pgtest.Options{DataDir: dataDir})
	volumes := []string{fs.Dir}
	shadows := map[string]string{fs.Dir: filepath.Join(fs.Dir, "shadow")}
	admin := srv.Connect(t, "postgres")
	tablespace := ""
	if spread {
		volumes = append(volumes, fs2.Dir)
		shadows[fs2.Dir] = filepath.Join(fs2.Dir, "shadow")
		serverDir(t, filepath.Join(fs2.Dir, "ts"))
		// Move pg_wal to the second filesystem.
		_ = admin.Close(context.Background())
		srv.Stop(t)
		testutil.Run(t, "cp", "-a", filepath.Join(dataDir, "pg_wal"), filepath.Join(fs2.Dir, "wal"))
		testutil.Run(t, "rm", "-rf", filepath.Join(dataDir, "pg_wal"))
		if err := os.Symlink(filepath.Join(fs2.Dir, "wal"), filepath.Join(dataDir, "pg_wal")); err != nil {
			t.Fatal(err)
		}
		srv.Start(t)
		admin = srv.Connect(t, "postgres")
		exec1(t, admin, fmt.Sprintf("CREATE TABLESPACE ts LOCATION '%s'", filepath.Join(fs2.Dir, "ts")))
		tablespace = " TABLESPACE ts"
	}
	exec1(t, admin, "CREATE TABLE rows (id serial PRIMARY KEY, t timestamptz NOT NULL, client int NOT NULL)"+tablespace)

	w := newWriter(t, Config{Name: "main", DSN: srv.DSN("postgres")})
	md, err := w.Identify(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	checkMetadata(t, md, dataDir, fs2)

	ins := startInserters(t, srv, 100*time.Millisecond, 10*time.Millisecond)
	time.Sleep(time.Second)

	setID := uuid.New()
	req := &writers.Request{SetID: setID, Volumes: volumes, BackupType: vssmeta.BackupFull}
	mustHandle(t, w, writers.PrepareSnapshot, req)
	if s := stateOf(t, srv); s.sessions != 1 || s.slots != 1 {
		t.Fatalf("after PrepareSnapshot the server shows %+v; want one session and one slot", s)
	}
	freezeStart := time.Now()
	req.Deadline = time.Now().Add(60 * time.Second)
	mustHandle(t, w, writers.Freeze, req)
	t0 := time.Now()
	copyTree(t, pgDir, filepath.Join(shadows[fs.Dir], "pg"))
	if spread {
		copyTree(t, filepath.Join(fs2.Dir, "ts"), filepath.Join(shadows[fs2.Dir], "ts"))
		copyTree(t, filepath.Join(fs2.Dir, "wal"), filepath.Join(shadows[fs2.Dir], "wal"))
	}
	copyTook := time.Since(t0)
	mustHandle(t, w, writers.Thaw, req)
	thawEnd := time.Now()
	req.ShadowPaths = shadows
	t0 = time.Now()
	mustHandle(t, w, writers.PostSnapshot, req)
	postTook := time.Since(t0)
	waitNoBackup(t, srv, 5*time.Second)
	comps := &vssmeta.WriterComponents{WriterID: ClassID, Components: []vssmeta.ComponentState{{LogicalPath: LogicalPath, Name: "main"}}}
	mustHandle(t, w, writers.BackupComplete, &writers.Request{Components: comps})
	if _, err := parseLSN(comps.Components[0].BackupStamp); err != nil {
		t.Errorf("backup stamp %q is not the stop LSN: %v", comps.Components[0].BackupStamp, err)
	}
	mustHandle(t, w, writers.BackupShutdown, req)

	time.Sleep(time.Second)
	ins.halt()
	if len(ins.errs) > 0 {
		t.Fatalf("%d inserts failed, first: %v", len(ins.errs), ins.errs[0])
	}

	shadowData := filepath.Join(shadows[fs.Dir], "pg", "data")
	for _, gone := range []string{"postmaster.pid", "postmaster.opts"} {
		if _, err := os.Stat(filepath.Join(shadowData, gone)); err == nil {
			t.Errorf("%s is in the shadow", gone)
		}
	}
	t0 = time.Now()
	shadow := pgtest.StartOn(t, shadowData, pgtest.Options{})
	startTook := time.Since(t0)
	sc := shadow.Connect(t, "postgres")
	for _, line := range strings.Split(shadow.Log(), "\n") {
		if strings.Contains(line, "backup recovery") || strings.Contains(line, "consistent recovery state") {
			t.Log("shadow server: " + line)
		}
	}
	checkRows(t, ins.recs, ids(t, sc), freezeStart, thawEnd)
	t.Logf("freeze → thaw %v (copy %v), PostSnapshot %v, start on the shadow (recovery) %v",
		thawEnd.Sub(freezeStart).Round(time.Millisecond), copyTook.Round(time.Millisecond),
		postTook.Round(time.Millisecond), startTook.Round(time.Millisecond))
	if !strings.Contains(shadow.Log(), "redo done") && !strings.Contains(shadow.Log(), "consistent recovery state reached") {
		t.Errorf("the shadow server did not recover from the backup label:\n%s", shadow.Log())
	}
	if _, err := os.Stat(filepath.Join(shadowData, "backup_label.old")); err != nil {
		t.Errorf("backup_label was not used: %v", err)
	}

	if spread {
		var loc string
		if err := sc.QueryRow(context.Background(), "SELECT pg_tablespace_location(oid) FROM pg_tablespace WHERE spcname = 'ts'").Scan(&loc); err != nil {
			t.Fatal(err)
		}
		if want := filepath.Join(shadows[fs2.Dir], "ts"); loc != want {
			t.Errorf("shadow's tablespace is at %s; want %s", loc, want)
		}
		if l, _ := os.Readlink(filepath.Join(shadowData, "pg_wal")); l != filepath.Join(shadows[fs2.Dir], "wal") {
			t.Errorf("shadow's pg_wal → %s; want its shadow", l)
		}
		if l, _ := os.Readlink(filepath.Join(dataDir, "pg_wal")); l != filepath.Join(fs2.Dir, "wal") {
			t.Errorf("live pg_wal → %s; it was changed", l)
		}
		if err := admin.QueryRow(context.Background(), "SELECT pg_tablespace_location(oid) FROM pg_tablespace WHERE spcname = 'ts'").Scan(&loc); err != nil || loc != filepath.Join(fs2.Dir, "ts") {
			t.Errorf("live tablespace at %s (%v); it was changed", loc, err)
		}
	}
	// The live server goes on, with every row.
	live := ids(t, admin)
	for _, r := range ins.recs {
		if !live[r.id] {
			t.Fatalf("row %d is missing from the live server", r.id)
		}
	}
}

func checkMetadata(t testing.TB, md *vssmeta.WriterMetadata, dataDir string, fs2 *testutil.FS) {
	t.Helper()
	if md.WriterID != ClassID || md.InstanceID != InstanceID("main", dataDir) || md.InstanceName != "main" ||
		md.Usage != vssmeta.UsageUserData || md.Source != vssmeta.SourceTransactedDB || md.Schema != Schema ||
		md.Restore.Method != vssmeta.RestoreStopStart || md.Restore.Service != "main" {
		t.Errorf("metadata header: %+v", md)
	}
	if len(md.Components) != 1 {
		t.Fatalf("%d components; want 1", len(md.Components))
	}
	c := md.Components[0]
	if c.Type != vssmeta.ComponentDatabase || c.Name != "main" || c.LogicalPath != LogicalPath {
		t.Errorf("component: %+v", c)
	}
	want := []vssmeta.File{{Path: dataDir, Filespec: "*", Recursive: true}}
	if fs2 != nil {
		want = append(want, vssmeta.File{Path: filepath.Join(fs2.Dir, "ts"), Filespec: "*", Recursive: true},
			vssmeta.File{Path: filepath.Join(fs2.Dir, "wal"), Filespec: "*", Recursive: true, Log: true})
	}
	if fmt.Sprint(c.Files) != fmt.Sprint(want) {
		t.Errorf("files %+v; want %+v", c.Files, want)
	}
	var ex []string
	for _, e := range md.Excludes {
		ex = append(ex, filepath.Join(e.Path, e.Filespec))
	}
	sort.Strings(ex)
	if fmt.Sprint(ex) != fmt.Sprint([]string{filepath.Join(dataDir, "postmaster.opts"), filepath.Join(dataDir, "postmaster.pid")}) {
		t.Errorf("excludes %v", ex)
	}
}

// TestFreezeDeadline: a writer frozen and never thawed ends the backup by
// itself when the freeze deadline passes.
func TestFreezeDeadline(t *testing.T) {
	pgtest.Require(t)
	srv := pgtest.Start(t, pgtest.Options{})
	w := newWriter(t, Config{Name: "main", DSN: srv.DSN("postgres")})
	req := &writers.Request{SetID: uuid.New(), Volumes: []string{"/"}}
	mustHandle(t, w, writers.PrepareSnapshot, req)
	deadline := time.Now().Add(time.Second)
	req.Deadline = deadline
	mustHandle(t, w, writers.Freeze, req)
	if s := stateOf(t, srv); s.sessions != 1 || s.slots != 1 {
		t.Fatalf("frozen: the server shows %+v; want one session and one slot", s)
	}
	gone := waitNoBackup(t, srv, 10*time.Second)
	if gone.Before(deadline) {
		t.Fatalf("the backup ended %v before the deadline", deadline.Sub(gone))
	}
	t.Logf("backup session and slot gone %v after the freeze deadline", gone.Sub(deadline).Round(time.Millisecond))
	err := handle(t, w, writers.Thaw, req)
	if !vsserr.Is(err, vsserr.VSS_E_WRITERERROR_TIMEOUT) {
		t.Fatalf("Thaw after the deadline: %v; want VSS_E_WRITERERROR_TIMEOUT", err)
	}
	mustHandle(t, w, writers.Abort, req)
	// The writer takes the next set.
	req = &writers.Request{SetID: uuid.New(), Volumes: []string{"/"}, Deadline: time.Now().Add(time.Minute)}
	mustHandle(t, w, writers.PrepareSnapshot, req)
	mustHandle(t, w, writers.Freeze, req)
	mustHandle(t, w, writers.Thaw, req)
	mustHandle(t, w, writers.Abort, req)
	waitNoBackup(t, srv, 5*time.Second)
}

// TestMissingVolume: a set without the data directory's volume, or
// without a tablespace's, is refused and leaves no backup behind.
func TestMissingVolume(t *testing.T) {
	pgtest.Require(t)
	srv := pgtest.Start(t, pgtest.Options{})
	w := newWriter(t, Config{Name: "main", DSN: srv.DSN("postgres"), DataDir: srv.DataDir})
	err := handle(t, w, writers.PrepareSnapshot, &writers.Request{SetID: uuid.New(), Volumes: []string{"/nonexistent/volume"}})
	if !vsserr.Is(err, vsserr.VSS_E_WRITERERROR_INCONSISTENTSNAPSHOT) || !strings.Contains(err.Error(), srv.DataDir) {
		t.Fatalf("PrepareSnapshot without the data directory's volume: %v; want INCONSISTENTSNAPSHOT naming %s", err, srv.DataDir)
	}
	waitNoBackup(t, srv, 5*time.Second)

	ts := filepath.Join(filepath.Dir(srv.DataDir), "ts")
	serverDir(t, ts)
	exec1(t, srv.Connect(t, "postgres"), fmt.Sprintf("CREATE TABLESPACE ts LOCATION '%s'", ts))
	err = handle(t, w, writers.PrepareSnapshot, &writers.Request{SetID: uuid.New(), Volumes: []string{srv.DataDir}})
	if !vsserr.Is(err, vsserr.VSS_E_WRITERERROR_INCONSISTENTSNAPSHOT) || !strings.Contains(err.Error(), ts) {
		t.Fatalf("PrepareSnapshot without the tablespace's volume: %v; want INCONSISTENTSNAPSHOT naming %s", err, ts)
	}
	waitNoBackup(t, srv, 5*time.Second)
	if err := handle(t, w, writers.Freeze, &writers.Request{}); !vsserr.Is(err, vsserr.VSS_E_WRITERERROR_NONRETRYABLE) {
		t.Fatalf("Freeze after a refused PrepareSnapshot: %v", err)
	}
}

// TestAbort: Abort after PrepareSnapshot and after Freeze ends the backup;
// more Aborts are harmless.
func TestAbort(t *testing.T) {
	pgtest.Require(t)
	srv := pgtest.Start(t, pgtest.Options{})
	w := newWriter(t, Config{Name: "main", DSN: srv.DSN("postgres")})
	for _, after := range []writers.Event{writers.PrepareSnapshot, writers.Freeze, writers.Thaw} {
		t.Run("after"+after.String(), func(t *testing.T) {
			req := &writers.Request{SetID: uuid.New(), Volumes: []string{"/"}, Deadline: time.Now().Add(time.Minute)}
			for _, ev := range []writers.Event{writers.PrepareSnapshot, writers.Freeze, writers.Thaw} {
				mustHandle(t, w, ev, req)
				if ev == after {
					break
				}
			}
			if s := stateOf(t, srv); s.sessions != 1 || s.slots != 1 {
				t.Fatalf("before Abort: %+v", s)
			}
			mustHandle(t, w, writers.Abort, req)
			waitNoBackup(t, srv, 5*time.Second)
			mustHandle(t, w, writers.Abort, req)
			mustHandle(t, w, writers.BackupShutdown, req)
			if err := handle(t, w, writers.Thaw, req); err == nil {
				t.Fatal("Thaw after Abort succeeded")
			}
		})
	}
	// Close ends a backup too.
	req := &writers.Request{SetID: uuid.New(), Volumes: []string{"/"}}
	mustHandle(t, w, writers.PrepareSnapshot, req)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	waitNoBackup(t, srv, 5*time.Second)
}

// TestRestoreInPlace backs a cluster up into a shadow, changes it, and
// restores the shadow in place: PreRestore stops the server, PostRestore
// starts it and it recovers to the backup.
func TestRestoreInPlace(t *testing.T) {
	pgtest.Require(t)
	fs := testutil.NewFS(t, "xfs", 0)
	pgDir := filepath.Join(fs.Dir, "pg")
	dataDir := filepath.Join(pgDir, "data")
	srv := pgtest.Start(t, pgtest.Options{DataDir: dataDir})
	admin := srv.Connect(t, "postgres")
	exec1(t, admin, "CREATE TABLE rows (id serial PRIMARY KEY, t timestamptz NOT NULL, client int NOT NULL)")
	exec1(t, admin, "INSERT INTO rows (t, client) SELECT now(), g FROM generate_series(1, 10) g")

	w := newWriter(t, Config{Name: "main", DSN: srv.DSN("postgres"), DataDir: dataDir})
	shadowRoot := filepath.Join(fs.Dir, "shadow")
	req := &writers.Request{SetID: uuid.New(), Volumes: []string{fs.Dir}, Deadline: time.Now().Add(time.Minute)}
	mustHandle(t, w, writers.PrepareSnapshot, req)
	mustHandle(t, w, writers.Freeze, req)
	copyTree(t, pgDir, filepath.Join(shadowRoot, "pg"))
	mustHandle(t, w, writers.Thaw, req)
	req.ShadowPaths = map[string]string{fs.Dir: shadowRoot}
	mustHandle(t, w, writers.PostSnapshot, req)
	exec1(t, admin, "INSERT INTO rows (t, client) SELECT now(), g FROM generate_series(11, 20) g")
	_ = admin.Close(context.Background())
	md1, err := w.Identify(context.Background())
	if err != nil {
		t.Fatal(err)
	}

	// A restore elsewhere leaves the server running and takes
	// postmaster.pid out of the restored files.
	target := t.TempDir()
	if err := os.WriteFile(filepath.Join(target, "postmaster.pid"), []byte("1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	mustHandle(t, w, writers.PreRestore, &writers.Request{RestoreTarget: target})
	if !srv.Running() {
		t.Fatal("PreRestore to another target stopped the server")
	}
	mustHandle(t, w, writers.PostRestore, &writers.Request{RestoreTarget: target})
	if _, err := os.Stat(filepath.Join(target, "postmaster.pid")); err == nil {
		t.Fatal("postmaster.pid left in the restore target")
	}

	// In place.
	mustHandle(t, w, writers.PreRestore, &writers.Request{})
	if srv.Running() {
		t.Fatal("the server runs after PreRestore")
	}
	md2, err := w.Identify(context.Background()) // the server is down: from the disk
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(md1) != fmt.Sprint(md2) {
		t.Errorf("Identify differs with the server down:\n%+v\n%+v", md1, md2)
	}
	// The requester puts the shadow's files in place.
	testutil.Run(t, "sh", "-c", `rm -rf "$1"/* && cp -a "$2"/. "$1"/`, "sh", dataDir, filepath.Join(shadowRoot, "pg", "data"))
	t0 := time.Now()
	mustHandle(t, w, writers.PostRestore, &writers.Request{})
	t.Logf("PostRestore (start and recovery) took %v", time.Since(t0).Round(time.Millisecond))
	if !srv.Running() {
		t.Fatal("the server does not run after PostRestore")
	}
	var n int
	if err := srv.Connect(t, "postgres").QueryRow(context.Background(), "SELECT count(*) FROM rows").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 10 {
		t.Fatalf("after the restore the table has %d rows; want the 10 of the backup", n)
	}
	if _, err := os.Stat(filepath.Join(dataDir, "backup_label.old")); err != nil {
		t.Errorf("the restored backup_label was not used: %v", err)
	}
	// PreRestore on a server that is already down is fine.
	srv.Stop(t)
	mustHandle(t, w, writers.PreRestore, &writers.Request{})
	mustHandle(t, w, writers.PostRestore, &writers.Request{})
}
