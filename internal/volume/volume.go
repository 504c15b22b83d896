package volume

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unsafe"

	"github.com/google/uuid"
	"golang.org/x/sys/unix"

	"github.com/linuxvss/vss/internal/btrfsutil"
	"github.com/linuxvss/vss/internal/vsserr"
)

// Kind says what a volume path is.
type Kind int

const (
	// KindMount is the root of a mounted filesystem.
	KindMount Kind = iota + 1
	// KindSubvolume is a btrfs subvolume that is not itself a mount point.
	KindSubvolume
	// KindDirectory is a plain directory (only file-level providers take it).
	KindDirectory
)

// String returns the kind's lower-case name.
func (k Kind) String() string {
	switch k {
	case KindMount:
		return "mount"
	case KindSubvolume:
		return "subvolume"
	case KindDirectory:
		return "directory"
	}
	return "unknown"
}

// Volume is a resolved volume.
type Volume struct {
	ID       uuid.UUID // stable GUID derived from the filesystem
	Path     string    // canonical absolute path, no symbolic links
	Kind     Kind
	Mount    Mount  // the mount that holds Path
	FSType   string // "btrfs", "xfs", "ext4", …
	FSUUID   string // the filesystem's UUID, "" when it has none
	SubvolID uint64 // btrfs: the subvolume holding Path
	Reflink  bool   // the filesystem can clone extents (FICLONE)
}

