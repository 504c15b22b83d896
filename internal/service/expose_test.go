package service_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/uuid"
	"golang.org/x/sys/unix"

	"github.com/linuxvss/vss/internal/btrfsutil"
	"github.com/linuxvss/vss/internal/service"
	"github.com/linuxvss/vss/internal/testutil"
	"github.com/linuxvss/vss/internal/volume"
	"github.com/linuxvss/vss/internal/vss"
	"github.com/linuxvss/vss/internal/vsserr"
)

func mountedAt(t *testing.T, path string) bool {
	t.Helper()
	ms, err := volume.Mounts()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.MountPoint == path {
			return true
		}
	}
	return false
}

// TestExpose: a persistent shadow is exposed read-only at a directory, the
// old content is read there, the exposure survives a restart that lost the
// mount (a reboot), and unexpose and delete unmount it.
func TestExpose(t *testing.T) {
	for _, fstype := range []string{"btrfs", "ext4"} {
		t.Run(fstype, func(t *testing.T) {
			testutil.RequireRoot(t)
			fs := testutil.NewFS(t, fstype, 0)
			testutil.WriteFile(t, fs.Dir, "a.txt", []byte("before"))
			ts := open(t, nil)
			res := ts.create(fs.Dir)
			id := res.Shadows[0].ID
			testutil.WriteFile(t, fs.Dir, "a.txt", []byte("after"))
			at := filepath.Join(t.TempDir(), "exposed")
			t.Cleanup(func() { unix.Unmount(at, unix.MNT_DETACH) })
			ctx := context.Background()
			sh, err := ts.Expose(ctx, id, at)
			if err != nil {
				t.Fatal(err)
			}
			if sh.ExposedPath != at || sh.Attributes&vss.AttrExposedLocally == 0 {
				t.Errorf("exposed shadow: path %q, attributes %v", sh.ExposedPath, sh.Attributes)
			}
			if b, err := os.ReadFile(filepath.Join(at, "a.txt")); err != nil || string(b) != "before" {
				t.Errorf("read through the exposed path: %q, %v", b, err)
			}
			if err := os.WriteFile(filepath.Join(at, "new"), nil, 0o644); err == nil {
				t.Error("the exposed shadow is writable")
			}
			_, err = ts.Expose(ctx, id, filepath.Join(t.TempDir(), "again"))
			requireCode(t, err, vsserr.VSS_E_OBJECT_ALREADY_EXISTS)
			// Refusals change nothing.
			_, err = ts.Expose(ctx, id, "relative")
			requireCode(t, err, vsserr.E_INVALIDARG)
			// A reboot loses the mount; the next start mounts it again.
			if err := unix.Unmount(at, 0); err != nil {
				t.Fatal(err)
			}
			ts.reopen(nil)
			if !mountedAt(t, at) {
				t.Fatal("the exposure was not restored at start")
			}
			if _, err := ts.Unexpose(ctx, at); err != nil {
				t.Fatal(err)
			}
			if mountedAt(t, at) {
				t.Error("still mounted after unexpose")
			}
			if sh := ts.shadows()[0]; sh.ExposedPath != "" || sh.Attributes&vss.AttrExposedLocally != 0 {
				t.Errorf("after unexpose: %+v", sh)
			}
			_, err = ts.Unexpose(ctx, at)
			requireCode(t, err, vsserr.VSS_E_OBJECT_NOT_FOUND)
			// Deleting an exposed shadow unmounts it first.
			if _, err := ts.Expose(ctx, id, at); err != nil {
				t.Fatal(err)
			}
			if _, err := ts.DeleteShadows(ctx, []uuid.UUID{id}); err != nil {
				t.Fatal(err)
			}
			if mountedAt(t, at) {
				t.Error("a deleted shadow is still mounted")
			}
		})
	}
}

// TestExposeRefusesNonPersistent: only persistent shadow copies can be
// exposed.
func TestExposeRefusesNonPersistent(t *testing.T) {
	testutil.RequireRoot(t)
	fs := testutil.NewFS(t, "btrfs", 0)
	ts := open(t, nil)
	res, err := ts.CreateShadowSet(context.Background(), service.CreateRequest{Volumes: []string{fs.Dir}, Context: vss.CtxBackup})
	if err != nil {
		t.Fatal(err)
	}
	_, err = ts.Expose(context.Background(), res.Shadows[0].ID, filepath.Join(t.TempDir(), "x"))
	requireCode(t, err, vsserr.VSS_E_UNSUPPORTED_CONTEXT)
}

// TestBreakSet: a broken set leaves the catalog; its shadows stay as
// ordinary directories beside the storage (read-only, or writable), and a
// restart does not sweep them away.
func TestBreakSet(t *testing.T) {
	testutil.RequireRoot(t)
	for _, tc := range []struct {
		fstype   string
		writable bool
	}{{"btrfs", false}, {"btrfs", true}, {"ext4", true}} {
		fs := testutil.NewFS(t, tc.fstype, 0)
		testutil.WriteFile(t, fs.Dir, "a.txt", []byte("data"))
		ts := open(t, nil)
		res := ts.create(fs.Dir)
		out, err := ts.BreakSet(context.Background(), res.Set.ID, tc.writable)
		if err != nil {
			t.Fatal(err)
		}
		want := filepath.Join(fs.Dir, "shadow-"+res.Shadows[0].ID.String())
		if len(out) != 1 || out[0].ShadowPath != want {
			t.Fatalf("broken shadows %+v, want one at %s", out, want)
		}
		if len(ts.shadows()) != 0 {
			t.Error("a broken shadow is still in the catalog")
		}
		ts.reopen(nil)
		if b, err := os.ReadFile(filepath.Join(want, "a.txt")); err != nil || string(b) != "data" {
			t.Errorf("the broken shadow after a restart: %q, %v", b, err)
		}
		if tc.fstype == "btrfs" {
			ro, err := btrfsutil.IsReadOnly(want)
			if err != nil || ro == tc.writable {
				t.Errorf("read-only %v (%v), writable asked %v", ro, err, tc.writable)
			}
			if err := btrfsutil.SetReadOnly(want, false); err == nil {
				btrfsutil.DeleteSubvolume(want)
			}
		} else {
			os.RemoveAll(want)
		}
		_, err = ts.BreakSet(context.Background(), res.Set.ID, false)
		requireCode(t, err, vsserr.VSS_E_OBJECT_NOT_FOUND)
	}
}
