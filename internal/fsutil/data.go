package fsutil

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

const chunkSize = 1 << 20

var bufPool = sync.Pool{New: func() any { b := make([]byte, chunkSize); return &b }}

// segment is a byte range [Off, Off+Len) of a file.
type segment struct{ Off, Len int64 }

// dataSegments returns the ranges of fd that hold data (everything outside
// them is a hole), using SEEK_DATA/SEEK_HOLE. A filesystem without hole
// reporting gives one segment for the whole file.
func dataSegments(fd int, size int64) ([]segment, error) {
	var segs []segment
	off := int64(0)
	for off < size {
		d, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if err != nil {
			if errors.Is(err, unix.ENXIO) {
				break // only a hole from off to the end
			}
			if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP) {
				return []segment{{0, size}}, nil
			}
			return nil, err
		}
		if d >= size {
			break
		}
		h, err := unix.Seek(fd, d, unix.SEEK_HOLE)
		if err != nil {
			if errors.Is(err, unix.ENXIO) {
				break // the file shrank under us
			}
			return nil, err
		}
		if h > size {
			h = size
		}
		segs = append(segs, segment{d, h - d})
		off = h
	}
	return segs, nil
}

// copyRange copies n bytes at off from src to dst at the same offset.
// share=false never lets the kernel share extents (copy_file_range can
// reflink on the same filesystem), so the copy is independent.
func copyRange(dst, src *os.File, off, n int64, share bool) error {
	if share {
		roff, woff := off, off
		for n > 0 {
			c, err := unix.CopyFileRange(int(src.Fd()), &roff, int(dst.Fd()), &woff, int(min(n, 1<<30)), 0)
			if err != nil {
				if errors.Is(err, unix.EXDEV) || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) ||
					errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EBADF) {
					return copyRangeRW(dst, src, roff, n)
				}
				return err
			}
			if c == 0 {
				return nil // the source shrank; the caller truncates to the size it saw
			}
			n -= int64(c)
		}
		return nil
	}
	return copyRangeRW(dst, src, off, n)
}

func copyRangeRW(dst, src *os.File, off, n int64) error {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	for n > 0 {
		want := min(n, int64(len(buf)))
		r, err := src.ReadAt(buf[:want], off)
		if r > 0 {
			if _, werr := dst.WriteAt(buf[:r], off); werr != nil {
				return werr
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil // the source shrank; the caller truncates to the size it saw
			}
			return err
		}
		off += int64(r)
		n -= int64(r)
	}
	return nil
}

// CopyData copies the content of src to the empty file dst, keeping holes,
// and sets dst's size to size. It returns the bytes written.
func CopyData(dst, src *os.File, size int64, share bool) (int64, error) {
	segs, err := dataSegments(int(src.Fd()), size)
	if err != nil {
		return 0, err
	}
	var n int64
	for _, s := range segs {
		if err := copyRange(dst, src, s.Off, s.Len, share); err != nil {
			return n, err
		}
		n += s.Len
	}
	if err := dst.Truncate(size); err != nil {
		return n, err
	}
	return n, nil
}

// Clone makes dst share all of src's extents (FICLONE). dst must be on the
// same filesystem and that filesystem must support reflinks.
func Clone(dst, src *os.File) error {
	return unix.IoctlFileClone(int(dst.Fd()), int(src.Fd()))
}

