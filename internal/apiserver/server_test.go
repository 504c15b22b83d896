package apiserver_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/google/uuid"

	"github.com/linuxvss/vss/internal/apiclient"
	"github.com/linuxvss/vss/internal/apiserver"
	"github.com/linuxvss/vss/internal/cli/vssadmin"
	"github.com/linuxvss/vss/internal/config"
	"github.com/linuxvss/vss/internal/service"
	"github.com/linuxvss/vss/internal/testutil"
	"github.com/linuxvss/vss/internal/vss"
	"github.com/linuxvss/vss/internal/vsserr"
)

// backend is what the tests call on both the service and the client: what
// vssadmin calls.
type backend = vssadmin.Backend

var (
	_ backend = (*service.Service)(nil)
	_ backend = (*apiclient.Client)(nil)
)

type fixture struct {
	svc    *service.Service
	srv    *apiserver.Server
	socket string
	client *apiclient.Client
}

// start opens a service on a new state directory and serves it on a new
// socket; everything stops at the end of the test.
func start(t *testing.T) *fixture { return startWith(t, nil) }

// startWith is start with a configuration changed by edit.
func startWith(t *testing.T, edit func(*config.Config)) *fixture {
	t.Helper()
	return startFault(t, edit, nil)
}

// startFault is startWith with a fault hook in the service.
func startFault(t *testing.T, edit func(*config.Config), fault func(context.Context, string) error) *fixture {
	t.Helper()
	testutil.RequireRoot(t)
	dir := t.TempDir()
	cfg := config.Default()
	cfg.StateDir = filepath.Join(dir, "state")
	cfg.Socket = filepath.Join(dir, "vssd.sock")
	if edit != nil {
		edit(&cfg)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	ctx := context.Background()
	svc, err := service.Open(ctx, service.Options{Config: cfg, Log: log, Fault: fault})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Close() })
	l, err := apiserver.Listen(cfg.Socket)
	if err != nil {
		t.Fatal(err)
	}
	srv := apiserver.New(svc, apiserver.Options{Version: "test", Socket: cfg.Socket, Log: log})
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	c, err := apiclient.Dial(ctx, cfg.Socket, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &fixture{svc: svc, srv: srv, socket: cfg.Socket, client: c}
}

func TestInfo(t *testing.T) {
	f := start(t)
	info, err := f.client.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := apiclient.Info{Version: "test", Pid: int32(os.Getpid()), StateDir: f.svc.Config().StateDir, Socket: f.socket}
	if d := cmp.Diff(want, info); d != "" {
		t.Errorf("Info (-want +got):\n%s", d)
	}
}

