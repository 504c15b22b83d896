package fsutil

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"unsafe"

	"golang.org/x/sys/unix"
)

// FIEMAP extent flags (linux/fiemap.h).
const (
	FiemapExtentLast     = 0x1
	FiemapExtentUnknown  = 0x2
	FiemapExtentDelalloc = 0x4
	FiemapExtentEncoded  = 0x8
	FiemapExtentInline   = 0x200
	FiemapExtentShared   = 0x2000
)

// Extent is one mapping of a file's bytes to the device, as FIEMAP reports it.
type Extent struct {
	Logical, Physical, Length uint64
	Flags                     uint32
}

type fiemapHeader struct {
	Start, Length                               uint64
	Flags, MappedExtents, ExtentCount, Reserved uint32
}

type fiemapExtent struct {
	Logical, Physical, Length uint64
	Reserved64                [2]uint64
	Flags                     uint32
	Reserved                  [3]uint32
}

const fsIocFiemap = 3<<30 | 32<<16 | 'f'<<8 | 11 // _IOWR('f', 11, struct fiemap)

const fiemapBatch = 256

// fiemapFlagSync makes FIEMAP write the file's dirty data first, so that
// the extents reported are those of its current content.
const fiemapFlagSync = 0x1

// FileExtents returns the extents of the open file fd. With sync, the
// file's dirty data is written first (otherwise recently written data shows
// as delayed allocation, or not at all).
func FileExtents(fd int, sync bool) ([]Extent, error) {
	var out []Extent
	buf := make([]byte, int(unsafe.Sizeof(fiemapHeader{}))+fiemapBatch*int(unsafe.Sizeof(fiemapExtent{})))
	start := uint64(0)
	for {
		h := (*fiemapHeader)(unsafe.Pointer(&buf[0]))
		*h = fiemapHeader{Start: start, Length: ^uint64(0) - start, ExtentCount: fiemapBatch}
		if sync {
			h.Flags = fiemapFlagSync
		}
		_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), fsIocFiemap, uintptr(unsafe.Pointer(&buf[0])))
		if e != 0 {
			return nil, e
		}
		if h.MappedExtents == 0 {
			return out, nil
		}
		exts := unsafe.Slice((*fiemapExtent)(unsafe.Pointer(&buf[unsafe.Sizeof(fiemapHeader{})])), h.MappedExtents)
		last := false
		for _, x := range exts {
			out = append(out, Extent{Logical: x.Logical, Physical: x.Physical, Length: x.Length, Flags: x.Flags})
			start = x.Logical + x.Length
			if x.Flags&FiemapExtentLast != 0 {
				last = true
			}
		}
		if last || h.MappedExtents < fiemapBatch {
			return out, nil
		}
	}
}

// Range is a half-open byte range [Start, End) on a device.
type Range struct{ Start, End uint64 }

// RangeSet is a sorted list of disjoint ranges.
type RangeSet []Range

// Normalize sorts and merges overlapping or touching ranges.
func (s RangeSet) Normalize() RangeSet {
	if len(s) == 0 {
		return s
	}
	sort.Slice(s, func(i, j int) bool { return s[i].Start < s[j].Start })
	out := s[:1]
	for _, r := range s[1:] {
		last := &out[len(out)-1]
		if r.Start <= last.End {
			if r.End > last.End {
				last.End = r.End
			}
			continue
		}
		out = append(out, r)
	}
	return out
}

// Size returns the number of bytes covered.
func (s RangeSet) Size() uint64 {
	var n uint64
	for _, r := range s {
		n += r.End - r.Start
	}
	return n
}

// Union returns the ranges in a or b.
func Union(a, b RangeSet) RangeSet {
	out := make(RangeSet, 0, len(a)+len(b))
	out = append(out, a...)
	out = append(out, b...)
	return out.Normalize()
}

// Subtract returns the ranges of a that are not in b (both normalized).
func Subtract(a, b RangeSet) RangeSet {
	var out RangeSet
	j := 0
	for _, r := range a {
		cur := r.Start
		for j < len(b) && b[j].End <= cur {
			j++
		}
		k := j
		for k < len(b) && b[k].Start < r.End {
			if b[k].Start > cur {
				out = append(out, Range{cur, b[k].Start})
			}
			if b[k].End > cur {
				cur = b[k].End
			}
			k++
		}
		if cur < r.End {
			out = append(out, Range{cur, r.End})
		}
	}
	return out
}

// TreeExtents returns the device ranges used by the data of every regular
// file under root (inline and not yet allocated data are left out: they
// belong to one file only and are not shared).
func TreeExtents(ctx context.Context, root string, o WalkOptions) (RangeSet, error) {
	entries, err := Walk(ctx, root, o)
	if err != nil {
		return nil, err
	}
	var set RangeSet
	seen := map[uint64]bool{}
	for i := range entries {
		e := &entries[i]
		if e.Type() != unix.S_IFREG || e.Stat.Size == 0 {
			continue
		}
		if e.Stat.Nlink > 1 {
			if seen[e.Stat.Ino] {
				continue
			}
			seen[e.Stat.Ino] = true
		}
		if i%256 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		p := filepath.Join(root, e.Rel)
		fd, err := unix.Open(p, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NOATIME, 0)
		if errors.Is(err, unix.EPERM) {
			fd, err = unix.Open(p, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		}
		if err != nil {
			if errors.Is(err, unix.ENOENT) {
				continue
			}
			return nil, &os.PathError{Op: "open", Path: p, Err: err}
		}
		exts, err := FileExtents(fd, false)
		unix.Close(fd)
		if err != nil {
			return nil, &os.PathError{Op: "fiemap", Path: p, Err: err}
		}
		for _, x := range exts {
			if x.Flags&(FiemapExtentInline|FiemapExtentDelalloc|FiemapExtentUnknown) != 0 || x.Physical == 0 {
				continue
			}
			set = append(set, Range{x.Physical, x.Physical + x.Length})
		}
		if len(set) > 1<<16 {
			set = set.Normalize()
		}
	}
	return set.Normalize(), nil
}
