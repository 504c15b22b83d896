package service_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/linuxvss/vss/internal/coordinator"
	"github.com/linuxvss/vss/internal/service"
	"github.com/linuxvss/vss/internal/testutil"
	"github.com/linuxvss/vss/internal/vss"
	"github.com/linuxvss/vss/internal/vsserr"
)

// recWriter is an in-process writer that records the events it gets and
// fails or hangs where told. (Real writers come with the writer framework;
// this one tests that the phase machine drives them right.)
type recWriter struct {
	mu     sync.Mutex
	events []string
	fail   map[string]error
	hang   map[string]bool
	// at Freeze, it writes a file into the volume and records whether the
	// write is in the shadow (it must be: it happened before the commit).
	dir string
}

func (w *recWriter) Name() string { return "Test Writer" }

func (w *recWriter) event(ctx context.Context, name string) error {
	w.mu.Lock()
	w.events = append(w.events, name)
	err, hang := w.fail[name], w.hang[name]
	w.mu.Unlock()
	if hang {
		<-ctx.Done()
		return ctx.Err()
	}
	return err
}

func (w *recWriter) PrepareSnapshot(ctx context.Context, s *coordinator.SetInfo) error {
	return w.event(ctx, "PrepareSnapshot")
}
func (w *recWriter) Freeze(ctx context.Context, s *coordinator.SetInfo) error {
	if w.dir != "" {
		_ = os.WriteFile(filepath.Join(w.dir, "flushed-at-freeze"), []byte("consistent"), 0o644)
	}
	return w.event(ctx, "Freeze")
}
func (w *recWriter) Thaw(ctx context.Context, s *coordinator.SetInfo) error {
	return w.event(ctx, "Thaw")
}
func (w *recWriter) PostSnapshot(ctx context.Context, s *coordinator.SetInfo) error {
	if len(s.ShadowPaths) != len(s.Volumes) {
		return fmt.Errorf("PostSnapshot without the shadow paths: %v", s.ShadowPaths)
	}
	return w.event(ctx, "PostSnapshot")
}
func (w *recWriter) Abort(ctx context.Context, s *coordinator.SetInfo) error {
	return w.event(ctx, "Abort")
}

func TestWritersTakePart(t *testing.T) {
	fs := testutil.NewFS(t, "btrfs", 0)
	w := &recWriter{dir: fs.Dir}
	ts := open(t, func(o *service.Options) {
		o.Writers = func() []coordinator.Writer { return []coordinator.Writer{w} }
	})
	ctx := context.Background()
	// A context without writers does not call them.
	ts.create(fs.Dir)
	if len(w.events) != 0 {
		t.Fatalf("a no-writers context sent %v", w.events)
	}
	res, err := ts.CreateShadowSet(ctx, service.CreateRequest{Volumes: []string{fs.Dir}, Context: vss.CtxAppRollback})
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{"PrepareSnapshot", "Freeze", "Thaw", "PostSnapshot"}, w.events); d != "" {
		t.Fatalf("events (-want +got):\n%s", d)
	}
	if b, err := os.ReadFile(filepath.Join(res.Shadows[0].ShadowPath, "flushed-at-freeze")); err != nil || string(b) != "consistent" {
		t.Fatalf("what the writer wrote at Freeze is not in the shadow: %q %v", b, err)
	}
	if res.Timings.Freeze <= 0 || res.Timings.Freeze < res.Timings.Hold {
		t.Fatalf("freeze window %v, hold %v", res.Timings.Freeze, res.Timings.Hold)
	}
}

func TestWriterFailures(t *testing.T) {
	fs := testutil.NewFS(t, "xfs", 0)
	for _, c := range []struct {
		name   string
		writer *recWriter
		code   vsserr.Code
		events []string
	}{
		{"hangs in Freeze", &recWriter{hang: map[string]bool{"Freeze": true}}, vsserr.VSS_E_WRITERERROR_TIMEOUT,
			[]string{"PrepareSnapshot", "Freeze", "Abort"}},
		{"retryable veto at Freeze", &recWriter{fail: map[string]error{"Freeze": vsserr.New(vsserr.VSS_E_WRITERERROR_RETRYABLE, "busy")}},
			vsserr.VSS_E_WRITERERROR_RETRYABLE, []string{"PrepareSnapshot", "Freeze", "Abort"}},
		{"crashes in PrepareSnapshot", &recWriter{fail: map[string]error{"PrepareSnapshot": errors.New("connection reset")}},
			vsserr.VSS_E_UNEXPECTED_WRITER_ERROR, []string{"PrepareSnapshot", "Abort"}},
		{"hangs in Thaw", &recWriter{hang: map[string]bool{"Thaw": true}}, vsserr.VSS_E_WRITERERROR_TIMEOUT,
			[]string{"PrepareSnapshot", "Freeze", "Thaw", "Abort"}},
		{"fails PostSnapshot", &recWriter{fail: map[string]error{"PostSnapshot": vsserr.New(vsserr.VSS_E_WRITERERROR_NONRETRYABLE, "no")}},
			vsserr.VSS_E_WRITERERROR_NONRETRYABLE, []string{"PrepareSnapshot", "Freeze", "Thaw", "PostSnapshot", "Abort"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			ts := open(t, func(o *service.Options) {
				o.Config.FreezeTimeout.Duration = 400 * time.Millisecond
				o.Writers = func() []coordinator.Writer { return []coordinator.Writer{c.writer} }
			})
			start := time.Now()
			_, err := ts.CreateShadowSet(context.Background(), service.CreateRequest{Volumes: []string{fs.Dir}, Context: vss.CtxAppRollback})
			requireCode(t, err, c.code)
			if el := time.Since(start); el > 5*time.Second {
				t.Errorf("the set failed after %v; the freeze limit is 400 ms", el)
			}
			if d := cmp.Diff(c.events, c.writer.events); d != "" {
				t.Errorf("events (-want +got):\n%s", d)
			}
			if !strings.Contains(err.Error(), "Test Writer") {
				t.Errorf("the error does not name the writer: %v", err)
			}
			if n := len(ts.shadows()); n != 0 {
				t.Fatalf("%d shadows", n)
			}
			ts.requireConsistent(fs.Dir)
		})
	}
}