// Name returns the Windows-style volume name, \\?\Volume{GUID}\ .
func (v *Volume) Name() string { return `\\?\Volume{` + v.ID.String() + `}\` }

// namespace is the UUID namespace of volume GUIDs (fixed forever).
var namespace = uuid.MustParse("6a1f0c3e-8b1d-4f57-9f6e-3c1d2b7a9e10")

// pseudo filesystems that never hold data worth a shadow copy.
var pseudoFS = map[string]bool{
	"proc": true, "sysfs": true, "devtmpfs": true, "devpts": true, "cgroup": true, "cgroup2": true,
	"securityfs": true, "debugfs": true, "tracefs": true, "pstore": true, "bpf": true, "mqueue": true,
	"hugetlbfs": true, "configfs": true, "fusectl": true, "autofs": true, "binfmt_misc": true,
	"efivarfs": true, "rpc_pipefs": true, "nsfs": true, "selinuxfs": true,
}

// remoteFS are filesystems that are not local volumes.
var remoteFS = map[string]bool{"nfs": true, "nfs4": true, "cifs": true, "smb3": true, "9p": true, "fuse.sshfs": true, "ceph": true, "glusterfs": true}

// IsPseudo reports whether fstype is a kernel pseudo filesystem.
func IsPseudo(fstype string) bool { return pseudoFS[fstype] }

// Canonical cleans path and resolves symbolic links; the path must exist.
func Canonical(path string) (string, error) {
	if path == "" {
		return "", vsserr.New(vsserr.E_INVALIDARG, "empty volume path")
	}
	if !filepath.IsAbs(path) {
		abs, err := filepath.Abs(path)
		if err != nil {
			return "", vsserr.Wrap(vsserr.E_INVALIDARG, err, "volume path %q", path)
		}
		path = abs
	}
	p, err := filepath.EvalSymlinks(filepath.Clean(path))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", vsserr.New(vsserr.VSS_E_OBJECT_NOT_FOUND, "volume %s does not exist", path)
		}
		return "", vsserr.Wrap(vsserr.VSS_E_OBJECT_NOT_FOUND, err, "volume %s", path)
	}
	return p, nil
}

// Resolve resolves path to a volume.
func Resolve(path string) (*Volume, error) {
	mounts, err := Mounts()
	if err != nil {
		return nil, vsserr.Wrap(vsserr.VSS_E_UNEXPECTED, err, "reading mount table")
	}
	return ResolveWith(mounts, path)
}

// ResolveWith resolves path using an already read mount table.
func ResolveWith(mounts []Mount, path string) (*Volume, error) {
	p, err := Canonical(path)
	if err != nil {
		return nil, err
	}
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		return nil, vsserr.Wrap(vsserr.VSS_E_OBJECT_NOT_FOUND, err, "volume %s", p)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return nil, vsserr.New(vsserr.VSS_E_VOLUME_NOT_SUPPORTED, "%s is not a directory or mount point", p)
	}
	m, ok := MountOf(mounts, p)
	if !ok {
		return nil, vsserr.New(vsserr.VSS_E_VOLUME_NOT_SUPPORTED, "no mount holds %s", p)
	}
	if pseudoFS[m.FSType] {
		return nil, vsserr.New(vsserr.VSS_E_VOLUME_NOT_SUPPORTED, "%s is on a %s pseudo filesystem", p, m.FSType)
	}
	if remoteFS[m.FSType] {
		return nil, vsserr.New(vsserr.VSS_E_VOLUME_NOT_LOCAL, "%s is on a %s network filesystem", p, m.FSType)
	}
	v := &Volume{Path: p, Mount: m, FSType: m.FSType}
	v.FSUUID = fsUUID(p)
	if v.FSUUID == "" && m.FSType == "btrfs" {
		if id, err := btrfsutil.FSID(p); err == nil {
			v.FSUUID = uuid.UUID(id).String()
		}
	}
	switch {
	case p == m.MountPoint:
		v.Kind = KindMount
	case m.FSType == "btrfs" && st.Ino == btrfsutil.FirstFreeObjectID:
		v.Kind = KindSubvolume
	default:
		v.Kind = KindDirectory
	}
	switch m.FSType {
	case "btrfs":
		v.Reflink = true
		id, err := btrfsutil.SubvolumeID(p)
		if err != nil {
			return nil, vsserr.Wrap(vsserr.VSS_E_VOLUME_NOT_SUPPORTED, err, "btrfs volume %s", p)
		}
		v.SubvolID = id
	case "xfs":
		v.Reflink = xfsReflink(p)
	}
	v.ID = deriveID(v, st.Ino)
	return v, nil
}

func deriveID(v *Volume, ino uint64) uuid.UUID {
	fs := v.FSUUID
	if fs == "" {
		fs = fmt.Sprintf("dev:%d:%d:%s", v.Mount.Major, v.Mount.Minor, v.Mount.Source)
	}
	var key string
	switch {
	case v.FSType == "btrfs" && v.Kind != KindDirectory:
		key = fs + "|subvol|" + strconv.FormatUint(v.SubvolID, 10)
	case v.Kind == KindMount && v.Mount.Root == "/":
		key = fs + "|root"
	default:
		rel, _ := filepath.Rel(v.Mount.MountPoint, v.Path)
		key = fs + "|dir|" + filepath.Join(v.Mount.Root, rel)
	}
	return uuid.NewSHA1(namespace, []byte(key))
}

// FS_IOC_GETFSUUID = _IOR(0x15, 0, struct fsuuid2 { __u8 len; __u8 uuid[16]; })
const fsIocGetFSUUID = 2<<30 | 17<<16 | 0x15<<8 | 0

func fsUUID(path string) string {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return ""
	}
	defer unix.Close(fd)
	var buf [17]byte
	_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), fsIocGetFSUUID, uintptr(unsafe.Pointer(&buf[0])))
	if e != 0 || buf[0] != 16 {
		return ""
	}
	u, err := uuid.FromBytes(buf[1:17])
	if err != nil || u == uuid.Nil {
		return ""
	}
	return u.String()
}

// XFS_IOC_FSGEOMETRY_V1 = _IOR('X', 100, struct xfs_fsop_geom_v1) (112 bytes);
// flags sit at offset 92, XFS_FSOP_GEOM_FLAGS_REFLINK = 1<<20.
const (
	xfsIocFSGeometryV1 = 2<<30 | 112<<16 | 'X'<<8 | 100
	xfsGeomFlagReflink = 1 << 20
)

func xfsReflink(path string) bool {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	var geom [112]byte
	_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), xfsIocFSGeometryV1, uintptr(unsafe.Pointer(&geom[0])))
	if e != 0 {
		return false
	}
	flags := *(*uint32)(unsafe.Pointer(&geom[92]))
	return flags&xfsGeomFlagReflink != 0
}

// Space returns the total and free bytes of the filesystem holding path.
func Space(path string) (total, free uint64, err error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return 0, 0, err
	}
	return st.Blocks * uint64(st.Bsize), st.Bavail * uint64(st.Bsize), nil
}

// SameFilesystem reports whether two volumes live on one filesystem.
func SameFilesystem(a, b *Volume) bool {
	if a.FSUUID != "" && b.FSUUID != "" {
		return a.FSUUID == b.FSUUID
	}
	return a.Mount.Dev() == b.Mount.Dev()
}

// FilesystemOf returns the device number of the filesystem holding path (as
// mountinfo gives it: one value for all mounts and subvolumes of a
// filesystem).
func FilesystemOf(mounts []Mount, path string) (uint64, error) {
	p, err := filepath.EvalSymlinks(path)
	if err != nil {
		return 0, err
	}
	m, ok := MountOf(mounts, p)
	if !ok {
		return 0, fmt.Errorf("no mount holds %s", p)
	}
	return m.Dev(), nil
}

// Eligible lists the mounted local filesystems that can be shadow copied,
// skipping pseudo and network filesystems and read-only mounts.
func Eligible(mounts []Mount) []Mount {
	var out []Mount
	seen := map[string]bool{}
	for _, m := range mounts {
		if pseudoFS[m.FSType] || remoteFS[m.FSType] || m.ReadOnly() || seen[m.MountPoint] {
			continue
		}
		if m.FSType == "tmpfs" || m.FSType == "ramfs" || m.FSType == "overlay" || m.FSType == "squashfs" || m.FSType == "iso9660" {
			continue
		}
		if strings.HasPrefix(m.MountPoint, "/proc") || strings.HasPrefix(m.MountPoint, "/sys") || strings.HasPrefix(m.MountPoint, "/dev") {
			continue
		}
		seen[m.MountPoint] = true
		out = append(out, m)
	}
	return out
}

// Containing returns the volume that holds path: its mount, or the btrfs
// subvolume it lies in — never a plain directory volume (what a backup of
// a path must shadow copy).
func Containing(path string) (*Volume, error) {
	mounts, err := Mounts()
	if err != nil {
		return nil, vsserr.Wrap(vsserr.VSS_E_UNEXPECTED, err, "reading mount table")
	}
	p, err := Canonical(path)
	if err != nil {
		return nil, err
	}
	for {
		v, err := ResolveWith(mounts, p)
		if err != nil {
			return nil, err
		}
		if v.Kind != KindDirectory {
			return v, nil
		}
		p = filepath.Dir(p)
	}
}
