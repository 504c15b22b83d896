package wbadmin_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"testing"

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
	return queryIDs(t, db)
}

// queryIDs returns the ids of table r.
func queryIDs(t *testing.T, db *sql.DB) []int64 {
	t.Helper()
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

// TestSQLiteComponent: the acceptance run (runAcceptance) on a SQLite
// database in WAL mode on a btrfs volume (each restored copy passes its
// integrity check). A file beside the database that is not the
// component's is neither backed up nor restored, and stays through a
// restore in place.
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
	pad := testutil.RandomBytes(7, 3000)
	runAcceptance(t, acceptance{
		what: "database",
		tool: newTool(t, fmt.Sprintf("[[writers.sqlite]]\nname = \"app\"\npaths = [%q]\n", dbPath)),
		comp: `SQLite Writer\SQLite\app\app.db`,
		live: dbPath,
		insert: func(ctx context.Context, id int64) error {
			_, err := db.ExecContext(ctx, "INSERT INTO r VALUES (?, ?)", id, pad)
			return err
		},
		newName:  "copy.db",
		items:    []string{"app/app.db\n"},
		notItems: []string{"notes.txt"},
		liveIDs:  func(t *testing.T) []int64 { return sqliteIDs(t, dbPath) },
		copyIDs:  sqliteIDs,
		closeApp: func() { db.Close() },
		check: func(t *testing.T, moved string) {
			if _, err := os.Stat(filepath.Join(moved, appDir, "notes.txt")); !os.IsNotExist(err) {
				t.Errorf("a file that is not the component's was restored: %v", err)
			}
			if b, err := os.ReadFile(filepath.Join(appDir, "notes.txt")); err != nil || string(b) != "not the database's" {
				t.Errorf("the file beside the database after a restore in place: %q, %v", b, err)
			}
		},
	})
}
