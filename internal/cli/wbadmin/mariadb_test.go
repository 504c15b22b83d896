package wbadmin_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

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
	return queryIDs(t, db)
}

// TestMariaDBComponent: the acceptance run (runAcceptance) on a MariaDB
// server whose data directory is on a btrfs volume; a server started on
// each restored copy recovers it.
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
	pad := testutil.RandomBytes(7, 3000)
	db := srv.DB(t, "app")
	db.SetMaxOpenConns(1)
	runAcceptance(t, acceptance{
		what: "server",
		tool: w,
		comp: `MariaDB Writer\MariaDB\main`,
		live: dataDir,
		insert: func(ctx context.Context, id int64) error {
			_, err := db.ExecContext(ctx, "INSERT INTO r VALUES (?, ?)", id, pad)
			return err
		},
		newName:  "copy",
		items:    []string{"mariadb/data/app/r.ibd\n", "mariadb/data/ib_logfile0\n"},
		notItems: []string{"ibtmp1"},
		liveIDs:  func(t *testing.T) []int64 { return mdbIDs(t, srv) },
		copyIDs: func(t *testing.T, dir string) []int64 {
			s, err := mariadbtest.StartOn(t, dir, mariadbtest.Options{Settings: mdbSettings})
			if err != nil {
				t.Fatalf("a server on the restored data directory %s: %v", dir, err)
			}
			defer s.Stop(t)
			return mdbIDs(t, s)
		},
		running: srv.Running,
	})
}
