// Package testutil holds the fixtures of the tests: real filesystems on loop
// devices, and the rule that a test may skip for want of root or a tool only
// outside CI (with CI=true such a skip is a failure).
package testutil

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// InCI reports whether the tests run in CI, where nothing may be skipped.
func InCI() bool { return os.Getenv("CI") == "true" }

// SkipOrFail skips the test, or fails it in CI.
func SkipOrFail(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if InCI() {
		t.Fatalf("%s (CI=true: this check may not be skipped)", msg)
	}
	t.Skip(msg)
}

// RequireRoot skips (fails in CI) when the test does not run as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		SkipOrFail(t, "needs root")
	}
}

// RequireTools skips (fails in CI) when a program is missing.
func RequireTools(t testing.TB, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			SkipOrFail(t, "needs %s (apt-get install the package that has it)", tool)
		}
	}
}

// Run runs a command and fails the test if it fails.
func Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// FS is a real filesystem on a loop device, mounted at Dir.
type FS struct {
	Type  string
	Dir   string // mount point
	Dev   string // /dev/loopN
	Image string // backing sparse file
}

// DefaultSize is the size of test filesystems (XFS needs at least 300 MiB).
const DefaultSize = 320 << 20

var mkfs = map[string][]string{
	"btrfs": {"mkfs.btrfs", "-q", "-f"},
	"xfs":   {"mkfs.xfs", "-q", "-f", "-m", "reflink=1"},
	"ext4":  {"mkfs.ext4", "-q", "-F", "-b", "4096"},
}

// NewFS makes a filesystem of the given type (btrfs, xfs, ext4) on a loop
// device backed by a sparse file, mounts it, and registers its unmounting
// and detaching with t.Cleanup, so it goes away also when the test fails.
func NewFS(t testing.TB, fstype string, size int64) *FS {
	t.Helper()
	RequireRoot(t)
	cmd, ok := mkfs[fstype]
	if !ok {
		t.Fatalf("NewFS: unknown filesystem %q", fstype)
	}
	RequireTools(t, cmd[0], "losetup")
	if size == 0 {
		size = DefaultSize
	}
	base := t.TempDir()
	f := &FS{Type: fstype, Image: filepath.Join(base, fstype+".img"), Dir: filepath.Join(base, "mnt")}
	if err := os.Mkdir(f.Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	img, err := os.Create(f.Image)
	if err != nil {
		t.Fatal(err)
	}
	if err := img.Truncate(size); err != nil {
		t.Fatal(err)
	}
	img.Close()
	Run(t, cmd[0], append(cmd[1:], f.Image)...)
	var dev string
	for try := 0; ; try++ {
		out, err := exec.Command("losetup", "--find", "--show", f.Image).CombinedOutput()
		if err == nil {
			dev = strings.TrimSpace(string(out))
			break
		}
		if try == 20 {
			t.Fatalf("losetup %s: %v\n%s", f.Image, err, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
	f.Dev = dev
	t.Cleanup(func() { detach(t, dev) })
	if err := unix.Mount(dev, f.Dir, fstype, 0, ""); err != nil {
		t.Fatalf("mount %s on %s: %v", dev, f.Dir, err)
	}
	t.Cleanup(func() { Unmount(t, f.Dir) })
	return f
}

// Unmount thaws (in case a failed test left it frozen) and unmounts dir,
// retrying while it is busy, then lazily.
func Unmount(t testing.TB, dir string) {
	t.Helper()
	thaw(dir)
	var err error
	for i := 0; i < 50; i++ {
		if err = unix.Unmount(dir, 0); err == nil || err == unix.EINVAL || err == unix.ENOENT {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Errorf("unmount %s: %v; unmounting lazily", dir, err)
	_ = unix.Unmount(dir, unix.MNT_DETACH)
}

func thaw(dir string) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return
	}
	defer unix.Close(fd)
	_ = unix.IoctlSetInt(fd, 0xC0045878, 0) // FITHAW
}

func detach(t testing.TB, dev string) {
	t.Helper()
	var out []byte
	var err error
	for i := 0; i < 50; i++ {
		out, err = exec.Command("losetup", "-d", dev).CombinedOutput()
		if err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Errorf("losetup -d %s: %v\n%s", dev, err, out)
}

// Subvolume creates a btrfs subvolume at path with the btrfs tool.
func Subvolume(t testing.TB, path string) {
	t.Helper()
	RequireTools(t, "btrfs")
	Run(t, "btrfs", "subvolume", "create", path)
}
