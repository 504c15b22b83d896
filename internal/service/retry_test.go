package service_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/linuxvss/vss/internal/fsutil"
	"github.com/linuxvss/vss/internal/service"
	"github.com/linuxvss/vss/internal/testutil"
	"github.com/linuxvss/vss/internal/vss"
	"github.com/linuxvss/vss/internal/vsserr"
)

// failOnce returns a fault hook that fails point the first time only (a
// transient provider failure).
func failOnce(point string) func(context.Context, string) error {
	var n atomic.Int32
	return func(ctx context.Context, p string) error {
		if p == point && n.Add(1) == 1 {
			return vsserr.New(vsserr.VSS_E_UNEXPECTED_PROVIDER_ERROR, "transient failure at %s", p)
		}
		return nil
	}
}

// TestTransientDeleteFailureIsRetried: a journaled delete whose removal
// fails once is tried again at once; it does not leave the shadow out of
// the catalog but on disk until the next start.
func TestTransientDeleteFailureIsRetried(t *testing.T) {
	fs := testutil.NewFS(t, "xfs", 0)
	ts := open(t, func(o *service.Options) { o.Fault = failOnce(service.PointDelete) })
	a := ts.create(fs.Dir).Shadows[0]
	b := ts.create(fs.Dir).Shadows[0]
	n, err := ts.DeleteShadows(context.Background(), []uuid.UUID{a.ID})
	if err != nil || n != 1 {
		t.Fatalf("delete: %d, %v", n, err)
	}
	if _, err := os.Stat(a.ShadowPath); !os.IsNotExist(err) {
		t.Fatalf("the deleted shadow is still on disk: %v", err)
	}
	if got := ts.shadows(); len(got) != 1 || got[0].ID != b.ID {
		t.Fatalf("shadows after the delete: %v", ids(got))
	}
	ts.requireConsistent(fs.Dir)
}

// TestTransientRevertFailureIsRetried: a revert whose provider fails in
// the middle once is tried again at once and completes: the volume is not
// left half-reverted, and no revert stays journaled.
func TestTransientRevertFailureIsRetried(t *testing.T) {
	fs := testutil.NewFS(t, "ext4", 0)
	ts := open(t, func(o *service.Options) { o.Fault = failOnce(service.PointRevert) })
	ctx := context.Background()
	testutil.Populate(t, fs.Dir, true)
	want := treeState(t, fs.Dir)
	sh := ts.create(fs.Dir).Shadows[0]
	testutil.Mutate(t, fs.Dir, true)
	if err := ts.RevertShadow(ctx, sh.ID, true); err != nil {
		t.Fatalf("revert: %v", err)
	}
	requireSameTree(t, "volume after the revert", want, treeState(t, fs.Dir))
	if rs, err := ts.QueryReverts(ctx, fs.Dir); err != nil || len(rs) != 0 {
		t.Fatalf("reverts in progress: %+v %v", rs, err)
	}
	ts.requireConsistent(fs.Dir)
}

// TestRevertFailureStopsThere: a provider failure in the middle of a
// revert stops it there (the fault point acts as the provider failing); a
// revert that keeps failing keeps its journal, and the next start
// completes it.
func TestRevertFailureStopsThere(t *testing.T) {
	fs := testutil.NewFS(t, "ext4", 0)
	ts := open(t, failingAt(service.PointRevert, vsserr.VSS_E_UNEXPECTED_PROVIDER_ERROR))
	ctx := context.Background()
	testutil.Populate(t, fs.Dir, true)
	want := treeState(t, fs.Dir)
	sh := ts.create(fs.Dir).Shadows[0]
	testutil.Mutate(t, fs.Dir, true)
	mutated := treeState(t, fs.Dir)
	requireCode(t, ts.RevertShadow(ctx, sh.ID, true), vsserr.VSS_E_UNEXPECTED_PROVIDER_ERROR)
	got := treeState(t, fs.Dir)
	if len(fsutil.Diff(want, got)) == 0 || len(fsutil.Diff(mutated, got)) == 0 {
		t.Fatal("the failing provider was not stopped in the middle of the revert")
	}
	ts.reopen(func(o *service.Options) { o.Fault = nil })
	requireSameTree(t, "volume after the restart", want, treeState(t, fs.Dir))
	ts.requireConsistent(fs.Dir)
}

