// Package btrfsutil wraps the few btrfs ioctls the service needs (subvolume
// create, snapshot, delete, lookup), so that no cgo and no btrfs-progs
// binary are needed at run time.
package btrfsutil

import (
	"fmt"
	"os"
	"path/filepath"
	"unsafe"

	"golang.org/x/sys/unix"
)

const (
	ioctlMagic = 0x94
	// FirstFreeObjectID is the inode number of every subvolume's root directory.
	FirstFreeObjectID = 256
	// TopLevelID is the ID of the top-level subvolume.
	TopLevelID = 5

	subvolRDONLY = 1 << 1 // BTRFS_SUBVOL_RDONLY

	volNameMax    = 4087 // BTRFS_PATH_NAME_MAX
	subvolNameMax = 4039 // BTRFS_SUBVOL_NAME_MAX
)

// struct btrfs_ioctl_vol_args
type volArgs struct {
	Fd   int64
	Name [volNameMax + 1]byte
}

// struct btrfs_ioctl_vol_args_v2
type volArgsV2 struct {
	Fd      int64
	Transid uint64
	Flags   uint64
	Unused  [4]uint64
	Name    [subvolNameMax + 1]byte
}

// struct btrfs_ioctl_ino_lookup_args
type inoLookupArgs struct {
	Treeid   uint64
	Objectid uint64
	Name     [4080]byte
}

func iow(nr, size uintptr) uintptr  { return 1<<30 | size<<16 | ioctlMagic<<8 | nr }
func ior(nr, size uintptr) uintptr  { return 2<<30 | size<<16 | ioctlMagic<<8 | nr }
func iowr(nr, size uintptr) uintptr { return 3<<30 | size<<16 | ioctlMagic<<8 | nr }

var (
	iocSnapDestroy            = iow(15, unsafe.Sizeof(volArgs{}))
	iocSubvolCreate           = iow(14, unsafe.Sizeof(volArgs{}))
	iocSnapCreateV2           = iow(23, unsafe.Sizeof(volArgsV2{}))
	iocInoLookup              = iowr(18, unsafe.Sizeof(inoLookupArgs{}))
	iocSubvolGetFlags         = ior(25, 8)
	iocSubvolSetFlags         = iow(26, 8)
	iocSync           uintptr = ioctlMagic<<8 | 8 // _IO(0x94, 8)
)

func ioctl(fd int, req uintptr, arg unsafe.Pointer) error {
	_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, uintptr(arg))
	if e != 0 {
		return e
	}
	return nil
}

func openDir(path string) (int, error) {
	return unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
}

// IsBtrfs reports whether path lies on a btrfs filesystem.
func IsBtrfs(path string) (bool, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return false, err
	}
	return uint32(st.Type) == unix.BTRFS_SUPER_MAGIC, nil
}

// IsSubvolume reports whether path is the root directory of a btrfs subvolume.
func IsSubvolume(path string) (bool, error) {
	ok, err := IsBtrfs(path)
	if err != nil || !ok {
		return false, err
	}
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return false, err
	}
	return st.Ino == FirstFreeObjectID && st.Mode&unix.S_IFMT == unix.S_IFDIR, nil
}

// SubvolumeID returns the ID of the subvolume that contains path.
func SubvolumeID(path string) (uint64, error) {
	fd, err := openDir(path)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	args := inoLookupArgs{Objectid: FirstFreeObjectID}
	if err := ioctl(fd, iocInoLookup, unsafe.Pointer(&args)); err != nil {
		return 0, fmt.Errorf("btrfs ino lookup %s: %w", path, err)
	}
	return args.Treeid, nil
}

func setName(dst []byte, name string) error {
	if name == "" || len(name) >= len(dst) || filepath.Base(name) != name || name == "." || name == ".." {
		return fmt.Errorf("btrfs: invalid subvolume name %q", name)
	}
	copy(dst, name)
	return nil
}

