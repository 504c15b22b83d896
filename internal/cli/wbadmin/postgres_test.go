package wbadmin_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/linuxvss/vss/internal/testutil"
	"github.com/linuxvss/vss/internal/testutil/pgtest"
)

// pgIDs returns the ids of table r of the server's database postgres.
func pgIDs(t *testing.T, srv *pgtest.Server) []int64 {
	t.Helper()
	c := srv.Connect(t, "postgres")
	defer c.Close(context.Background())
	rows, err := c.Query(context.Background(), "SELECT id FROM r")
	if err != nil {
		t.Fatalf("%s: %v", srv.DataDir, err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		t.Fatalf("%s: %v", srv.DataDir, err)
	}
	return ids
}

// TestPostgresComponent: the acceptance run (runAcceptance) on a
// PostgreSQL cluster whose data directory is on a btrfs volume; a server
// started on each restored copy recovers it.
func TestPostgresComponent(t *testing.T) {
	testutil.RequireRoot(t)
	pgtest.Require(t)
	testutil.RequireTools(t, "btrfs")
	vol := testutil.NewFS(t, "btrfs", 1<<30)
	// pg_wal stays inside the data directory (the default): a restore
	// elsewhere of a cluster whose pg_wal links out would still point at
	// the live WAL.
	dataDir := filepath.Join(vol.Dir, "pg", "data")
	srv := pgtest.Start(t, pgtest.Options{DataDir: dataDir})
	ctx := context.Background()
	admin := srv.Connect(t, "postgres")
	if _, err := admin.Exec(ctx, "CREATE TABLE r (id bigint PRIMARY KEY, pad bytea)"); err != nil {
		t.Fatal(err)
	}
	_ = admin.Close(ctx)
	pad := testutil.RandomBytes(7, 3000)
	conn := srv.Connect(t, "postgres")
	runAcceptance(t, acceptance{
		what: "cluster",
		tool: newTool(t, fmt.Sprintf("[[writers.postgresql]]\nname = \"main\"\ndsn = %q\ndata_dir = %q\n", srv.DSN("postgres"), dataDir)),
		comp: `PostgreSQL Writer\PostgreSQL\main`,
		live: dataDir,
		insert: func(ctx context.Context, id int64) error {
			_, err := conn.Exec(ctx, "INSERT INTO r VALUES ($1, $2)", id, pad)
			return err
		},
		newName:  "copy",
		items:    []string{"pg/data/PG_VERSION\n", "pg/data/pg_wal\n"},
		notItems: []string{"postmaster.pid"},
		liveIDs:  func(t *testing.T) []int64 { return pgIDs(t, srv) },
		copyIDs: func(t *testing.T, dir string) []int64 {
			s := pgtest.StartOn(t, dir, pgtest.Options{})
			defer s.Stop(t)
			return pgIDs(t, s)
		},
		running: srv.Running,
	})
}
