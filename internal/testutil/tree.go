package testutil

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// posixACL builds a system.posix_acl_access value: owner rwx, user 1234
// r-x, group r-x, mask r-x, other ---.
func posixACL() []byte {
	var b bytes.Buffer
	le := binary.LittleEndian
	_ = binary.Write(&b, le, uint32(2))
	entry := func(tag, perm uint16, id uint32) {
		_ = binary.Write(&b, le, tag)
		_ = binary.Write(&b, le, perm)
		_ = binary.Write(&b, le, id)
	}
	entry(0x01, 7, 0xffffffff) // ACL_USER_OBJ
	entry(0x02, 5, 1234)       // ACL_USER
	entry(0x04, 5, 0xffffffff) // ACL_GROUP_OBJ
	entry(0x10, 5, 0xffffffff) // ACL_MASK
	entry(0x20, 0, 0xffffffff) // ACL_OTHER
	return b.Bytes()
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// WriteFile writes data to root/rel, making parent directories.
func WriteFile(t testing.TB, root, rel string, data []byte) {
	t.Helper()
	p := filepath.Join(root, rel)
	must(t, os.MkdirAll(filepath.Dir(p), 0o755))
	must(t, os.WriteFile(p, data, 0o644))
}

// RandomBytes returns n pseudo-random bytes from seed.
func RandomBytes(seed int64, n int) []byte {
	b := make([]byte, n)
	rand.New(rand.NewSource(seed)).Read(b)
	return b
}

// Populate fills root with every kind of entry a provider must keep: file
// contents and sizes (empty, small, multi-megabyte), modes including
// setuid/setgid/sticky, other owners, symbolic links (relative, absolute,
// dangling), hard links, a sparse file, a FIFO, a device node, extended
// attributes and a POSIX ACL (when withXattrs), old modification times,
// nested and empty directories, and many small files.
func Populate(t testing.TB, root string, withXattrs bool) {
	t.Helper()
	WriteFile(t, root, "hello.txt", []byte("hello, shadow\n"))
	WriteFile(t, root, "empty", nil)
	WriteFile(t, root, "big.bin", RandomBytes(1, 3<<20+123))
	WriteFile(t, root, "dir/sub/deep/file.txt", []byte("deep\n"))
	must(t, os.MkdirAll(filepath.Join(root, "emptydir"), 0o750))
	for i := 0; i < 200; i++ {
		WriteFile(t, root, fmt.Sprintf("many/f%03d", i), RandomBytes(int64(i), 100+i*37))
	}
	// Modes and owners.
	WriteFile(t, root, "modes/suid", []byte("#!/bin/sh\n"))
	must(t, unix.Chmod(filepath.Join(root, "modes/suid"), 0o4755))
	WriteFile(t, root, "modes/sgid", []byte("x"))
	must(t, unix.Chmod(filepath.Join(root, "modes/sgid"), 0o2750))
	must(t, os.MkdirAll(filepath.Join(root, "modes/sticky"), 0o755))
	must(t, unix.Chmod(filepath.Join(root, "modes/sticky"), 0o1777))
	WriteFile(t, root, "modes/private", []byte("secret"))
	must(t, os.Chmod(filepath.Join(root, "modes/private"), 0o600))
	WriteFile(t, root, "owners/u1234", []byte("owned"))
	must(t, os.Lchown(filepath.Join(root, "owners/u1234"), 1234, 5678))
	must(t, os.MkdirAll(filepath.Join(root, "owners/d4321"), 0o755))
	must(t, os.Lchown(filepath.Join(root, "owners/d4321"), 4321, 4321))
	// Links.
	must(t, os.Symlink("hello.txt", filepath.Join(root, "link-rel")))
	must(t, os.Symlink("/etc/hostname", filepath.Join(root, "link-abs")))
	must(t, os.Symlink("does/not/exist", filepath.Join(root, "link-dangling")))
	must(t, os.Lchown(filepath.Join(root, "link-rel"), 1234, 1234))
	WriteFile(t, root, "hard/a", []byte("linked content\n"))
	must(t, os.Link(filepath.Join(root, "hard/a"), filepath.Join(root, "hard/b")))
	must(t, os.MkdirAll(filepath.Join(root, "hard/other"), 0o755))
	must(t, os.Link(filepath.Join(root, "hard/a"), filepath.Join(root, "hard/other/c")))
	// Sparse: 1 MiB of data, a 16 MiB hole, 1 MiB of data, a 4 MiB hole at the end.
	sp, err := os.Create(filepath.Join(root, "sparse.img"))
	must(t, err)
	_, err = sp.WriteAt(RandomBytes(7, 1<<20), 0)
	must(t, err)
	_, err = sp.WriteAt(RandomBytes(8, 1<<20), 17<<20)
	must(t, err)
	must(t, sp.Truncate(22<<20))
	must(t, sp.Close())
	// Special files.
	must(t, unix.Mkfifo(filepath.Join(root, "fifo"), 0o640))
	must(t, unix.Mknod(filepath.Join(root, "null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
	// Extended attributes and an ACL.
	if withXattrs {
		must(t, unix.Lsetxattr(filepath.Join(root, "hello.txt"), "user.comment", []byte("a note"), 0))
		must(t, unix.Lsetxattr(filepath.Join(root, "hello.txt"), "trusted.vss-test", []byte{0, 1, 2, 255}, 0))
		must(t, unix.Lsetxattr(filepath.Join(root, "dir"), "user.dirattr", []byte("on a directory"), 0))
		must(t, unix.Lsetxattr(filepath.Join(root, "link-rel"), "trusted.onlink", []byte("on a link"), 0))
		must(t, unix.Lsetxattr(filepath.Join(root, "modes/private"), "system.posix_acl_access", posixACL(), 0))
	}
	// Old times, set last.
	old := time.Date(2001, 9, 9, 1, 46, 40, 123456789, time.UTC)
	must(t, os.Chtimes(filepath.Join(root, "hello.txt"), old, old))
	must(t, os.Chtimes(filepath.Join(root, "dir/sub"), old, old))
	ts := []unix.Timespec{unix.NsecToTimespec(old.UnixNano()), unix.NsecToTimespec(old.UnixNano())}
	must(t, unix.UtimesNanoAt(unix.AT_FDCWD, filepath.Join(root, "link-rel"), ts, unix.AT_SYMLINK_NOFOLLOW))
}

// Mutate changes a tree made by Populate in every way a provider must not
// let through to a shadow: content (in place, grown, shrunk), deletion,
// creation, rename, mode, owner, times, extended attributes, link targets,
// hard-link groups, holes.
func Mutate(t testing.TB, root string, withXattrs bool) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(root, "big.bin"), os.O_WRONLY, 0)
	must(t, err)
	_, err = f.WriteAt([]byte("CHANGED IN THE MIDDLE"), 1<<20)
	must(t, err)
	must(t, f.Close())
	WriteFile(t, root, "hello.txt", []byte("hello, changed world, longer than before\n"))
	must(t, os.Truncate(filepath.Join(root, "many/f010"), 3))
	must(t, os.Remove(filepath.Join(root, "many/f011")))
	must(t, os.RemoveAll(filepath.Join(root, "dir/sub")))
	WriteFile(t, root, "new/file.txt", []byte("created after the shadow"))
	must(t, os.Rename(filepath.Join(root, "many/f012"), filepath.Join(root, "many/renamed")))
	must(t, os.Chmod(filepath.Join(root, "modes/private"), 0o644))
	must(t, os.Lchown(filepath.Join(root, "owners/u1234"), 99, 99))
	must(t, os.Remove(filepath.Join(root, "link-rel")))
	must(t, os.Symlink("big.bin", filepath.Join(root, "link-rel")))
	must(t, os.Remove(filepath.Join(root, "hard/b")))
	WriteFile(t, root, "hard/b", []byte("no longer a link"))
	sp, err := os.OpenFile(filepath.Join(root, "sparse.img"), os.O_WRONLY, 0)
	must(t, err)
	_, err = sp.WriteAt([]byte("data in the hole"), 8<<20)
	must(t, err)
	must(t, sp.Close())
	if withXattrs {
		must(t, unix.Lsetxattr(filepath.Join(root, "hello.txt"), "user.comment", []byte("another note"), 0))
		must(t, unix.Lremovexattr(filepath.Join(root, "dir"), "user.dirattr"))
	}
	now := time.Now()
	must(t, os.Chtimes(filepath.Join(root, "empty"), now, now.Add(-time.Hour)))
	must(t, os.Remove(filepath.Join(root, "fifo")))
	must(t, os.Mkdir(filepath.Join(root, "fifo"), 0o700))
}