// Snapshot makes a snapshot of the subvolume src at dst (dst must not exist;
// its parent must be on the same filesystem). readOnly makes it read-only.
func Snapshot(src, dst string, readOnly bool) error {
	sfd, err := openDir(src)
	if err != nil {
		return err
	}
	defer unix.Close(sfd)
	dfd, err := openDir(filepath.Dir(dst))
	if err != nil {
		return err
	}
	defer unix.Close(dfd)
	args := volArgsV2{Fd: int64(sfd)}
	if readOnly {
		args.Flags = subvolRDONLY
	}
	if err := setName(args.Name[:], filepath.Base(dst)); err != nil {
		return err
	}
	if err := ioctl(dfd, iocSnapCreateV2, unsafe.Pointer(&args)); err != nil {
		return &os.PathError{Op: "btrfs snapshot", Path: dst, Err: err}
	}
	return nil
}

// SetReadOnly makes the subvolume at path read-only or writable.
func SetReadOnly(path string, readOnly bool) error {
	fd, err := openDir(path)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	var flags uint64
	if err := ioctl(fd, iocSubvolGetFlags, unsafe.Pointer(&flags)); err != nil {
		return &os.PathError{Op: "btrfs get subvolume flags", Path: path, Err: err}
	}
	if readOnly {
		flags |= subvolRDONLY
	} else {
		flags &^= subvolRDONLY
	}
	if err := ioctl(fd, iocSubvolSetFlags, unsafe.Pointer(&flags)); err != nil {
		return &os.PathError{Op: "btrfs set subvolume flags", Path: path, Err: err}
	}
	return nil
}

// IsReadOnly reports whether the subvolume at path is read-only.
func IsReadOnly(path string) (bool, error) {
	fd, err := openDir(path)
	if err != nil {
		return false, err
	}
	defer unix.Close(fd)
	var flags uint64
	if err := ioctl(fd, iocSubvolGetFlags, unsafe.Pointer(&flags)); err != nil {
		return false, &os.PathError{Op: "btrfs get subvolume flags", Path: path, Err: err}
	}
	return flags&subvolRDONLY != 0, nil
}

// CreateSubvolume makes an empty subvolume at path.
func CreateSubvolume(path string) error {
	dfd, err := openDir(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer unix.Close(dfd)
	var args volArgs
	if err := setName(args.Name[:], filepath.Base(path)); err != nil {
		return err
	}
	if err := ioctl(dfd, iocSubvolCreate, unsafe.Pointer(&args)); err != nil {
		return &os.PathError{Op: "btrfs subvolume create", Path: path, Err: err}
	}
	return nil
}

// DeleteSubvolume deletes the subvolume at path (read-only ones too). The
// space is given back by the filesystem's cleaner in the background; see
// WaitCleaner.
func DeleteSubvolume(path string) error {
	dfd, err := openDir(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer unix.Close(dfd)
	var args volArgs
	if err := setName(args.Name[:], filepath.Base(path)); err != nil {
		return err
	}
	if err := ioctl(dfd, iocSnapDestroy, unsafe.Pointer(&args)); err != nil {
		return &os.PathError{Op: "btrfs subvolume delete", Path: path, Err: err}
	}
	return nil
}

// Sync commits the current transaction of the filesystem holding path, which
// also lets the cleaner reclaim deleted subvolumes.
func Sync(path string) error {
	fd, err := openDir(path)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return ioctl(fd, iocSync, nil)
}

// iocFSInfo is BTRFS_IOC_FS_INFO, _IOR(0x94, 31, struct btrfs_ioctl_fs_info_args)
// (1024 bytes; the fsid sits at offset 16).
const iocFSInfo uintptr = 2<<30 | 1024<<16 | ioctlMagic<<8 | 31

// FSID returns the UUID of the btrfs filesystem holding path.
func FSID(path string) ([16]byte, error) {
	var id [16]byte
	fd, err := openDir(path)
	if err != nil {
		return id, err
	}
	defer unix.Close(fd)
	var args [1024]byte
	if err := ioctl(fd, iocFSInfo, unsafe.Pointer(&args[0])); err != nil {
		return id, &os.PathError{Op: "btrfs fs info", Path: path, Err: err}
	}
	copy(id[:], args[16:32])
	return id, nil
}
