package service_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/linuxvss/vss/internal/catalog"
	"github.com/linuxvss/vss/internal/config"
	"github.com/linuxvss/vss/internal/provider"
	"github.com/linuxvss/vss/internal/service"
	"github.com/linuxvss/vss/internal/vss"
	"github.com/linuxvss/vss/internal/vsserr"
)

type testService struct {
	*service.Service
	t    *testing.T
	opts service.Options
}

// open starts a service on a fresh state directory.
func open(t *testing.T, mod func(*service.Options)) *testService {
	t.Helper()
	cfg := config.Default()
	cfg.StateDir = t.TempDir()
	o := service.Options{Config: cfg, Log: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))}
	if mod != nil {
		mod(&o)
	}
	s, err := service.Open(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	ts := &testService{Service: s, t: t, opts: o}
	t.Cleanup(func() { ts.Service.Close() })
	return ts
}

// reopen closes the service and starts it again on the same state
// directory, as after a restart.
func (ts *testService) reopen(mod func(*service.Options)) *testService {
	ts.t.Helper()
	ts.Service.Close()
	o := ts.opts
	if mod != nil {
		mod(&o)
	}
	s, err := service.Open(context.Background(), o)
	if err != nil {
		ts.t.Fatal(err)
	}
	ts.Service = s
	ts.opts = o
	return ts
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

func (ts *testService) create(vols ...string) *service.CreateResult {
	ts.t.Helper()
	res, err := ts.CreateShadowSet(context.Background(), service.CreateRequest{Volumes: vols, Context: vss.CtxClientAccessible})
	if err != nil {
		ts.t.Fatalf("create %v: %v", vols, err)
	}
	return res
}

func (ts *testService) shadows() []catalog.Shadow {
	ts.t.Helper()
	s, err := ts.ListShadows(context.Background(), service.Selection{})
	if err != nil {
		ts.t.Fatal(err)
	}
	return s
}

func requireCode(t *testing.T, err error, want vsserr.Code) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %s", want)
	}
	if got := vsserr.CodeOf(err); got != want {
		t.Fatalf("error %v: code %s, want %s", err, got, want)
	}
}

// storageEntries lists a storage directory (empty if it does not exist).
func storageEntries(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(dir, provider.StorageDirName))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	sort.Strings(out)
	return out
}

// requireConsistent checks that the catalog lists exactly the shadows that
// exist in the storage directories, and that nothing is pending.
func (ts *testService) requireConsistent(storages ...string) {
	t := ts.t
	t.Helper()
	want := map[string]bool{}
	for _, sh := range ts.shadows() {
		want[sh.ShadowPath] = true
		if _, err := os.Stat(sh.ShadowPath); err != nil {
			t.Errorf("catalog lists %s, which does not exist: %v", sh.ID, err)
		}
	}
	for _, st := range storages {
		for _, name := range storageEntries(t, st) {
			if _, err := uuid.Parse(name); err != nil && !strings.HasPrefix(name, ".vss-tmp") {
				continue // not a shadow
			}
			p := filepath.Join(st, provider.StorageDirName, name)
			if !want[p] {
				t.Errorf("storage holds %s, which the catalog does not list", p)
			}
		}
	}
	h, err := ts.Health(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if h != (service.Health{}) {
		t.Errorf("unfinished work left in the journals: %+v", h)
	}
}

// writable reports whether a file can be written under dir within d.
func writable(dir string, d time.Duration) bool {
	done := make(chan error, 1)
	go func() {
		done <- os.WriteFile(filepath.Join(dir, fmt.Sprintf(".probe-%d", time.Now().UnixNano())), []byte("x"), 0o644)
	}()
	select {
	case err := <-done:
		return err == nil
	case <-time.After(d):
		return false
	}
}

func ids(shadows []catalog.Shadow) []uuid.UUID {
	var out []uuid.UUID
	for _, s := range shadows {
		out = append(out, s.ID)
	}
	return out
}

// failingAt sets the service's fault hook to fail every time point is
// reached, with code.
func failingAt(point string, code vsserr.Code) func(*service.Options) {
	return func(o *service.Options) {
		o.Fault = func(ctx context.Context, p string) error {
			if p == point {
				return vsserr.New(code, "injected at %s", p)
			}
			return nil
		}
	}
}