// TestEvictFault: the evict point comes after the oldest shadow was deleted
// to make room; a failure there fails the create, the eviction stays done,
// and nothing else changes.
func TestEvictFault(t *testing.T) {
	fs := testutil.NewFS(t, "btrfs", 0)
	fail := false
	ts := open(t, func(o *service.Options) {
		o.Config.MaxShadowCopies = 2
		o.Fault = func(ctx context.Context, p string) error {
			if p == service.PointEvict && fail {
				return vsserr.New(vsserr.VSS_E_UNEXPECTED_PROVIDER_ERROR, "at evict")
			}
			return nil
		}
	})
	a := ts.create(fs.Dir).Shadows[0]
	b := ts.create(fs.Dir).Shadows[0]
	fail = true
	res, err := ts.CreateShadowSet(context.Background(), service.CreateRequest{Volumes: []string{fs.Dir}, Context: a.Context})
	requireCode(t, err, vsserr.VSS_E_UNEXPECTED_PROVIDER_ERROR)
	if res == nil || len(res.Evicted) != 1 || res.Evicted[0].ID != a.ID {
		t.Fatalf("evicted: %+v", res)
	}
	if got := ts.shadows(); len(got) != 1 || got[0].ID != b.ID {
		t.Fatalf("shadows: %v", ids(got))
	}
	ts.requireConsistent(fs.Dir)
}

// TestAutoReleaseRetried: when the release of a session's auto-release
// shadows fails at its end (here the state directory's filesystem is
// full: the catalog cannot be written), the service releases them by
// itself once it can, without waiting for its next start.
func TestAutoReleaseRetried(t *testing.T) {
	vol := testutil.NewFS(t, "btrfs", 0)
	state := testutil.NewFS(t, "btrfs", 160<<20) // copy-on-write: a full one fails every catalog write
	ts := open(t, func(o *service.Options) { o.Config.StateDir = filepath.Join(state.Dir, "state") })
	ctx := service.WithCaller(context.Background(), service.Caller{Session: "s1"})
	ts.BeginSession("s1")
	if _, err := ts.CreateShadowSet(ctx, service.CreateRequest{Volumes: []string{vol.Dir}, Context: vss.CtxBackup}); err != nil {
		t.Fatal(err)
	}
	// Fill the state directory's filesystem.
	var fillers []string
	buf := make([]byte, 1<<20)
	for i := 0; ; i++ {
		p := filepath.Join(state.Dir, fmt.Sprintf("filler-%d", i))
		fillers = append(fillers, p)
		f, err := os.Create(p)
		if err != nil {
			break
		}
		_, err = f.Write(buf)
		if err == nil {
			err = f.Sync()
		}
		f.Close()
		if err != nil {
			if len(buf) == 4096 {
				break
			}
			buf = buf[:len(buf)/4]
		}
	}
	if err := ts.EndSession(context.Background(), "s1"); err == nil {
		t.Fatal("the release succeeded on a full state directory: the test proves nothing")
	}
	if len(ts.shadows()) != 1 {
		t.Fatal("the auto-release shadow is gone although its release failed")
	}
	for _, p := range fillers {
		os.Remove(p)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		h, err := ts.Health(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if len(ts.shadows()) == 0 && h == (service.Health{}) {
			break // released, and its deletion finished
		}
		if time.Now().After(deadline) {
			t.Fatalf("the auto-release shadow of the ended session is still there 10 s after the space came back (%+v)", h)
		}
		time.Sleep(50 * time.Millisecond)
	}
	ts.requireConsistent(vol.Dir)
}
