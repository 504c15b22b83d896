package volume

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/linuxvss/vss/internal/testutil"
	"github.com/linuxvss/vss/internal/vsserr"
)

const sample = `27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard
43 27 0:39 / /mnt/with\040space rw,relatime shared:1 - btrfs /dev/loop0 rw,subvolid=5,subvol=/
44 27 0:39 /home /home rw,relatime - btrfs /dev/loop0 rw,subvolid=256,subvol=/home
45 27 7:2 / /mnt/ro ro,relatime - xfs /dev/loop2 ro
46 43 0:40 / /mnt/with\040space/inner rw - tmpfs tmpfs rw
`

func TestParseMountInfo(t *testing.T) {
	ms, err := ParseMountInfo(sample)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 5 {
		t.Fatalf("%d mounts", len(ms))
	}
	want := Mount{ID: 43, Parent: 27, Major: 0, Minor: 39, Root: "/", MountPoint: "/mnt/with space", Options: "rw,relatime",
		FSType: "btrfs", Source: "/dev/loop0", SuperOpts: "rw,subvolid=5,subvol=/"}
	if d := cmp.Diff(want, ms[1]); d != "" {
		t.Fatalf("(-want +got):\n%s", d)
	}
	if ms[1].Dev() != ms[2].Dev() {
		t.Error("two subvolumes of one btrfs have different devices")
	}
	if !ms[3].ReadOnly() || ms[0].ReadOnly() {
		t.Error("read-only flags")
	}
	for _, c := range []struct{ path, mount string }{
		{"/mnt/with space/inner/x", "/mnt/with space/inner"},
		{"/mnt/with space/x", "/mnt/with space"},
		{"/mnt/with spacex", "/"},
		{"/home", "/home"},
		{"/etc", "/"},
	} {
		m, ok := MountOf(ms, c.path)
		if !ok || m.MountPoint != c.mount {
			t.Errorf("MountOf(%q) = %q", c.path, m.MountPoint)
		}
	}
	if d := cmp.Diff([]string{"/mnt/with space/inner"}, MountsUnder(ms, "/mnt/with space")); d != "" {
		t.Error(d)
	}
	if e := Eligible(ms); len(e) != 3 {
		t.Errorf("eligible: %+v", e)
	}
	for _, bad := range []string{"1 2 3", "x 1 0:1 / / rw - ext4 /dev/a rw", "1 1 0-1 / / rw - ext4 /dev/a rw", "1 1 0:1 / / rw ext4 /dev/a rw"} {
		if _, err := ParseMountInfo(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func FuzzParseMountInfo(f *testing.F) {
	f.Add(sample)
	f.Fuzz(func(t *testing.T, s string) {
		ms, err := ParseMountInfo(s)
		if err != nil {
			return
		}
		for _, m := range ms {
			MountOf(ms, m.MountPoint)
			MountsUnder(ms, m.MountPoint)
		}
		Eligible(ms)
	})
}

func TestResolve(t *testing.T) {
	fs := testutil.NewFS(t, "btrfs", 0)
	testutil.Subvolume(t, filepath.Join(fs.Dir, "sub"))
	if err := os.MkdirAll(filepath.Join(fs.Dir, "sub/dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(fs.Dir, "sub"), filepath.Join(fs.Dir, "link")); err != nil {
		t.Fatal(err)
	}
	top, err := Resolve(fs.Dir)
	if err != nil {
		t.Fatal(err)
	}
	sub, err := Resolve(filepath.Join(fs.Dir, "link"))
	if err != nil {
		t.Fatal(err)
	}
	dir, err := Resolve(filepath.Join(fs.Dir, "sub/dir") + "/")
	if err != nil {
		t.Fatal(err)
	}
	if top.Kind != KindMount || sub.Kind != KindSubvolume || dir.Kind != KindDirectory {
		t.Fatalf("kinds %v %v %v", top.Kind, sub.Kind, dir.Kind)
	}
	if sub.Path != filepath.Join(fs.Dir, "sub") || top.FSUUID == "" || top.FSUUID != sub.FSUUID || !SameFilesystem(top, dir) || !top.Reflink {
		t.Fatalf("%+v %+v", top, sub)
	}
	if top.ID == sub.ID || sub.ID == dir.ID || top.SubvolID != 5 || sub.SubvolID == 5 {
		t.Fatal("volume IDs or subvolume IDs not distinct")
	}
	again, _ := Resolve(fs.Dir)
	if again.ID != top.ID {
		t.Fatal("a volume's ID is not stable")
	}
	for _, c := range []struct {
		path string
		code vsserr.Code
	}{
		{"/no/such/path", vsserr.VSS_E_OBJECT_NOT_FOUND},
		{"/proc", vsserr.VSS_E_VOLUME_NOT_SUPPORTED},
		{"", vsserr.E_INVALIDARG},
		{"/etc/hostname", vsserr.VSS_E_VOLUME_NOT_SUPPORTED},
	} {
		if _, err := Resolve(c.path); vsserr.CodeOf(err) != c.code {
			t.Errorf("Resolve(%q) = %v, want %s", c.path, err, c.code)
		}
	}
}