// TestSameAsEmbedded makes each call on the service and through the API and
// wants the same result, or the same error with the same text.
func TestSameAsEmbedded(t *testing.T) {
	f := start(t)
	missing := filepath.Join(t.TempDir(), "missing")
	many := make([]string, service.MaxVolumesPerSet+1)
	for i := range many {
		many[i] = missing
	}
	id := uuid.New()
	for _, tc := range []struct {
		name string
		call func(ctx context.Context, b backend) (any, error)
		code vsserr.Code
	}{
		{"list providers", func(ctx context.Context, b backend) (any, error) { return b.ListProviders(ctx) }, vsserr.S_OK},
		{"list writers", func(ctx context.Context, b backend) (any, error) { return b.ListWriters(ctx) }, vsserr.S_OK},
		{"list volumes", func(ctx context.Context, b backend) (any, error) { return b.ListVolumes(ctx) }, vsserr.S_OK},
		{"list shadows", func(ctx context.Context, b backend) (any, error) { return b.ListShadows(ctx, service.Selection{}) }, vsserr.S_OK},
		{"list shadow storage", func(ctx context.Context, b backend) (any, error) { return b.ListShadowStorage(ctx, "", "") }, vsserr.S_OK},
		{"query reverts", func(ctx context.Context, b backend) (any, error) { return b.QueryReverts(ctx, "") }, vsserr.S_OK},
		{"select unknown shadow", func(ctx context.Context, b backend) (any, error) {
			return b.Select(ctx, service.Selection{ShadowID: id})
		}, vsserr.VSS_E_OBJECT_NOT_FOUND},
		{"select unknown set", func(ctx context.Context, b backend) (any, error) {
			return b.Select(ctx, service.Selection{SetID: id, For: missing})
		}, vsserr.VSS_E_OBJECT_NOT_FOUND},
		{"list shadows of a missing volume", func(ctx context.Context, b backend) (any, error) {
			return b.ListShadows(ctx, service.Selection{For: missing})
		}, vsserr.VSS_E_OBJECT_NOT_FOUND},
		{"create without volumes", func(ctx context.Context, b backend) (any, error) {
			return b.CreateShadowSet(ctx, service.CreateRequest{Context: vss.CtxClientAccessible})
		}, vsserr.E_INVALIDARG},
		{"create on a missing volume", func(ctx context.Context, b backend) (any, error) {
			return b.CreateShadowSet(ctx, service.CreateRequest{Volumes: []string{missing}, Context: vss.CtxClientAccessible})
		}, vsserr.VSS_E_OBJECT_NOT_FOUND},
		{"create with too many volumes", func(ctx context.Context, b backend) (any, error) {
			return b.CreateShadowSet(ctx, service.CreateRequest{Volumes: many, Context: vss.CtxClientAccessible})
		}, vsserr.VSS_E_MAXIMUM_NUMBER_OF_VOLUMES_REACHED},
		{"create in a bad context", func(ctx context.Context, b backend) (any, error) {
			return b.CreateShadowSet(ctx, service.CreateRequest{Volumes: []string{missing}, Context: vss.Context(0x2)})
		}, vsserr.VSS_E_UNSUPPORTED_CONTEXT},
		{"delete an unknown shadow", func(ctx context.Context, b backend) (any, error) {
			return b.DeleteShadows(ctx, []uuid.UUID{id})
		}, vsserr.VSS_E_OBJECT_NOT_FOUND},
		{"revert to an unknown shadow", func(ctx context.Context, b backend) (any, error) {
			return nil, b.RevertShadow(ctx, id, false)
		}, vsserr.VSS_E_OBJECT_NOT_FOUND},
		{"query reverts of a missing volume", func(ctx context.Context, b backend) (any, error) {
			return b.QueryReverts(ctx, missing)
		}, vsserr.VSS_E_OBJECT_NOT_FOUND},
		{"list storage for and on", func(ctx context.Context, b backend) (any, error) {
			return b.ListShadowStorage(ctx, "/", "/")
		}, vsserr.E_INVALIDARG},
		{"add storage for a missing volume", func(ctx context.Context, b backend) (any, error) {
			return nil, b.AddShadowStorage(ctx, missing, missing, config.MaxSize{Unbounded: true})
		}, vsserr.VSS_E_OBJECT_NOT_FOUND},
		{"resize storage of a missing volume", func(ctx context.Context, b backend) (any, error) {
			return b.ResizeShadowStorage(ctx, missing, missing, config.MaxSize{Bytes: 1 << 30})
		}, vsserr.VSS_E_OBJECT_NOT_FOUND},
		{"storage shadows of a missing volume", func(ctx context.Context, b backend) (any, error) {
			return b.StorageShadows(ctx, missing, "")
		}, vsserr.S_OK},
		{"delete storage of a missing volume", func(ctx context.Context, b backend) (any, error) {
			return b.DeleteShadowStorage(ctx, missing, "")
		}, vsserr.VSS_E_OBJECT_NOT_FOUND},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			want, werr := tc.call(ctx, f.svc)
			got, gerr := tc.call(ctx, f.client)
			if c := vsserr.CodeOf(werr); c != tc.code {
				t.Errorf("the service answered %v, the test expects %v", werr, tc.code)
			}
			if vsserr.CodeOf(gerr) != vsserr.CodeOf(werr) {
				t.Fatalf("code through the API %v, embedded %v", vsserr.CodeOf(gerr), vsserr.CodeOf(werr))
			}
			if werr != nil {
				var ve *vsserr.Error
				if !errors.As(gerr, &ve) {
					t.Errorf("the client's error is a %T, not a *vsserr.Error", gerr)
				}
				if d := cmp.Diff(vsserr.Message(werr), vsserr.Message(gerr)); d != "" {
					t.Errorf("vssadmin's text (-embedded +API):\n%s", d)
				}
				if d := cmp.Diff(werr.Error(), gerr.Error()); d != "" {
					t.Errorf("Error() (-embedded +API):\n%s", d)
				}
				return
			}
			if d := cmp.Diff(want, got, cmpopts.EquateEmpty(), cmpopts.EquateApproxTime(0)); d != "" {
				t.Errorf("result (-embedded +API):\n%s", d)
			}
		})
	}
}

