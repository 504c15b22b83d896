package service_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/linuxvss/vss/internal/fsutil"
	"github.com/linuxvss/vss/internal/provider"
	"github.com/linuxvss/vss/internal/service"
	"github.com/linuxvss/vss/internal/testutil"
	"github.com/linuxvss/vss/internal/vss"
	"github.com/linuxvss/vss/internal/vsserr"
)

func treeState(t *testing.T, root string) fsutil.TreeState {
	t.Helper()
	wo, err := provider.WalkOptions(root, []string{filepath.Join(root, provider.StorageDirName)})
	if err != nil {
		t.Fatal(err)
	}
	s, err := fsutil.StateOf(context.Background(), root, wo)
	if err != nil {
		t.Fatal(err)
	}
	delete(s, ".")
	return s
}

func requireSameTree(t *testing.T, what string, want, got fsutil.TreeState) {
	t.Helper()
	if d := fsutil.Diff(want, got); d != nil {
		t.Fatalf("%s:\n%s", what, strings.Join(d, "\n"))
	}
}

func TestRevert(t *testing.T) {
	for _, fstype := range []string{"btrfs", "xfs", "ext4"} {
		t.Run(fstype, func(t *testing.T) {
			fs := testutil.NewFS(t, fstype, 0)
			ts := open(t, nil)
			ctx := context.Background()
			testutil.Populate(t, fs.Dir, true)
			want := treeState(t, fs.Dir)
			sh := ts.create(fs.Dir).Shadows[0]
			later := ts.create(fs.Dir).Shadows[0]
			testutil.Mutate(t, fs.Dir, true)
			// In use: a process with its working directory in the volume.
			cmd := exec.Command("sleep", "60")
			cmd.Dir = filepath.Join(fs.Dir, "many")
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
			err := ts.RevertShadow(ctx, sh.ID, false)
			requireCode(t, err, vsserr.VSS_E_VOLUME_IN_USE)
			if !strings.Contains(err.Error(), "sleep") {
				t.Errorf("the error does not name the process: %v", err)
			}
			if fsutil.Diff(want, treeState(t, fs.Dir)) == nil {
				t.Fatal("a refused revert changed the volume")
			}
			// Forced, it goes through.
			if err := ts.RevertShadow(ctx, sh.ID, true); err != nil {
				t.Fatal(err)
			}
			requireSameTree(t, "volume after revert", want, treeState(t, fs.Dir))
			// The shadows are all still there.
			if n := len(ts.shadows()); n != 2 {
				t.Fatalf("%d shadows after revert", n)
			}
			requireSameTree(t, "later shadow", want, treeState(t, later.ShadowPath))
			rs, err := ts.QueryReverts(ctx, "")
			if err != nil || len(rs) != 0 {
				t.Fatalf("reverts in progress after a revert: %v %v", rs, err)
			}
			ts.requireConsistent(fs.Dir)
		})
	}
}

func TestRevertRefusals(t *testing.T) {
	fs := testutil.NewFS(t, "btrfs", 0)
	ts := open(t, nil)
	ctx := context.Background()
	requireCode(t, ts.RevertShadow(ctx, uuid.New(), false), vsserr.VSS_E_OBJECT_NOT_FOUND)
	// A non-persistent (backup) shadow cannot be reverted to.
	ctx = service.WithCaller(ctx, service.CallerOf(ctx))
	res, err := ts.CreateShadowSet(ctx, service.CreateRequest{Volumes: []string{fs.Dir}, Context: vss.CtxBackup})
	if err != nil {
		t.Fatal(err)
	}
	requireCode(t, ts.RevertShadow(ctx, res.Shadows[0].ID, false), vsserr.VSS_E_UNSUPPORTED_CONTEXT)
}

// TestInterruptedRevertCompletes: a revert cut off in the middle leaves its
// journal; the next start completes it, so the volume ends up as the
// shadow was (a revert is never undone, nor left half-done).
func TestInterruptedRevertCompletes(t *testing.T) {
	fs := testutil.NewFS(t, "ext4", 0)
	ts := open(t, failingAt(service.PointRevert, vsserr.VSS_E_PROVIDER_VETO))
	ctx := context.Background()
	testutil.Populate(t, fs.Dir, true)
	want := treeState(t, fs.Dir)
	sh := ts.create(fs.Dir).Shadows[0]
	testutil.Mutate(t, fs.Dir, true)
	requireCode(t, ts.RevertShadow(ctx, sh.ID, true), vsserr.VSS_E_PROVIDER_VETO)
	rs, err := ts.QueryReverts(ctx, fs.Dir)
	if err != nil || len(rs) != 1 || rs[0].ShadowID != sh.ID || rs[0].Total == 0 {
		t.Fatalf("revert journal: %+v %v", rs, err)
	}
	// A second revert of the same volume is refused meanwhile.
	requireCode(t, ts.RevertShadow(ctx, sh.ID, true), vsserr.VSS_E_REVERT_IN_PROGRESS)
	ts.reopen(func(o *service.Options) { o.Fault = nil })
	requireSameTree(t, "volume after the restart", want, treeState(t, fs.Dir))
	if rec := ts.LastRecovery(); len(rec.Reverted) != 1 {
		t.Fatalf("recovery %+v", rec)
	}
	ts.requireConsistent(fs.Dir)
}

