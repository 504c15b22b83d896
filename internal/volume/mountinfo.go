// Package volume resolves paths to volumes: mounted filesystems, btrfs
// subvolumes and plain directories, each with a stable GUID derived from the
// filesystem (its UUID and, for btrfs, the subvolume ID).
package volume

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Mount is one line of /proc/self/mountinfo.
type Mount struct {
	ID         int
	Parent     int
	Major      uint32
	Minor      uint32
	Root       string // root of the mount within its filesystem
	MountPoint string
	Options    string
	FSType     string
	Source     string
	SuperOpts  string
}

// Dev returns the filesystem's device number (the superblock's s_dev). Two
// mounts of one filesystem (bind mounts, several btrfs subvolumes) share it.
func (m Mount) Dev() uint64 { return uint64(m.Major)<<32 | uint64(m.Minor) }

// ReadOnly reports whether the mount is read-only.
func (m Mount) ReadOnly() bool {
	for _, o := range strings.Split(m.Options, ",") {
		if o == "ro" {
			return true
		}
	}
	return false
}

// unescape undoes the octal escapes (\040 for space …) of mountinfo fields.
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// ParseMountInfo parses the text of /proc/self/mountinfo.
func ParseMountInfo(text string) ([]Mount, error) {
	var out []Mount
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			continue
		}
		f := strings.Fields(line)
		sep := -1
		for i, x := range f {
			if x == "-" && i >= 6 {
				sep = i
				break
			}
		}
		if sep < 0 || len(f) < sep+3 || len(f) < 6 {
			return nil, fmt.Errorf("mountinfo: malformed line %q", line)
		}
		var m Mount
		var err error
		if m.ID, err = strconv.Atoi(f[0]); err != nil {
			return nil, fmt.Errorf("mountinfo: bad mount id in %q", line)
		}
		if m.Parent, err = strconv.Atoi(f[1]); err != nil {
			return nil, fmt.Errorf("mountinfo: bad parent id in %q", line)
		}
		mm := strings.SplitN(f[2], ":", 2)
		if len(mm) != 2 {
			return nil, fmt.Errorf("mountinfo: bad device in %q", line)
		}
		maj, err1 := strconv.ParseUint(mm[0], 10, 32)
		min, err2 := strconv.ParseUint(mm[1], 10, 32)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("mountinfo: bad device in %q", line)
		}
		m.Major, m.Minor = uint32(maj), uint32(min)
		m.Root = unescape(f[3])
		m.MountPoint = unescape(f[4])
		m.Options = f[5]
		m.FSType = f[sep+1]
		m.Source = unescape(f[sep+2])
		if len(f) > sep+3 {
			m.SuperOpts = f[sep+3]
		}
		out = append(out, m)
	}
	return out, sc.Err()
}

// Mounts returns the mounts of the calling process's mount namespace.
func Mounts() ([]Mount, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	return ParseMountInfo(string(b))
}

// MountOf returns the mount that contains path (which must be absolute and
// free of symbolic links): the last-mounted entry with the longest mount
// point that is a prefix of path.
func MountOf(mounts []Mount, path string) (Mount, bool) {
	best := -1
	for i, m := range mounts {
		if !within(path, m.MountPoint) {
			continue
		}
		if best < 0 || len(m.MountPoint) >= len(mounts[best].MountPoint) {
			best = i
		}
	}
	if best < 0 {
		return Mount{}, false
	}
	return mounts[best], true
}

// MountsUnder returns the mount points strictly below dir, sorted.
func MountsUnder(mounts []Mount, dir string) []string {
	var out []string
	for _, m := range mounts {
		if m.MountPoint != dir && within(m.MountPoint, dir) {
			out = append(out, m.MountPoint)
		}
	}
	sort.Strings(out)
	return out
}

// within reports whether path is dir or below it.
func within(path, dir string) bool {
	if dir == "/" {
		return strings.HasPrefix(path, "/")
	}
	return path == dir || strings.HasPrefix(path, dir+"/")
}

// Within reports whether path is dir or lies below it (both clean and absolute).
func Within(path, dir string) bool { return within(filepath.Clean(path), filepath.Clean(dir)) }
