package wbadmin_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/linuxvss/vss/internal/testutil"
	"github.com/linuxvss/vss/internal/testutil/mariadbtest"
)

// mdbSettings keep the data directory small: a 16 MiB redo log.
var mdbSettings = map[string]string{"innodb_log_file_size": "16M"}

// mdbIDs returns the ids of table app.r of the server, after a check of
// the table.
func mdbIDs(t *testing.T, srv *mariadbtest.Server) []int64 {
	t.Helper()
	db := srv.DB(t, "app")
	defer db.Close()
	var tbl, op, typ, msg string
	if err := db.QueryRow("CHECK TABLE r").Scan(&tbl, &op, &typ, &msg); err != nil || msg != "OK" {
		t.Fatalf("%s: CHECK TABLE r: %s %s %v", srv.DataDir, typ, msg, err)
	}
	rows, err := db.Query("SELECT id FROM r")
	if err != nil {
		t.Fatalf("%s: %v", srv.DataDir, err)
	}
	defer rows.Close()
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return ids
}

// TestMariaDBComponent: the acceptance run on MariaDB. A server under a
// live insert load, its data directory on a btrfs volume, is backed up as
// the MariaDB writer's component (full, -vssFull), more rows go in, a
// differential follows; restored into a new directory and under a new
// name next to the original while the original keeps taking inserts, a
// server started on each copy recovers and holds exactly the rows
// committed before the differential's freeze; the differential stores at
// most 1.1× the bytes that changed; a copy-only backup in between leaves
// the differential base where it was.
func TestMariaDBComponent(t *testing.T) {
	testutil.RequireRoot(t)
	mariadbtest.Require(t)
	testutil.RequireTools(t, "btrfs")
	vol := testutil.NewFS(t, "btrfs", 1<<30)
	dataDir := filepath.Join(vol.Dir, "mariadb", "data")
	srv := mariadbtest.Start(t, mariadbtest.Options{DataDir: dataDir, Settings: mdbSettings})
	admin := srv.DB(t, "")
	for _, q := range []string{"CREATE DATABASE app", "CREATE TABLE app.r (id bigint PRIMARY KEY, pad blob) ENGINE=InnoDB"} {
		if _, err := admin.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	admin.Close()
	// The writer starts the server after a restore in place with the
	// server's own command line (no system service here).
	var start []string
	for _, a := range srv.Command() {
		start = append(start, strconv.Quote(a))
	}
	w := newTool(t, fmt.Sprintf("[[writers.mariadb]]\nname = \"main\"\ndsn = %q\ndata_dir = %q\nstart_command = [%s]\n",
		srv.DSN(""), dataDir, strings.Join(start, ", ")))
	target := filepath.Join(t.TempDir(), "backups")
	comp := `MariaDB Writer\MariaDB\main`
	pad := testutil.RandomBytes(7, 3000)
	db := srv.DB(t, "app")
	db.SetMaxOpenConns(1)
	load := startLoad(t, time.Millisecond, func(ctx context.Context, id int64) error {
		_, err := db.ExecContext(ctx, "INSERT INTO r VALUES (?, ?)", id, pad)
		return err
	})
	load.waitRows(t, 300)

	beforeFull := time.Now()
	full := w.backup(t, "-backupTarget:"+target, "-component:"+comp, "-vssFull", "-full")
	lo0, hi0 := load.committedBefore(beforeFull), load.sentAfter(time.Now())
	if full.Kind != "full" {
		t.Fatalf("first backup: kind %s", full.Kind)
	}
	load.waitRows(t, load.committedBefore(time.Now())+3500)
	before := time.Now()
	diff := w.backup(t, "-backupTarget:"+target, "-component:"+comp, "-vssFull", "-differential")
	after := time.Now()
	lo, hi := load.committedBefore(before), load.sentAfter(after)
	if diff.Kind != "differential" || baseOf(t, target, diff.Version) != full.Version {
		t.Fatalf("differential: kind %s, base %s (full %s)", diff.Kind, baseOf(t, target, diff.Version), full.Version)
	}

	// A copy-only backup (complete) is no base: the next differential is
	// still relative to the full backup.
	cp := w.backup(t, "-backupTarget:"+target, "-component:"+comp, "-vssCopy", "-full")
	if cp.Kind != "copy" {
		t.Fatalf("copy-only backup: kind %s", cp.Kind)
	}
	diff2 := w.backup(t, "-backupTarget:"+target, "-component:"+comp, "-vssFull", "-differential")
	if b := baseOf(t, target, diff2.Version); b != full.Version {
		t.Errorf("a differential after a copy-only backup has base %s, want the full backup %s", b, full.Version)
	}

	// get items names the component and the server's files, not its
	// temporary tablespace.
	items := w.run(t, "get", "items", "-backupTarget:"+target, "-version:"+diff.Version).must(t).out
	for _, want := range []string{`Item: ` + comp, "mariadb/data/app/r.ibd\n", "mariadb/data/ib_logfile0\n"} {
		if !strings.Contains(items, want) {
			t.Errorf("get items lacks %q:\n%s", want, items)
		}
	}
	if strings.Contains(items, "ibtmp1") {
		t.Errorf("the component's backup holds the temporary tablespace:\n%s", items)
	}

	// Restore with move, while the original goes on taking inserts.
	moved := filepath.Join(t.TempDir(), "moved")
	w.run(t, "start", "recovery", "-backupTarget:"+target, "-version:"+diff.Version, "-itemType:Component", "-items:"+comp, "-recoveryTarget:"+moved, "-quiet").must(t)

	// What the differential stored against what changed since the full,
	// measured on the restored files before a server touches them.
	fullDir := filepath.Join(t.TempDir(), "full")
	w.run(t, "start", "recovery", "-backupTarget:"+target, "-version:"+full.Version, "-itemType:Component", "-items:"+comp, "-recoveryTarget:"+fullDir, "-quiet").must(t)
	changed := changedBytes(t, fullDir, moved)
	meta := manifestBytes(t, target, diff.Version)
	t.Logf("differential: %d bytes changed since the full backup, %d read, %d stored (%.3f×), %d of manifest and documents",
		changed, diff.BytesRead, diff.BytesStored, float64(diff.BytesStored)/float64(changed), meta)
	if changed == 0 || float64(diff.BytesStored) > 1.1*float64(changed) {
		t.Errorf("the differential stored %d bytes for %d changed (goal: at most 1.1×)", diff.BytesStored, changed)
	}

	// A second server on the copy restored with move recovers it.
	movedSrv, err := mariadbtest.StartOn(t, filepath.Join(moved, dataDir), mariadbtest.Options{Settings: mdbSettings})
	if err != nil {
		t.Fatalf("a server on the data directory restored with move: %v", err)
	}
	k := requireRowsAt(t, "the server restored with move", mdbIDs(t, movedSrv), lo, hi)
	movedSrv.Stop(t)
	// Under a new name next to the original.
	w.run(t, "start", "recovery", "-backupTarget:"+target, "-version:"+diff.Version, "-itemType:Component", "-items:"+comp, "-newName:copy", "-quiet").must(t)
	renamedSrv, err := mariadbtest.StartOn(t, filepath.Join(vol.Dir, "mariadb", "copy"), mariadbtest.Options{Settings: mdbSettings})
	if err != nil {
		t.Fatalf("a server on the data directory restored under a new name: %v", err)
	}
	if k2 := requireRowsAt(t, "the server restored under a new name", mdbIDs(t, renamedSrv), lo, hi); k2 != k {
		t.Errorf("the two restores of one version hold rows 1…%d and 1…%d", k, k2)
	}
	renamedSrv.Stop(t)
	// The original kept running.
	n := load.committedBefore(time.Now())
	load.waitRows(t, n+50)
	load.halt()
	if err := load.failed(); err != nil {
		t.Fatalf("the original server during the restores: %v", err)
	}
	if !srv.Running() {
		t.Fatal("the original server does not run any more")
	}
	if ids := mdbIDs(t, srv); int64(len(ids)) < n+50 {
		t.Errorf("the original holds %d rows, want at least %d", len(ids), n+50)
	}

	w.run(t, "verify", "-backupTarget:"+target, "-version:"+diff2.Version).must(t)

	// In place: the writer stops the server (PreRestore), the full
	// version replaces the data directory (files of the later state go),
	// and the writer starts the server again with its start command
	// (PostRestore), which recovers; the copy restored under a new name
	// beside it stays.
	w.run(t, "start", "recovery", "-backupTarget:"+target, "-version:"+full.Version, "-itemType:Component", "-items:"+comp, "-quiet").must(t)
	if !srv.Running() {
		t.Fatal("the server does not run after the restore in place")
	}
	requireRowsAt(t, "the server restored in place from the full backup", mdbIDs(t, srv), lo0, hi0)
	if _, err := os.Stat(filepath.Join(vol.Dir, "mariadb", "copy", "app", "r.ibd")); err != nil {
		t.Errorf("the copy beside the data directory after a restore in place: %v", err)
	}
	requireNoShadow(t, w.state)
}
