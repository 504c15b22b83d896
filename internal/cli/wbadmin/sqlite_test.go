package wbadmin_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/linuxvss/vss/internal/testutil"
)

// sqliteIDs returns the ids of table r of the database at p, after an
// integrity check.
func sqliteIDs(t *testing.T, p string) []int64 {
	t.Helper()
	db, err := sql.Open("sqlite", p)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var ok string
	if err := db.QueryRow("PRAGMA integrity_check").Scan(&ok); err != nil || ok != "ok" {
		t.Fatalf("%s: integrity check: %q %v", p, ok, err)
	}
	rows, err := db.Query("SELECT id FROM r")
	if err != nil {
		t.Fatal(err)
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

// TestSQLiteComponent: the acceptance run on SQLite. A database under a
// live insert load is backed up as a component (full, -vssFull), more
// rows go in, a differential follows; restored into a new directory and
// under a new name next to the original while the original keeps taking
// inserts, it passes its integrity check and holds exactly the rows
// committed before the differential's freeze; the differential stores at
// most 1.1× the bytes that changed; a copy-only backup in between leaves
// the differential base where it was; files beside the database that are
// not the component's are neither backed up nor restored.
func TestSQLiteComponent(t *testing.T) {
	testutil.RequireRoot(t)
	vol := testutil.NewFS(t, "btrfs", 0)
	appDir := filepath.Join(vol.Dir, "app")
	testutil.WriteFile(t, appDir, "notes.txt", []byte("not the database's"))
	dbPath := filepath.Join(appDir, "app.db")
	db, err := sql.Open("sqlite", dbPath+"?_pragma=busy_timeout(20000)&_pragma=journal_mode(WAL)")
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	if _, err := db.Exec("CREATE TABLE r (id INTEGER PRIMARY KEY, pad BLOB)"); err != nil {
		t.Fatal(err)
	}
	w := newTool(t, fmt.Sprintf("[[writers.sqlite]]\nname = \"app\"\npaths = [%q]\n", dbPath))
	target := filepath.Join(t.TempDir(), "backups")
	comp := `SQLite Writer\SQLite\app\app.db`
	pad := testutil.RandomBytes(7, 3000)
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
	load.waitRows(t, load.committedBefore(time.Now())+3000)
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

	// get items names the component and only the database's files.
	items := w.run(t, "get", "items", "-backupTarget:"+target, "-version:"+diff.Version).must(t).out
	for _, want := range []string{`Item: ` + comp, "app/app.db\n"} {
		if !strings.Contains(items, want) {
			t.Errorf("get items lacks %q:\n%s", want, items)
		}
	}
	if strings.Contains(items, "notes.txt") {
		t.Errorf("the component's backup holds a file that is not the component's:\n%s", items)
	}

	// Restore with move, while the original goes on taking inserts.
	moved := filepath.Join(t.TempDir(), "moved")
	w.run(t, "start", "recovery", "-backupTarget:"+target, "-version:"+diff.Version, "-itemType:Component", "-items:"+comp, "-recoveryTarget:"+moved, "-quiet").must(t)
	k := requireRowsAt(t, "the database restored with move", sqliteIDs(t, filepath.Join(moved, dbPath)), lo, hi)
	if _, err := os.Stat(filepath.Join(moved, appDir, "notes.txt")); !os.IsNotExist(err) {
		t.Errorf("a file that is not the component's was restored: %v", err)
	}
	// Under a new name next to the original.
	w.run(t, "start", "recovery", "-backupTarget:"+target, "-version:"+diff.Version, "-itemType:Component", "-items:"+comp, "-newName:copy.db", "-quiet").must(t)
	if k2 := requireRowsAt(t, "the database restored under a new name", sqliteIDs(t, filepath.Join(appDir, "copy.db")), lo, hi); k2 != k {
		t.Errorf("the two restores of one version hold rows 1…%d and 1…%d", k, k2)
	}
	// The original kept running.
	n := load.committedBefore(time.Now())
	load.waitRows(t, n+50)
	load.halt()
	if err := load.failed(); err != nil {
		t.Fatalf("the original database during the restores: %v", err)
	}
	if ids := sqliteIDs(t, dbPath); int64(len(ids)) < n+50 {
		t.Errorf("the original holds %d rows, want at least %d", len(ids), n+50)
	}

	// What the differential stored against what changed since the full.
	fullDir := filepath.Join(t.TempDir(), "full")
	w.run(t, "start", "recovery", "-backupTarget:"+target, "-version:"+full.Version, "-itemType:Component", "-items:"+comp, "-recoveryTarget:"+fullDir, "-quiet").must(t)
	changed := changedBytes(t, fullDir, moved)
	meta := manifestBytes(t, target, diff.Version)
	t.Logf("differential: %d bytes changed since the full backup, %d read, %d stored (%.3f×), %d of manifest and documents",
		changed, diff.BytesRead, diff.BytesStored, float64(diff.BytesStored)/float64(changed), meta)
	if changed == 0 || float64(diff.BytesStored) > 1.1*float64(changed) {
		t.Errorf("the differential stored %d bytes for %d changed (goal: at most 1.1×)", diff.BytesStored, changed)
	}
	w.run(t, "verify", "-backupTarget:"+target, "-version:"+diff2.Version).must(t)

	// In place: the application has closed the database; the full
	// version replaces it (its -wal and -shm of the later state go), and
	// the file beside it stays.
	db.Close()
	w.run(t, "start", "recovery", "-backupTarget:"+target, "-version:"+full.Version, "-itemType:Component", "-items:"+comp, "-quiet").must(t)
	requireRowsAt(t, "the database restored in place from the full backup", sqliteIDs(t, dbPath), lo0, hi0)
	if b, err := os.ReadFile(filepath.Join(appDir, "notes.txt")); err != nil || string(b) != "not the database's" {
		t.Errorf("the file beside the database after a restore in place: %q, %v", b, err)
	}
	requireNoShadow(t, w.state)
}