func TestRecovery(t *testing.T) {
	btrfs := testutil.NewFS(t, "btrfs", 0)
	xfs := testutil.NewFS(t, "xfs", 0)
	failDelete := true
	ts := open(t, func(o *service.Options) {
		o.Fault = func(ctx context.Context, point string) error {
			if point == service.PointDelete && failDelete {
				return vsserr.New(vsserr.VSS_E_PROVIDER_VETO, "crash")
			}
			return nil
		}
	})
	ctx := context.Background()
	a := ts.create(btrfs.Dir).Shadows[0]
	b := ts.create(xfs.Dir).Shadows[0]
	c := ts.create(xfs.Dir).Shadows[0]
	// An interrupted delete: out of the catalog, still on disk.
	_, err := ts.DeleteShadows(ctx, []uuid.UUID{a.ID})
	requireCode(t, err, vsserr.VSS_E_PROVIDER_VETO)
	if _, err := os.Stat(a.ShadowPath); err != nil {
		t.Fatal("the fault came after the data was deleted")
	}
	if len(ts.shadows()) != 2 {
		t.Fatal("a shadow being deleted is still listed")
	}
	// An orphan in a storage directory, and a shadow whose data vanished.
	orphan := filepath.Join(xfs.Dir, provider.StorageDirName, uuid.NewString())
	testutil.WriteFile(t, orphan, "x", []byte("orphan"))
	notOurs := filepath.Join(xfs.Dir, provider.StorageDirName, "README")
	testutil.WriteFile(t, filepath.Dir(notOurs), "README", []byte("a note"))
	if err := os.RemoveAll(b.ShadowPath); err != nil {
		t.Fatal(err)
	}
	failDelete = false
	ts.reopen(nil)
	rec := ts.LastRecovery()
	if len(rec.FinishedDelete) != 1 || len(rec.Orphans) != 1 || len(rec.Missing) != 1 || rec.Missing[0] != b.ID {
		t.Fatalf("recovery %+v", rec)
	}
	if _, err := os.Stat(a.ShadowPath); !os.IsNotExist(err) {
		t.Fatalf("interrupted delete not finished: %v", err)
	}
	if _, err := os.Stat(orphan); !os.IsNotExist(err) {
		t.Fatal("orphan kept")
	}
	if _, err := os.Stat(notOurs); err != nil {
		t.Fatal("a file that is not a shadow was removed from the storage directory")
	}
	got := ts.shadows()
	if len(got) != 1 || got[0].ID != c.ID {
		t.Fatalf("shadows after recovery: %v", ids(got))
	}
	ts.requireConsistent(btrfs.Dir, xfs.Dir)
}

// TestAutoRelease: shadows of a backup context belong to their requester's
// session; they are released when it ends, or at the next start.
func TestAutoRelease(t *testing.T) {
	fs := testutil.NewFS(t, "btrfs", 0)
	ts := open(t, nil)
	bg := context.Background()
	s1 := service.WithCaller(bg, service.Caller{Session: "s1"})
	s2 := service.WithCaller(bg, service.Caller{Session: "s2"})
	ts.BeginSession("s1")
	ts.BeginSession("s2")
	mk := func(ctx context.Context, c vss.Context) {
		if _, err := ts.CreateShadowSet(ctx, service.CreateRequest{Volumes: []string{fs.Dir}, Context: c}); err != nil {
			t.Fatal(err)
		}
	}
	mk(s1, vss.CtxBackup)
	mk(s1, vss.CtxAppRollback) // persistent: not released
	mk(s2, vss.CtxBackup)
	if err := ts.EndSession(bg, "s1"); err != nil {
		t.Fatal(err)
	}
	got := ts.shadows()
	if len(got) != 2 {
		t.Fatalf("after the end of s1: %d shadows", len(got))
	}
	ts.reopen(nil)
	got = ts.shadows()
	if len(got) != 1 || got[0].Context != vss.CtxAppRollback {
		t.Fatalf("after a restart: %+v", got)
	}
	ts.requireConsistent(fs.Dir)
}

func TestStateDirLock(t *testing.T) {
	ts := open(t, nil)
	o := ts.opts
	o.LockWait = 200_000_000
	_, err := service.Open(context.Background(), o)
	if err == nil || !strings.Contains(err.Error(), "locked by process") {
		t.Fatalf("second service on one state directory: %v", err)
	}
}
