package requester_test

import (
	"context"
	"database/sql"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"

	"github.com/linuxvss/vss/internal/apiclient"
	"github.com/linuxvss/vss/internal/apiserver"
	"github.com/linuxvss/vss/internal/config"
	"github.com/linuxvss/vss/internal/requester"
	"github.com/linuxvss/vss/internal/service"
	"github.com/linuxvss/vss/internal/testutil"
	"github.com/linuxvss/vss/internal/vsserr"
	"github.com/linuxvss/vss/internal/writers/builtin"
	"github.com/linuxvss/vss/pkg/vssmeta"

	_ "modernc.org/sqlite"
)

// open starts a service whose configuration has a SQLite writer for db.
func open(t *testing.T, db string) *service.Service {
	t.Helper()
	cfg := config.Default()
	cfg.StateDir = filepath.Join(t.TempDir(), "state")
	cfg.Socket = filepath.Join(t.TempDir(), "vssd.sock")
	cfg.Writers.HooksDir = "-"
	cfg.Writers.SQLite = []config.SQLiteWriter{{Name: "app", Paths: []string{db}}}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	s, err := service.Open(context.Background(), service.Options{Config: cfg, Log: log, WriterSources: builtin.Sources(log)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// serve serves s on its socket and returns a client.
func serve(t *testing.T, s *service.Service) *apiclient.Client {
	t.Helper()
	socket := s.Config().Socket
	l, err := apiserver.Listen(socket)
	if err != nil {
		t.Fatal(err)
	}
	srv := apiserver.New(s, apiserver.Options{Version: "test", Socket: socket, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	go srv.Serve(l)
	c, err := apiclient.Dial(context.Background(), socket, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return c
}

// trace is what a backup session saw, without what differs by nature
// (IDs, times, paths of the shadows).
type trace struct {
	Writers    []string
	States     []string
	Components []string
	Shadows    int
	Errors     []string
}

// backup runs a whole component backup of vol through r.
func backup(t *testing.T, r requester.Requester, vol string) trace {
	t.Helper()
	ctx := context.Background()
	var tr trace
	note := func(ws []requester.WriterInfo, err error) {
		if err != nil {
			tr.Errors = append(tr.Errors, vsserr.CodeOf(err).Name())
		}
		for _, w := range ws {
			tr.States = append(tr.States, w.Status.Name+": "+w.Status.StateText)
		}
	}
	s, err := r.InitializeForBackup(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	ws, err := s.GatherWriterMetadata(ctx)
	note(ws, err)
	var inst uuid.UUID
	for _, w := range ws {
		tr.Writers = append(tr.Writers, w.Status.Name)
		if w.Metadata != nil && w.Status.Name == "SQLite Writer" {
			inst = w.Metadata.InstanceID
			for _, c := range w.Metadata.Components {
				tr.Components = append(tr.Components, c.FullPath())
			}
		}
	}
	if err := s.SetBackupState(ctx, true, vssmeta.BackupFull, false); err != nil {
		t.Fatal(err)
	}
	if err := s.AddComponent(ctx, inst, "SQLite\\app", "app.db"); err != nil {
		t.Fatal(err)
	}
	// Out of order: volumes before the set.
	if _, err := s.AddToSnapshotSet(ctx, vol, ""); vsserr.CodeOf(err) != vsserr.VSS_E_BAD_STATE {
		t.Errorf("AddToSnapshotSet before StartSnapshotSet: %v", err)
	}
	if _, err := s.StartSnapshotSet(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddToSnapshotSet(ctx, vol, ""); err != nil {
		t.Fatal(err)
	}
	note(s.PrepareForBackup(ctx))
	res, err := s.DoSnapshotSet(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tr.Shadows = len(res.Shadows)
	note(s.GatherWriterStatus(ctx))
	if err := s.SetBackupSucceeded(ctx, inst, "SQLite\\app", "app.db", true); err != nil {
		t.Fatal(err)
	}
	note(s.BackupComplete(ctx))
	doc, err := s.Document(ctx)
	if err != nil {
		t.Fatal(err)
	}
	bcd, err := vssmeta.ParseBackupComponents([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if c := bcd.Writer(inst).Component("SQLite\\app", "app.db"); c == nil || !c.BackupSucceeded {
		t.Errorf("the document's component: %+v", c)
	}
	note(s.End(ctx))
	return tr
}

// TestSameEmbeddedAndRemote runs the same backup session on a service in
// this process and through vssd's API: the writers, their states, the
// errors and the shadows are the same.
func TestSameEmbeddedAndRemote(t *testing.T) {
	testutil.RequireRoot(t)
	fs := testutil.NewFS(t, "btrfs", 0)
	db := filepath.Join(fs.Dir, "app.db")
	d, err := sql.Open("sqlite", db)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Exec("CREATE TABLE t (x); INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	d.Close()
	s := open(t, db)
	embedded := backup(t, requester.Embedded(s), fs.Dir)
	remote := backup(t, requester.Remote(serve(t, s)), fs.Dir)
	if d := cmp.Diff(embedded, remote); d != "" {
		t.Errorf("embedded vs remote (-embedded +remote):\n%s", d)
	}
	want := trace{
		Writers:    []string{"SQLite Writer"},
		States:     []string{"SQLite Writer: Stable", "SQLite Writer: Stable", "SQLite Writer: Waiting for completion", "SQLite Writer: Stable", "SQLite Writer: Stable"},
		Components: []string{"SQLite\\app\\app.db"},
		Shadows:    1,
	}
	if d := cmp.Diff(want, embedded); d != "" {
		t.Errorf("trace (-want +got):\n%s", d)
	}
	// Backup sessions are auto-release: nothing is left.
	if sh, err := s.ListShadows(context.Background(), service.Selection{}); err != nil || len(sh) != 0 {
		t.Errorf("%d shadows left, %v", len(sh), err)
	}
}