// UpdateData makes the content of dst equal to that of src, writing only the
// chunks that differ and punching holes where src has holes. It returns the
// bytes written. It is how a copy is brought up to date in place.
func UpdateData(ctx context.Context, dst, src *os.File, size int64) (int64, error) {
	segs, err := dataSegments(int(src.Fd()), size)
	if err != nil {
		return 0, err
	}
	var dstSize int64
	if fi, err := dst.Stat(); err == nil {
		dstSize = fi.Size()
	}
	sb := bufPool.Get().(*[]byte)
	db := bufPool.Get().(*[]byte)
	defer bufPool.Put(sb)
	defer bufPool.Put(db)
	var written int64
	off := int64(0)
	punch := func(from, to int64) error {
		if to > dstSize {
			to = dstSize
		}
		if to <= from {
			return nil
		}
		// Only punch where dst has data.
		dsegs, err := dataSegments(int(dst.Fd()), to)
		if err != nil {
			return err
		}
		for _, d := range dsegs {
			a, b := max(d.Off, from), min(d.Off+d.Len, to)
			if a < b {
				if err := unix.Fallocate(int(dst.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, a, b-a); err != nil {
					// Without hole punching, write zeros.
					if err := writeZeros(dst, a, b-a); err != nil {
						return err
					}
				}
				written += b - a
			}
		}
		return nil
	}
	for _, s := range segs {
		if err := ctx.Err(); err != nil {
			return written, err
		}
		if err := punch(off, s.Off); err != nil {
			return written, err
		}
		for p := s.Off; p < s.Off+s.Len; {
			want := min(s.Off+s.Len-p, int64(chunkSize))
			a, err := src.ReadAt((*sb)[:want], p)
			if err != nil && !errors.Is(err, io.EOF) {
				return written, err
			}
			if a == 0 {
				break
			}
			b, err := dst.ReadAt((*db)[:a], p)
			if err != nil && !errors.Is(err, io.EOF) {
				return written, err
			}
			if b != a || !bytes.Equal((*sb)[:a], (*db)[:a]) {
				n, err := writeDiff(dst, (*sb)[:a], (*db)[:b], p)
				written += n
				if err != nil {
					return written, err
				}
			}
			p += int64(a)
		}
		off = s.Off + s.Len
	}
	if err := punch(off, size); err != nil {
		return written, err
	}
	if dstSize != size {
		if err := dst.Truncate(size); err != nil {
			return written, err
		}
	}
	return written, nil
}

// diffBlock is the granularity at which UpdateData writes what differs.
const diffBlock = 4096

// writeDiff writes to f at pos the blocks of want that differ from have
// (what f holds there now, possibly shorter), in runs of adjacent blocks.
func writeDiff(f *os.File, want, have []byte, pos int64) (int64, error) {
	var written int64
	runStart := -1
	flush := func(end int) error {
		if runStart < 0 {
			return nil
		}
		if _, err := f.WriteAt(want[runStart:end], pos+int64(runStart)); err != nil {
			return err
		}
		written += int64(end - runStart)
		runStart = -1
		return nil
	}
	for off := 0; off < len(want); off += diffBlock {
		end := min(off+diffBlock, len(want))
		same := end <= len(have) && bytes.Equal(want[off:end], have[off:end])
		if same {
			if err := flush(off); err != nil {
				return written, err
			}
		} else if runStart < 0 {
			runStart = off
		}
	}
	return written, flush(len(want))
}

func writeZeros(f *os.File, off, n int64) error {
	zero := make([]byte, min(n, chunkSize))
	for n > 0 {
		w := min(n, int64(len(zero)))
		if _, err := f.WriteAt(zero[:w], off); err != nil {
			return err
		}
		off += w
		n -= w
	}
	return nil
}

// SameData reports whether two open files have the same bytes. When the
// files are on one filesystem (sameFS), files whose extents are all shared
// (FIEMAP reports the same physical ranges) are equal without reading them.
func SameData(a, b *os.File, sameFS bool) (bool, error) {
	fa, err := a.Stat()
	if err != nil {
		return false, err
	}
	fb, err := b.Stat()
	if err != nil {
		return false, err
	}
	if fa.Size() != fb.Size() {
		return false, nil
	}
	if !sameFS {
		// Physical addresses of two filesystems say nothing of each other.
	} else if ea, err := FileExtents(int(a.Fd()), true); err == nil && len(ea) > 0 {
		if eb, err := FileExtents(int(b.Fd()), true); err == nil && sameExtents(ea, eb) {
			return true, nil
		}
	}
	ab := bufPool.Get().(*[]byte)
	bb := bufPool.Get().(*[]byte)
	defer bufPool.Put(ab)
	defer bufPool.Put(bb)
	for off := int64(0); off < fa.Size(); {
		n, err := io.ReadFull(io.NewSectionReader(a, off, chunkSize), *ab)
		if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
			return false, err
		}
		m, err := io.ReadFull(io.NewSectionReader(b, off, chunkSize), (*bb)[:n])
		if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
			return false, err
		}
		if n != m || !bytes.Equal((*ab)[:n], (*bb)[:m]) {
			return false, nil
		}
		if n == 0 {
			break
		}
		off += int64(n)
	}
	return true, nil
}

func sameExtents(a, b []Extent) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Logical != b[i].Logical || a[i].Physical != b[i].Physical || a[i].Length != b[i].Length ||
			a[i].Flags&(FiemapExtentDelalloc|FiemapExtentUnknown|FiemapExtentInline) != 0 || a[i].Physical == 0 {
			return false
		}
	}
	return true
}
