package service_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/linuxvss/vss/internal/service"
	"github.com/linuxvss/vss/internal/testutil"
	"github.com/linuxvss/vss/internal/vss"
)

// TestFreezeRules checks the safety rules on what the service freezes: a
// copy's volume is frozen only when nothing of the service or of the set
// writes to its filesystem. Above all, a btrfs filesystem that a btrfs
// snapshot of the same set is taken of is never frozen (the snapshot would
// hang unkillably).
func TestFreezeRules(t *testing.T) {
	btrfs := testutil.NewFS(t, "btrfs", 0)
	xfs := testutil.NewFS(t, "xfs", 0)
	ext4 := testutil.NewFS(t, "ext4", 0)
	plain := filepath.Join(btrfs.Dir, "plain")
	if err := os.Mkdir(plain, 0o755); err != nil {
		t.Fatal(err)
	}
	stateOnExt4 := filepath.Join(ext4.Dir, "state")
	ts := open(t, func(o *service.Options) { o.Config.StateDir = stateOnExt4 })
	ctx := context.Background()
	mk := func(provider string, vols ...string) *service.CreateResult {
		t.Helper()
		res, err := ts.CreateShadowSet(ctx, service.CreateRequest{Volumes: vols, Provider: provider, Context: vss.CtxClientAccessible})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	// 1. A copy of a btrfs directory with its storage on XFS: frozen.
	if err := ts.AddShadowStorage(ctx, plain, xfs.Dir, mustMax(t, "UNBOUNDED")); err != nil {
		t.Fatal(err)
	}
	res := mk("copy", plain)
	if len(res.NotFrozen) != 0 || !res.Shadows[0].CrashConsistent {
		t.Fatalf("copy with storage elsewhere was not frozen: %v", res.NotFrozen)
	}
	// 2. The same directory, in one set with a btrfs snapshot of the same
	// filesystem (chosen automatically: reflink cannot reach the XFS
	// storage, so the directory is copied): the filesystem must not be
	// frozen.
	res = mk("", btrfs.Dir, plain)
	for _, s := range res.Shadows {
		if s.VolumePath == plain && s.Provider != "copy" {
			t.Fatalf("the directory went to %s", s.Provider)
		}
	}
	why := res.NotFrozen[btrfs.Dir]
	if !strings.Contains(why, "a commit of this set writes to it") {
		t.Fatalf("btrfs with a snapshot in the set: not-frozen reason %q (%v)", why, res.NotFrozen)
	}
	// 3. A copy whose storage is on its own filesystem: not frozen.
	res = mk("copy", xfs.Dir)
	if why := res.NotFrozen[xfs.Dir]; !strings.Contains(why, "writes to it") || res.Shadows[0].CrashConsistent {
		t.Fatalf("copy with its storage on its own filesystem: %v", res.NotFrozen)
	}
	// 4. A copy of the filesystem that holds the state directory: not frozen.
	other := testutil.NewFS(t, "ext4", 0)
	if err := ts.AddShadowStorage(ctx, ext4.Dir, other.Dir, mustMax(t, "UNBOUNDED")); err != nil {
		t.Fatal(err)
	}
	res = mk("copy", ext4.Dir)
	if why := res.NotFrozen[ext4.Dir]; !strings.Contains(why, "the service writes to it") {
		t.Fatalf("copy of the state directory's filesystem: %v", res.NotFrozen)
	}
	// 5. The root filesystem is never frozen: a directory of it, copied to
	// another filesystem.
	dir, err := os.MkdirTemp("/var/tmp", "vss-root-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	testutil.WriteFile(t, dir, "f", []byte("x"))
	if err := ts.AddShadowStorage(ctx, dir, other.Dir, mustMax(t, "UNBOUNDED")); err != nil {
		t.Fatal(err)
	}
	res = mk("copy", dir)
	if why := res.NotFrozen["/"]; !strings.Contains(why, "root filesystem") {
		t.Fatalf("copy of a root filesystem directory: %v", res.NotFrozen)
	}
}