// TestSessionEnd checks that closing a connection releases the
// auto-release shadows its session made, and only those.
func TestSessionEnd(t *testing.T) {
	f := start(t)
	fs := testutil.NewFS(t, "btrfs", 0)
	ctx := context.Background()
	t.Cleanup(func() {
		all, _ := f.svc.ListShadows(ctx, service.Selection{})
		for _, sh := range all {
			if _, err := f.svc.DeleteShadows(ctx, []uuid.UUID{sh.ID}); err != nil {
				t.Errorf("cleaning up %s: %v", sh.ID, err)
			}
		}
	})
	requester, err := apiclient.Dial(ctx, f.socket, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { requester.Close() })
	backup, err := requester.CreateShadowSet(ctx, service.CreateRequest{Volumes: []string{fs.Dir}, Context: vss.CtxBackup})
	if err != nil {
		t.Fatal(err)
	}
	kept, err := requester.CreateShadowSet(ctx, service.CreateRequest{Volumes: []string{fs.Dir}, Context: vss.CtxClientAccessible})
	if err != nil {
		t.Fatal(err)
	}
	if backup.Shadows[0].Owner == "" {
		t.Fatal("the auto-release shadow has no owner session")
	}
	if kept.Shadows[0].Owner != "" {
		t.Errorf("the persistent shadow has owner %q", kept.Shadows[0].Owner)
	}
	// Another connection's end releases nothing of this session.
	other, err := apiclient.Dial(ctx, f.socket, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.ListShadows(ctx, service.Selection{}); err != nil {
		t.Fatal(err)
	}
	other.Close()
	time.Sleep(200 * time.Millisecond)
	if _, err := f.svc.Select(ctx, service.Selection{ShadowID: backup.Shadows[0].ID}); err != nil {
		t.Fatalf("another connection's end released the shadow: %v", err)
	}

	requester.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := f.svc.Select(ctx, service.Selection{ShadowID: backup.Shadows[0].ID})
		if vsserr.CodeOf(err) == vsserr.VSS_E_OBJECT_NOT_FOUND {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the auto-release shadow outlived its session: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := os.Stat(backup.Shadows[0].ShadowPath); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the released shadow is still on disk: %v", err)
	}
	if _, err := f.svc.Select(ctx, service.Selection{ShadowID: kept.Shadows[0].ID}); err != nil {
		t.Errorf("the persistent shadow went with the session: %v", err)
	}
}

func TestShutdown(t *testing.T) {
	f := start(t)
	ctx := context.Background()
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := f.srv.Shutdown(sctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(f.socket); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the socket is left after Shutdown: %v", err)
	}
	if _, err := f.client.ListProviders(ctx); vsserr.CodeOf(err) != vsserr.VSS_E_UNEXPECTED {
		t.Errorf("a call after Shutdown: %v, want VSS_E_UNEXPECTED", err)
	}
	_, err := apiclient.Dial(ctx, f.socket, time.Second)
	if !errors.Is(err, apiclient.ErrNoDaemon) {
		t.Errorf("Dial after Shutdown: %v, want ErrNoDaemon", err)
	}
	if !strings.Contains(vsserr.Message(err), f.socket) {
		t.Errorf("the error does not name the socket: %v", err)
	}
}

// TestSameAsEmbeddedWithShadows compares the listings of a volume that has
// shadow copies, and checks that a relative path means the same through
// the API (the client's working directory) as in embedded mode.
func TestSameAsEmbeddedWithShadows(t *testing.T) {
	f := start(t)
	fs := testutil.NewFS(t, "btrfs", 0)
	ctx := context.Background()
	made, err := f.client.CreateShadowSet(ctx, service.CreateRequest{Volumes: []string{fs.Dir}, Context: vss.CtxClientAccessible})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := f.svc.DeleteShadows(ctx, []uuid.UUID{made.Shadows[0].ID}); err != nil {
			t.Errorf("cleaning up: %v", err)
		}
	})
	recorded, err := f.svc.Select(ctx, service.Selection{SetID: made.Set.ID})
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(recorded, made.Shadows, cmpopts.EquateApproxTime(0)); d != "" {
		t.Errorf("the created shadows (-catalog +API):\n%s", d)
	}
	t.Chdir(filepath.Dir(fs.Dir))
	rel := filepath.Base(fs.Dir)
	for _, tc := range []struct {
		name string
		call func(ctx context.Context, b backend) (any, error)
	}{
		{"list shadows", func(ctx context.Context, b backend) (any, error) { return b.ListShadows(ctx, service.Selection{}) }},
		{"list shadows of the volume", func(ctx context.Context, b backend) (any, error) {
			return b.ListShadows(ctx, service.Selection{For: fs.Dir})
		}},
		{"list shadows of a relative path", func(ctx context.Context, b backend) (any, error) {
			return b.ListShadows(ctx, service.Selection{For: rel})
		}},
		{"select the oldest", func(ctx context.Context, b backend) (any, error) {
			return b.Select(ctx, service.Selection{For: fs.Dir, Oldest: true})
		}},
		{"list volumes", func(ctx context.Context, b backend) (any, error) { return b.ListVolumes(ctx) }},
		{"list shadow storage", func(ctx context.Context, b backend) (any, error) { return b.ListShadowStorage(ctx, fs.Dir, "") }},
		{"list shadow storage of a relative path", func(ctx context.Context, b backend) (any, error) { return b.ListShadowStorage(ctx, "", rel) }},
		{"storage shadows", func(ctx context.Context, b backend) (any, error) { return b.StorageShadows(ctx, fs.Dir, "") }},
		{"query reverts of the volume", func(ctx context.Context, b backend) (any, error) { return b.QueryReverts(ctx, rel) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want, werr := tc.call(ctx, f.svc)
			got, gerr := tc.call(ctx, f.client)
			if werr != nil || gerr != nil {
				t.Fatalf("embedded: %v; API: %v", werr, gerr)
			}
			if d := cmp.Diff(want, got, cmpopts.EquateEmpty(), cmpopts.EquateApproxTime(0)); d != "" {
				t.Errorf("result (-embedded +API):\n%s", d)
			}
		})
	}
}

func TestDialServing(t *testing.T) {
	f := start(t)
	ctx := context.Background()
	link := filepath.Join(t.TempDir(), "state-link")
	if err := os.Symlink(f.svc.Config().StateDir, link); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, stateDir string
		wantErr        error
	}{
		{"any state directory", "", nil},
		{"its state directory", f.svc.Config().StateDir, nil},
		{"its state directory by another name", link, nil},
		{"another state directory", t.TempDir(), apiclient.ErrOtherStateDir},
		{"a missing state directory", filepath.Join(t.TempDir(), "new"), apiclient.ErrOtherStateDir},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, info, err := apiclient.DialServing(ctx, f.socket, tc.stateDir, time.Second)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("DialServing: %v, want %v", err, tc.wantErr)
			}
			if err == nil {
				defer c.Close()
				if info.StateDir != f.svc.Config().StateDir {
					t.Errorf("Info state dir %q", info.StateDir)
				}
			}
		})
	}
}
