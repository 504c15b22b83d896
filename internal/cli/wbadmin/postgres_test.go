package wbadmin_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

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

// TestPostgresComponent: the acceptance run on PostgreSQL. A cluster under
// a live insert load, its data directory on a btrfs volume, is backed up
// as the PostgreSQL writer's component (full, -vssFull), more rows go in,
// a differential follows; restored into a new directory and under a new
// name next to the original while the original keeps taking inserts, a
// server started on each copy recovers and holds exactly the rows
// committed before the differential's freeze; the differential stores at
// most 1.1× the bytes that changed; a copy-only backup in between leaves
// the differential base where it was.
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
	w := newTool(t, fmt.Sprintf("[[writers.postgresql]]\nname = \"main\"\ndsn = %q\ndata_dir = %q\n", srv.DSN("postgres"), dataDir))
	target := filepath.Join(t.TempDir(), "backups")
	comp := `PostgreSQL Writer\PostgreSQL\main`
	pad := testutil.RandomBytes(7, 3000)
	conn := srv.Connect(t, "postgres")
	load := startLoad(t, time.Millisecond, func(ctx context.Context, id int64) error {
		_, err := conn.Exec(ctx, "INSERT INTO r VALUES ($1, $2)", id, pad)
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

	// get items names the component and the cluster's files, not the
	// server's pid file.
	items := w.run(t, "get", "items", "-backupTarget:"+target, "-version:"+diff.Version).must(t).out
	for _, want := range []string{`Item: ` + comp, "pg/data/PG_VERSION\n", "pg/data/pg_wal\n"} {
		if !strings.Contains(items, want) {
			t.Errorf("get items lacks %q:\n%s", want, items)
		}
	}
	if strings.Contains(items, "postmaster.pid") {
		t.Errorf("the component's backup holds postmaster.pid:\n%s", items)
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
	movedSrv := pgtest.StartOn(t, filepath.Join(moved, dataDir), pgtest.Options{})
	k := requireRowsAt(t, "the cluster restored with move", pgIDs(t, movedSrv), lo, hi)
	movedSrv.Stop(t)
	// Under a new name next to the original.
	w.run(t, "start", "recovery", "-backupTarget:"+target, "-version:"+diff.Version, "-itemType:Component", "-items:"+comp, "-newName:copy", "-quiet").must(t)
	renamedSrv := pgtest.StartOn(t, filepath.Join(vol.Dir, "pg", "copy"), pgtest.Options{})
	if k2 := requireRowsAt(t, "the cluster restored under a new name", pgIDs(t, renamedSrv), lo, hi); k2 != k {
		t.Errorf("the two restores of one version hold rows 1…%d and 1…%d", k, k2)
	}
	renamedSrv.Stop(t)
	// The original kept running.
	n := load.committedBefore(time.Now())
	load.waitRows(t, n+50)
	load.halt()
	if err := load.failed(); err != nil {
		t.Fatalf("the original cluster during the restores: %v", err)
	}
	if !srv.Running() {
		t.Fatal("the original server does not run any more")
	}
	if ids := pgIDs(t, srv); int64(len(ids)) < n+50 {
		t.Errorf("the original holds %d rows, want at least %d", len(ids), n+50)
	}

	w.run(t, "verify", "-backupTarget:"+target, "-version:"+diff2.Version).must(t)

	// In place: the writer stops the server (PreRestore), the full
	// version replaces the data directory (files of the later state go),
	// and the writer starts the server again (PostRestore), which
	// recovers; the copy restored under a new name beside it stays.
	w.run(t, "start", "recovery", "-backupTarget:"+target, "-version:"+full.Version, "-itemType:Component", "-items:"+comp, "-quiet").must(t)
	if !srv.Running() {
		t.Fatal("the server does not run after the restore in place")
	}
	requireRowsAt(t, "the cluster restored in place from the full backup", pgIDs(t, srv), lo0, hi0)
	if _, err := os.Stat(filepath.Join(vol.Dir, "pg", "copy", "PG_VERSION")); err != nil {
		t.Errorf("the copy beside the data directory after a restore in place: %v", err)
	}
	requireNoShadow(t, w.state)
}
