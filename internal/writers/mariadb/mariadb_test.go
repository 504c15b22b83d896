package mariadb_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/linuxvss/vss/internal/testutil"
	"github.com/linuxvss/vss/internal/testutil/mariadbtest"
	"github.com/linuxvss/vss/internal/vsserr"
	"github.com/linuxvss/vss/internal/writers"
	"github.com/linuxvss/vss/internal/writers/mariadb"
	"github.com/linuxvss/vss/pkg/vssmeta"
)

// slack is how late a client may see a commit the server made just before
// a lock was granted: commits the clients saw later than that while frozen
// are only reported (the machine may be busy), what the server counts is
// asserted.
const slack = 100 * time.Millisecond

// reportLate logs INSERTs whose commit a client saw while frozen.
func reportLate(t *testing.T, recs []rec, frozen, thaw time.Time) {
	t.Helper()
	if c := committedIn(recs, frozen.Add(slack), thaw); len(c) > 0 {
		t.Logf("note: clients saw %d commits more than %v after Freeze returned (first %v after)", len(c), slack, c[0].done.Sub(frozen))
	}
}

func TestSupportsBackupStage(t *testing.T) {
	for v, want := range map[string]bool{
		"10.11.19-MariaDB-0+deb12u1": true,
		"10.4.1-MariaDB":             true,
		"10.4.0-MariaDB":             false,
		"10.3.39-MariaDB-log":        false,
		"11.4.2-MariaDB":             true,
		"5.5.5-10.6.12-MariaDB":      true,
		"8.0.36":                     false,
		"8.0.36-0ubuntu0.22.04.1":    false,
		"garbage":                    false,
	} {
		if got := mariadb.SupportsBackupStage(v); got != want {
			t.Errorf("SupportsBackupStage(%q) = %v, want %v", v, got, want)
		}
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	for _, cfg := range []mariadb.Config{
		{},
		{DSN: "root@unix(/x)/", DataDir: "relative"},
		{DSN: "root@unix(/x)/", Lock: "fsfreeze"},
		{DSN: "::not a dsn::"},
	} {
		if _, err := mariadb.New(cfg, nil); err == nil {
			t.Errorf("New(%+v) accepted a bad configuration", cfg)
		}
	}
}

// TestConsistencyBtrfsSnapshot is the classic experiment at writer level:
// clients insert rows while the writer freezes the server and an atomic
// btrfs snapshot is taken; a second server started on the snapshot must
// recover and hold every row committed before the freeze and none sent
// after the thaw.
func TestConsistencyBtrfsSnapshot(t *testing.T) {
	requireTools(t, "btrfs")
	fs := testutil.NewFS(t, "btrfs", 1<<30)
	dataDir := filepath.Join(fs.Dir, "db")
	testutil.Subvolume(t, dataDir)
	srv := mariadbtest.Start(t, mariadbtest.Options{DataDir: dataDir})
	db := srv.DB(t, "")
	createTable(t, db)
	w := newWriter(t, srv, mariadb.Config{})
	// A pid file in the data directory must not stay in the shadow.
	if err := os.WriteFile(filepath.Join(dataDir, "stale.pid"), []byte("1\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	in := startInserters(t, db, 100*time.Millisecond, 10*time.Millisecond)
	time.Sleep(time.Second)
	req := &writers.Request{Volumes: []string{dataDir}}
	mustHandle(t, w, writers.PrepareSnapshot, req)
	if m := w.Method(); m != mariadb.LockBackupStage {
		t.Errorf("method = %q on MariaDB, want %q", m, mariadb.LockBackupStage)
	}
	var win window
	win.freezeStart = time.Now()
	req.Deadline = win.freezeStart.Add(30 * time.Second)
	mustHandle(t, w, writers.Freeze, req)
	win.frozen = time.Now()
	before := countRows(t, db)
	snap := filepath.Join(fs.Dir, "snap")
	testutil.Run(t, "btrfs", "subvolume", "snapshot", dataDir, snap)
	after := countRows(t, db)
	win.thawStart = time.Now()
	mustHandle(t, w, writers.Thaw, req)
	win.thawEnd = time.Now()
	req.ShadowPaths = map[string]string{dataDir: snap}
	mustHandle(t, w, writers.PostSnapshot, req)
	if _, err := os.Stat(filepath.Join(snap, "stale.pid")); !os.IsNotExist(err) {
		t.Errorf("PostSnapshot left the stale pid file in the shadow: %v", err)
	}
	time.Sleep(time.Second)
	recs := in.Stop()

	shadow, err := mariadbtest.StartOn(t, snap, mariadbtest.Options{})
	if err != nil {
		t.Fatalf("a server does not start on the btrfs snapshot: %v", err)
	}
	ids, err := shadowIDs(t, shadow)
	if err != nil {
		t.Fatal(err)
	}
	v := judge(recs, ids, win)
	t.Logf("btrfs snapshot under BACKUP STAGE BLOCK_COMMIT: %d INSERTs, %s", len(recs), v)
	inWin, other := maxLatency(recs, win.freezeStart, win.thawEnd)
	t.Logf("Freeze took %v, frozen %v (snapshot), Thaw took %v; INSERTs blocked up to %v (longest INSERT overlapping the freeze), longest other INSERT %v",
		win.frozen.Sub(win.freezeStart).Round(time.Microsecond), win.thawStart.Sub(win.frozen).Round(time.Microsecond),
		win.thawEnd.Sub(win.thawStart).Round(time.Microsecond), inWin.Round(time.Microsecond), other.Round(time.Microsecond))
	for _, l := range recoveryLines(shadow) {
		t.Log("shadow server: " + l)
	}
	if !v.consistent() {
		t.Errorf("the snapshot is not consistent: missing committed %v, present though sent after Thaw %v, unknown %v",
			v.missingCommitted, v.presentAfterThaw, v.unknown)
	}
	if v.committedBefore == 0 || v.sentAfterThaw == 0 {
		t.Errorf("the experiment is void: %d commits before Freeze, %d INSERTs after Thaw", v.committedBefore, v.sentAfterThaw)
	}
	if after != before {
		t.Errorf("%d rows were committed while frozen", after-before)
	}
	reportLate(t, recs, win.frozen, win.thawStart)
	if r := checkTable(shadow.DB(t, "")); !strings.HasSuffix(r, "OK") {
		t.Errorf("CHECK TABLE on the shadow: %s", r)
	}
}

// TestNonAtomicCopyXFS asks whether a copy that is not atomic (cp -a of
// the data directory while the writer holds BACKUP STAGE BLOCK_COMMIT) is
// application-consistent for MariaDB. It reports what happens and asserts
// only what is certain: inserts wait during the freeze and go on after
// Thaw.
func TestNonAtomicCopyXFS(t *testing.T) {
	requireTools(t, "cp")
	two := []time.Duration{100 * time.Millisecond, 10 * time.Millisecond}
	busy := slices.Repeat([]time.Duration{10 * time.Millisecond}, 16)
	eager := map[string]string{"innodb_max_dirty_pages_pct": "0", "innodb_max_dirty_pages_pct_lwm": "0"}
	for _, v := range []struct {
		name, flag string
		clients    []time.Duration
		settings   map[string]string
	}{
		// coreutils' cp clones files on XFS with reflink=1: each file is
		// an atomic clone, the files are cloned one after the other (the
		// reflink provider's situation).
		{"reflink", "--reflink=auto", two, nil},
		// A byte copy (the copy provider's situation).
		{"bytes", "--reflink=never", two, nil},
		// A byte copy under more load: 16 clients, whose INSERTs run (and
		// write redo) during BLOCK_COMMIT, only their commits wait; then
		// also with a page cleaner that flushes dirty pages at once, so
		// that data files change while they are copied.
		{"bytes-busy", "--reflink=never", busy, nil},
		{"bytes-busy-eager-flush", "--reflink=never", busy, eager},
	} {
		t.Run(v.name, func(t *testing.T) { nonAtomicCopy(t, v.flag, v.clients, v.settings) })
	}
}

func nonAtomicCopy(t *testing.T, flag string, clients []time.Duration, settings map[string]string) {
	fs := testutil.NewFS(t, "xfs", 2<<30)
	dataDir := filepath.Join(fs.Dir, "db")
	if err := os.Mkdir(dataDir, 0o750); err != nil {
		t.Fatal(err)
	}
	srv := mariadbtest.Start(t, mariadbtest.Options{DataDir: dataDir, Settings: settings})
	db := srv.DB(t, "")
	createTable(t, db)
	w := newWriter(t, srv, mariadb.Config{})
	in := startInserters(t, db, clients...)
	time.Sleep(time.Second)

	const cycles = 5
	var wins []window
	var copies []string
	var copyTook []time.Duration
	for i := range cycles {
		req := &writers.Request{Volumes: []string{fs.Dir}}
		mustHandle(t, w, writers.PrepareSnapshot, req)
		var win window
		win.freezeStart = time.Now()
		req.Deadline = win.freezeStart.Add(60 * time.Second)
		mustHandle(t, w, writers.Freeze, req)
		win.frozen = time.Now()
		before := countRows(t, db)
		dst := filepath.Join(fs.Dir, fmt.Sprintf("copy%d", i+1))
		testutil.Run(t, "cp", "-a", flag, dataDir, dst)
		copyTook = append(copyTook, time.Since(win.frozen))
		if after := countRows(t, db); after != before {
			t.Errorf("cycle %d: %d rows were committed while frozen", i+1, after-before)
		}
		win.thawStart = time.Now()
		mustHandle(t, w, writers.Thaw, req)
		win.thawEnd = time.Now()
		if in.waitCommitAfter(win.thawEnd, 5*time.Second).IsZero() {
			t.Errorf("cycle %d: no INSERT committed within 5 s after Thaw", i+1)
		}
		wins = append(wins, win)
		copies = append(copies, dst)
		time.Sleep(500 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond)
	recs := in.Stop()

	started, consistent := 0, 0
	for i, win := range wins {
		reportLate(t, recs, win.frozen, win.thawStart)
		inWin, _ := maxLatency(recs, win.freezeStart, win.thawEnd)
		t.Logf("cycle %d: cp -a %s took %v under BLOCK_COMMIT; INSERTs blocked up to %v", i+1,
			flag, copyTook[i].Round(time.Millisecond), inWin.Round(time.Millisecond))
		s, err := mariadbtest.StartOn(t, copies[i], mariadbtest.Options{})
		if err != nil {
			t.Logf("cycle %d: OUTCOME: the copy does NOT start:", i+1)
			for _, l := range interesting(err.Error()) {
				t.Log("    " + l)
			}
			continue
		}
		started++
		ids, err := shadowIDs(t, s)
		if err != nil {
			t.Logf("cycle %d: OUTCOME: the copy starts but test.rows cannot be read: %v", i+1, err)
		} else {
			v := judge(recs, ids, win)
			check := checkTable(s.DB(t, ""))
			ok := v.consistent() && strings.HasSuffix(check, "OK")
			if ok {
				consistent++
			}
			t.Logf("cycle %d: OUTCOME: the copy starts; consistent=%v; CHECK TABLE %s; %s", i+1, ok, check, v)
		}
		for _, l := range recoveryLines(s) {
			t.Log("    copy server: " + l)
		}
		s.Stop(t)
		if err := os.RemoveAll(copies[i]); err != nil {
			t.Error(err)
		}
	}
	t.Logf("SUMMARY: non-atomic copy (cp -a %s, %d clients, settings %v) under BACKUP STAGE BLOCK_COMMIT: %d of %d copies started, %d consistent",
		flag, len(clients), settings, started, cycles, consistent)
}

// interesting keeps the lines of a server error log that say what went
// wrong.
func interesting(log string) []string {
	var out []string
	for _, l := range strings.Split(log, "\n") {
		ll := strings.ToLower(l)
		if strings.Contains(ll, "[error]") || strings.Contains(ll, "[warning] innodb") || strings.Contains(ll, "future") ||
			strings.Contains(ll, "corrupt") || strings.Contains(ll, "exited") || strings.Contains(ll, "did not answer") {
			out = append(out, strings.TrimSpace(l))
		}
	}
	if len(out) > 30 {
		out = append(out[:30], "…")
	}
	return out
}

var methods = []mariadb.LockMethod{mariadb.LockBackupStage, mariadb.LockFTWRL}

// TestFreezeDeadlineReleases: a Freeze nobody thaws ends at its deadline;
// the writer releases the server by itself and Thaw then reports the time
// out.
func TestFreezeDeadlineReleases(t *testing.T) {
	requireTools(t)
	for _, m := range methods {
		t.Run(string(m), func(t *testing.T) {
			srv := mariadbtest.Start(t, mariadbtest.Options{})
			db := srv.DB(t, "")
			createTable(t, db)
			w := newWriter(t, srv, mariadb.Config{Lock: m})
			in := startInserters(t, db, 10*time.Millisecond)
			time.Sleep(300 * time.Millisecond)

			req := &writers.Request{Volumes: []string{"/"}}
			mustHandle(t, w, writers.PrepareSnapshot, req)
			req.Deadline = time.Now().Add(time.Second)
			mustHandle(t, w, writers.Freeze, req)
			frozen := time.Now()
			before := countRows(t, db)
			time.Sleep(time.Until(req.Deadline.Add(-200 * time.Millisecond)))
			after := countRows(t, db)
			if time.Now().Before(req.Deadline) && after != before {
				t.Errorf("%d rows were committed before the freeze deadline", after-before)
			}
			resumed := in.waitCommitAfter(req.Deadline, 5*time.Second)
			if resumed.IsZero() {
				t.Fatal("no INSERT went through within 5 s after the freeze deadline")
			}
			recs := in.Stop()
			reportLate(t, recs, frozen, req.Deadline)
			blocked, _ := maxLatency(recs, frozen, req.Deadline)
			t.Logf("INSERTs blocked up to %v; the first INSERT sent after the deadline committed %v after it",
				blocked.Round(time.Millisecond), resumed.Sub(req.Deadline).Round(time.Millisecond))
			if d := resumed.Sub(req.Deadline); d > 3*time.Second {
				t.Errorf("inserts resumed %v after the deadline", d)
			}
			err := handle(t, w, writers.Thaw, req, 10*time.Second)
			if !vsserr.Is(err, vsserr.VSS_E_WRITERERROR_TIMEOUT) {
				t.Errorf("Thaw after the deadline: %v, want VSS_E_WRITERERROR_TIMEOUT", err)
			}
			mustHandle(t, w, writers.Abort, req)
			requireNothingHeld(t, srv)
			cycle(t, w, req)
			requireNothingHeld(t, srv)
		})
	}
}

// cycle runs a whole PrepareSnapshot, Freeze, Thaw.
func cycle(t *testing.T, w *mariadb.Writer, req *writers.Request) {
	t.Helper()
	r := *req
	mustHandle(t, w, writers.PrepareSnapshot, &r)
	r.Deadline = time.Now().Add(30 * time.Second)
	mustHandle(t, w, writers.Freeze, &r)
	mustHandle(t, w, writers.Thaw, &r)
}

// TestSessionKilledWhileFrozen: when the writer's session dies while it
// holds the freeze, the server releases it, and Thaw reports an error
// instead of hanging.
func TestSessionKilledWhileFrozen(t *testing.T) {
	requireTools(t)
	for _, m := range methods {
		t.Run(string(m), func(t *testing.T) {
			srv := mariadbtest.Start(t, mariadbtest.Options{})
			db := srv.DB(t, "")
			createTable(t, db)
			w := newWriter(t, srv, mariadb.Config{Lock: m})
			in := startInserters(t, db, 10*time.Millisecond)
			time.Sleep(300 * time.Millisecond)

			req := &writers.Request{Volumes: []string{"/"}}
			mustHandle(t, w, writers.PrepareSnapshot, req)
			req.Deadline = time.Now().Add(60 * time.Second)
			mustHandle(t, w, writers.Freeze, req)
			before := countRows(t, db)
			time.Sleep(500 * time.Millisecond)
			if after := countRows(t, db); after != before {
				t.Fatalf("%d rows were committed while frozen", after-before)
			}
			id := w.SessionID()
			if id == 0 {
				t.Fatal("no session ID while frozen")
			}
			if _, err := db.Exec("KILL CONNECTION " + strconv.FormatInt(id, 10)); err != nil {
				t.Fatal(err)
			}
			killed := time.Now()
			resumed := in.waitCommitAfter(killed, 5*time.Second)
			if resumed.IsZero() {
				t.Fatal("no INSERT went through within 5 s after the session was killed")
			}
			t.Logf("inserts resumed %v after the kill", resumed.Sub(killed).Round(time.Millisecond))
			start := time.Now()
			err := handle(t, w, writers.Thaw, req, 20*time.Second)
			took := time.Since(start)
			t.Logf("Thaw after the kill: %v (took %v)", err, took.Round(time.Millisecond))
			if err == nil {
				t.Error("Thaw after the session was killed reported success")
			} else if c := vsserr.CodeOf(err); c != vsserr.VSS_E_WRITERERROR_RETRYABLE {
				t.Errorf("Thaw after the kill: code %v, want VSS_E_WRITERERROR_RETRYABLE", c)
			}
			if took > 10*time.Second {
				t.Errorf("Thaw took %v", took)
			}
			mustHandle(t, w, writers.Abort, req)
			in.Stop()
			requireNothingHeld(t, srv)
			cycle(t, w, req)
			if w.SessionID() == id {
				t.Error("the writer still uses the killed session")
			}
			requireNothingHeld(t, srv)
		})
	}
}

// TestLockWaitTimesOut: when another session's LOCK TABLES keeps the
// writer from quiescing, the event fails with a retryable error at its
// deadline instead of waiting, and nothing stays held.
func TestLockWaitTimesOut(t *testing.T) {
	requireTools(t)
	for _, m := range methods {
		t.Run(string(m), func(t *testing.T) {
			srv := mariadbtest.Start(t, mariadbtest.Options{})
			db := srv.DB(t, "")
			createTable(t, db)
			w := newWriter(t, srv, mariadb.Config{Lock: m})
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			other, err := db.Conn(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer other.Close()
			if _, err := other.ExecContext(ctx, "LOCK TABLES test.`rows` WRITE"); err != nil {
				t.Fatal(err)
			}
			req := &writers.Request{Volumes: []string{"/"}}
			start := time.Now()
			err = handle(t, w, writers.PrepareSnapshot, req, 2*time.Second)
			ev := writers.PrepareSnapshot
			if err == nil {
				ev = writers.Freeze
				req.Deadline = time.Now().Add(2 * time.Second)
				err = handle(t, w, writers.Freeze, req, 10*time.Second)
			}
			took := time.Since(start)
			t.Logf("%s while another session holds LOCK TABLES ... WRITE: %v (after %v)", ev, err, took.Round(time.Millisecond))
			if !vsserr.Is(err, vsserr.VSS_E_WRITERERROR_RETRYABLE) {
				t.Errorf("%s: %v, want VSS_E_WRITERERROR_RETRYABLE", ev, err)
			}
			if took > 6*time.Second {
				t.Errorf("%s took %v with a 2 s limit", ev, took)
			}
			mustHandle(t, w, writers.Abort, req)
			if _, err := other.ExecContext(ctx, "UNLOCK TABLES"); err != nil {
				t.Fatal(err)
			}
			requireNothingHeld(t, srv)
			cycle(t, w, &writers.Request{Volumes: []string{"/"}})
			requireNothingHeld(t, srv)
		})
	}
}

// TestIdentifyAndMissingVolumes: the metadata lists the data directory and
// the logs kept outside it; a set whose volumes miss one of them is
// refused with VSS_E_WRITERERROR_INCONSISTENTSNAPSHOT and nothing stays
// held.
func TestIdentifyAndMissingVolumes(t *testing.T) {
	requireTools(t)
	base := t.TempDir()
	redo := filepath.Join(base, "redo")
	binlog := filepath.Join(base, "binlog")
	for _, d := range []string{redo, binlog} {
		if err := os.Mkdir(d, 0o750); err != nil {
			t.Fatal(err)
		}
	}
	srv := mariadbtest.Start(t, mariadbtest.Options{
		DataDir: filepath.Join(base, "data"),
		Settings: map[string]string{
			"innodb_log_group_home_dir": redo,
			"log_bin":                   filepath.Join(binlog, "mysql-bin"),
			"server_id":                 "1",
		},
	})
	w := newWriter(t, srv, mariadb.Config{Name: "main"})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	md, err := w.Identify(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if md.WriterID != mariadb.ClassID || md.InstanceID != mariadb.InstanceID("main", srv.DataDir) ||
		md.Name != mariadb.WriterName || md.InstanceName != "main" {
		t.Errorf("identity: %v %v %q %q", md.WriterID, md.InstanceID, md.Name, md.InstanceName)
	}
	wantSchema := vssmeta.SchemaDifferential | vssmeta.SchemaIncremental | vssmeta.SchemaCopy |
		vssmeta.SchemaWriterSupportsNewTarget | vssmeta.SchemaWriterSupportsRestoreWithMove | vssmeta.SchemaRestoreRename
	if md.Schema != wantSchema || md.Restore.Method != vssmeta.RestoreStopStart {
		t.Errorf("schema %#x, restore %v", md.Schema, md.Restore.Method)
	}
	if len(md.Components) != 1 {
		t.Fatalf("%d components, want 1", len(md.Components))
	}
	c := md.Components[0]
	if c.Type != vssmeta.ComponentDatabase || c.LogicalPath != "MariaDB" || c.Name != "main" {
		t.Errorf("component %+v", c)
	}
	for _, f := range []vssmeta.File{
		{Path: srv.DataDir, Filespec: "*", Recursive: true},
		{Path: redo, Filespec: "ib_logfile*", Log: true},
		{Path: binlog, Filespec: "mysql-bin.*", Log: true},
	} {
		if !slices.Contains(c.Files, f) {
			t.Errorf("files %+v lack %+v", c.Files, f)
		}
	}
	for _, f := range []vssmeta.File{
		{Path: srv.DataDir, Filespec: "*.pid"},
		{Path: filepath.Dir(srv.Socket), Filespec: filepath.Base(srv.Socket)},
	} {
		if !slices.Contains(md.Excludes, f) {
			t.Errorf("excludes %+v lack %+v", md.Excludes, f)
		}
	}
	t.Logf("files %+v; excludes %+v", c.Files, md.Excludes)

	for _, tc := range []struct {
		volumes []string
		missing string
	}{
		{[]string{srv.DataDir}, redo},
		{[]string{srv.DataDir, redo}, binlog},
		{[]string{filepath.Join(base, "elsewhere")}, srv.DataDir},
		{nil, srv.DataDir},
	} {
		err := handle(t, w, writers.PrepareSnapshot, &writers.Request{Volumes: tc.volumes}, 30*time.Second)
		if !vsserr.Is(err, vsserr.VSS_E_WRITERERROR_INCONSISTENTSNAPSHOT) || !strings.Contains(err.Error(), tc.missing) {
			t.Errorf("PrepareSnapshot with volumes %v: %v; want VSS_E_WRITERERROR_INCONSISTENTSNAPSHOT naming %s", tc.volumes, err, tc.missing)
		}
		requireNothingHeld(t, srv)
	}
	// Thaw and Abort with nothing held are harmless.
	mustHandle(t, w, writers.Thaw, &writers.Request{})
	mustHandle(t, w, writers.Abort, &writers.Request{})
	// Volumes that hold everything.
	req := &writers.Request{Volumes: []string{srv.DataDir, redo, binlog}}
	mustHandle(t, w, writers.PrepareSnapshot, req)
	req.Deadline = time.Now().Add(30 * time.Second)
	mustHandle(t, w, writers.Freeze, req)
	mustHandle(t, w, writers.Abort, req)
	mustHandle(t, w, writers.Abort, req)
	requireNothingHeld(t, srv)
	// BackupShutdown releases a set that was never thawed.
	mustHandle(t, w, writers.PrepareSnapshot, &writers.Request{Volumes: []string{base}})
	mustHandle(t, w, writers.BackupShutdown, &writers.Request{})
	requireNothingHeld(t, srv)
}

// TestRestoreInPlace: PreRestore stops the server, PostRestore starts it
// again and waits until it answers; a restore elsewhere leaves it alone.
func TestRestoreInPlace(t *testing.T) {
	requireTools(t)
	srv := mariadbtest.Start(t, mariadbtest.Options{})
	db := srv.DB(t, "")
	createTable(t, db)
	for range 3 {
		if _, err := db.Exec("INSERT INTO test.`rows` (t, client) VALUES (NOW(6), 0)"); err != nil {
			t.Fatal(err)
		}
	}
	w := newWriter(t, srv, mariadb.Config{DataDir: srv.DataDir, StartCommand: srv.Command()})

	moved := &writers.Request{RestoreTarget: t.TempDir()}
	mustHandle(t, w, writers.PreRestore, moved)
	if err := ping(srv, 5*time.Second); err != nil {
		t.Fatalf("PreRestore with a target stopped the server: %v", err)
	}
	mustHandle(t, w, writers.PostRestore, moved)

	mustHandle(t, w, writers.PreRestore, &writers.Request{})
	if err := ping(srv, 2*time.Second); err == nil {
		t.Fatal("the server answers after PreRestore")
	}
	if srv.Running() {
		t.Fatal("the server process runs after PreRestore")
	}
	// While it is down, Identify describes the configured data directory.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	md, err := w.Identify(ctx)
	if err != nil || md.Components[0].Files[0].Path != srv.DataDir {
		t.Errorf("Identify while stopped: %+v, %v", md, err)
	}
	// The restore would place files here.
	mustHandle(t, w, writers.PostRestore, &writers.Request{})
	if err := ping(srv, 5*time.Second); err != nil {
		t.Fatalf("the server does not answer after PostRestore: %v", err)
	}
	var n int
	if err := srv.DB(t, "").QueryRow("SELECT COUNT(*) FROM test.`rows`").Scan(&n); err != nil || n != 3 {
		t.Errorf("after the restart: %d rows, %v; want 3", n, err)
	}
	cycle(t, w, &writers.Request{Volumes: []string{"/"}})
	requireNothingHeld(t, srv)
}

// TestHelperFreezer is not a test: it is the process that
// TestFreezerDies freezes a server from and then kills or stops.
func TestHelperFreezer(t *testing.T) {
	dsn := os.Getenv("VSS_MARIADB_FREEZER_DSN")
	if dsn == "" {
		return
	}
	limit, err := time.ParseDuration(os.Getenv("VSS_MARIADB_FREEZER_LIMIT"))
	if err != nil {
		t.Fatal(err)
	}
	w, err := mariadb.New(mariadb.Config{DSN: dsn}, nil)
	if err != nil {
		t.Fatal(err)
	}
	req := &writers.Request{Volumes: []string{"/"}}
	mustHandle(t, w, writers.PrepareSnapshot, req)
	req.Deadline = time.Now().Add(limit)
	mustHandle(t, w, writers.Freeze, req)
	fmt.Println("FROZEN")
	time.Sleep(limit + time.Minute)
}

// TestFreezerDies: the freeze lives in the writer's session, so it ends
// when the process that froze dies (SIGKILL: the connection closes), and
// also when that process hangs (SIGSTOP: the server drops the silent
// session after the freeze window and a few seconds of grace).
func TestFreezerDies(t *testing.T) {
	requireTools(t)
	for _, tc := range []struct {
		name   string
		sig    syscall.Signal
		limit  time.Duration
		within time.Duration
	}{
		{"SIGKILL", syscall.SIGKILL, 5 * time.Minute, 3 * time.Second},
		{"SIGSTOP", syscall.SIGSTOP, time.Second, 15 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := mariadbtest.Start(t, mariadbtest.Options{})
			db := srv.DB(t, "")
			createTable(t, db)
			cmd := exec.Command(os.Args[0], "-test.run=^TestHelperFreezer$", "-test.count=1")
			cmd.Env = append(os.Environ(), "VSS_MARIADB_FREEZER_DSN="+srv.DSN(""),
				"VSS_MARIADB_FREEZER_LIMIT="+tc.limit.String())
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			cmd.Stderr = os.Stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan struct{})
			frozen := make(chan struct{})
			go func() {
				// The first line is the helper's "FROZEN".
				b := make([]byte, 7)
				if _, err := io.ReadFull(out, b); err == nil && string(b) == "FROZEN\n" {
					close(frozen)
				}
				_, _ = io.Copy(io.Discard, out)
				_ = cmd.Wait()
				close(done)
			}()
			t.Cleanup(func() {
				_ = cmd.Process.Kill()
				<-done
			})
			select {
			case <-frozen:
			case <-done:
				t.Fatal("the freezer exited before freezing")
			case <-time.After(30 * time.Second):
				t.Fatal("the freezer did not freeze within 30 s")
			}
			in := startInserters(t, db, 10*time.Millisecond)
			before := countRows(t, db)
			time.Sleep(300 * time.Millisecond)
			if after := countRows(t, db); after != before {
				t.Fatalf("%d rows committed while the freezer holds the server", after-before)
			}
			if err := cmd.Process.Signal(tc.sig); err != nil {
				t.Fatal(err)
			}
			sent := time.Now()
			resumed := in.waitCommitAfter(sent, tc.within)
			if resumed.IsZero() {
				t.Fatalf("no INSERT committed within %v after %s of the freezer", tc.within, tc.name)
			}
			t.Logf("inserts resumed %v after %s of the freezer (freeze window %v)", resumed.Sub(sent).Round(time.Millisecond), tc.name, tc.limit)
			in.Stop()
			requireNothingHeld(t, srv)
		})
	}
}

// ping asks srv whether it answers within d.
func ping(srv *mariadbtest.Server, d time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return srv.Ping(ctx)
}
