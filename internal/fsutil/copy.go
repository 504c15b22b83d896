package fsutil

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// CopyOptions tunes CopyTree and SyncTree.
type CopyOptions struct {
	WalkOptions
	// Clone shares extents with the source (FICLONE) instead of copying
	// bytes; it fails where the filesystem cannot.
	Clone bool
	// Share lets the kernel share extents when it copies (copy_file_range
	// may reflink on one filesystem). A complete copy leaves it false.
	Share bool
	// Workers is the number of files processed at once (default: 2×CPUs).
	Workers int
	// SameFilesystem says source and destination are on one filesystem, so
	// that files sharing all their extents are known equal without reading.
	SameFilesystem bool
	// Progress, when set, is told every so often how many entries of the
	// source are done (SyncTree).
	Progress func(done, total int64)
}

// Stats counts what a copy or sync did.
type Stats struct {
	Entries      int64 // entries walked
	Files        int64 // regular files copied, cloned or updated
	Bytes        int64 // data bytes written (or cloned)
	Removed      int64 // entries removed (sync)
	MetadataOnly int64 // entries whose metadata only was updated (sync)
}

func (s *Stats) add(o *Stats) {
	atomic.AddInt64(&s.Entries, o.Entries)
	atomic.AddInt64(&s.Files, o.Files)
	atomic.AddInt64(&s.Bytes, o.Bytes)
	atomic.AddInt64(&s.Removed, o.Removed)
	atomic.AddInt64(&s.MetadataOnly, o.MetadataOnly)
}

func openSrc(path string) (*os.File, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NOATIME, 0)
	if errors.Is(err, unix.EPERM) {
		fd, err = unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	}
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	return os.NewFile(uintptr(fd), path), nil
}

// CopyTree copies the tree at src to dst, which must not exist yet. It
// returns the entries of src as they were stat'ed before their data was
// copied (the manifest SyncTree takes to bring dst up to date later).
//
// The walk and the copy overlap: the walker makes each directory as it
// meets it and hands the other entries to workers at once.
func CopyTree(ctx context.Context, src, dst string, o CopyOptions) ([]Entry, Stats, error) {
	var st Stats
	var root unix.Stat_t
	if err := unix.Lstat(src, &root); err != nil {
		return nil, st, &os.PathError{Op: "lstat", Path: src, Err: err}
	}
	if root.Mode&unix.S_IFMT != unix.S_IFDIR {
		return nil, st, fmt.Errorf("copy %s: not a directory", src)
	}
	if err := os.Mkdir(dst, 0o700); err != nil {
		return nil, st, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	workers := o.Workers
	if workers <= 0 {
		workers = 2 * runtime.NumCPU()
	}
	type job struct {
		rel  string
		stat unix.Stat_t
	}
	jobs := make(chan job, 4096)
	var wg sync.WaitGroup
	var once sync.Once
	var firstErr error
	fail := func(err error) {
		once.Do(func() { firstErr = err; cancel() })
	}
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				if ctx.Err() != nil {
					continue // drain
				}
				var ls Stats
				e := Entry{Rel: j.rel, Stat: j.stat}
				if err := copyEntry(filepath.Join(src, j.rel), filepath.Join(dst, j.rel), &e, o, &ls); err != nil {
					fail(err)
				}
				st.add(&ls)
			}
		}()
	}
	var entries []Entry
	primary := map[uint64]string{}
	var links []Entry
	werr := WalkFunc(ctx, src, o.WalkOptions, func(e *Entry) error {
		entries = append(entries, *e)
		switch {
		case e.Rel == ".":
		case e.IsDir():
			// Made by the walker, before anything inside it is queued.
			return os.Mkdir(filepath.Join(dst, e.Rel), 0o700)
		case e.Stat.Nlink > 1:
			if _, ok := primary[e.Stat.Ino]; ok {
				links = append(links, *e)
				return nil
			}
			primary[e.Stat.Ino] = e.Rel
			fallthrough
		default:
			select {
			case jobs <- job{e.Rel, e.Stat}:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	})
	close(jobs)
	wg.Wait()
	st.Entries = int64(len(entries))
	if firstErr != nil {
		return nil, st, firstErr
	}
	if werr != nil {
		return nil, st, werr
	}
	// Hard links, once their first path exists.
	for _, e := range links {
		if err := os.Link(filepath.Join(dst, primary[e.Stat.Ino]), filepath.Join(dst, e.Rel)); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue // the primary vanished while we copied
			}
			return nil, st, err
		}
	}
	// Directory metadata last, deepest first, so that creating entries does
	// not change the times we set.
	for i := len(entries) - 1; i >= 0; i-- {
		e := &entries[i]
		if !e.IsDir() {
			continue
		}
		if err := applyMeta(filepath.Join(src, e.Rel), filepath.Join(dst, e.Rel), &e.Stat, true); err != nil {
			return nil, st, err
		}
	}
	return entries, st, nil
}

// copyEntry creates dst as a copy of the non-directory src.
func copyEntry(src, dst string, e *Entry, o CopyOptions, st *Stats) error {
	switch e.Type() {
	case unix.S_IFREG:
		n, err := copyFile(src, dst, o)
		if errors.Is(err, os.ErrNotExist) {
			return nil // removed since the walk
		}
		if err != nil {
			return err
		}
		st.Files++
		st.Bytes += n
		return nil
	case unix.S_IFLNK:
		target, err := os.Readlink(src)
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := os.Symlink(target, dst); err != nil {
			return err
		}
	default:
		if err := unix.Mknod(dst, e.Stat.Mode, int(e.Stat.Rdev)); err != nil {
			return &os.PathError{Op: "mknod", Path: dst, Err: err}
		}
	}
	return applyMeta(src, dst, &e.Stat, false)
}

// copyFile creates dst with src's data and metadata, the metadata of the
// moment the data was taken (not of the walk). It works on file
// descriptors: no path is looked up twice.
func copyFile(src, dst string, o CopyOptions) (int64, error) {
	in, err := openSrc(src)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	var sst unix.Stat_t
	if err := unix.Fstat(int(in.Fd()), &sst); err != nil {
		return 0, err
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return 0, err
	}
	n, err := fillFile(out, in, sst.Size, o)
	if err == nil {
		err = applyMetaFd(in, out, &sst)
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return n, err
}

// applyMetaFd gives the new regular file out the owner, extended
// attributes, mode and times of in (whose stat is st).
func applyMetaFd(in, out *os.File, st *unix.Stat_t) error {
	ofd := int(out.Fd())
	if err := unix.Fchown(ofd, int(st.Uid), int(st.Gid)); err != nil {
		return &os.PathError{Op: "fchown", Path: out.Name(), Err: err}
	}
	xs, err := fdXattrs(int(in.Fd()))
	if err != nil {
		return &os.PathError{Op: "flistxattr", Path: in.Name(), Err: err}
	}
	for _, x := range xs {
		if err := unix.Fsetxattr(ofd, x.Name, x.Value, 0); err != nil {
			return &xattrError{path: out.Name(), name: x.Name, err: err}
		}
	}
	if err := unix.Fchmod(ofd, st.Mode&0o7777); err != nil {
		return &os.PathError{Op: "fchmod", Path: out.Name(), Err: err}
	}
	if err := futimens(ofd, st.Atim, st.Mtim); err != nil {
		return &os.PathError{Op: "futimens", Path: out.Name(), Err: err}
	}
	return nil
}

// futimens sets the access and modification times of an open file
// (utimensat with a NULL path), to the nanosecond.
func futimens(fd int, atime, mtime unix.Timespec) error {
	ts := [2]unix.Timespec{atime, mtime}
	_, _, e := unix.Syscall6(unix.SYS_UTIMENSAT, uintptr(fd), 0, uintptr(unsafe.Pointer(&ts[0])), 0, 0, 0)
	if e != 0 {
		return e
	}
	return nil
}

func fillFile(out, in *os.File, size int64, o CopyOptions) (int64, error) {
	if o.Clone {
		if size == 0 {
			return 0, nil
		}
		if err := Clone(out, in); err != nil {
			return 0, fmt.Errorf("clone %s: %w", in.Name(), err)
		}
		return size, nil
	}
	return CopyData(out, in, size, o.Share)
}

// applyMeta gives dst the owner, mode, extended attributes and times of
// src (whose stat is st).
func applyMeta(src, dst string, st *unix.Stat_t, isDir bool) error {
	isLink := st.Mode&unix.S_IFMT == unix.S_IFLNK
	if err := unix.Lchown(dst, int(st.Uid), int(st.Gid)); err != nil {
		return &os.PathError{Op: "lchown", Path: dst, Err: err}
	}
	xs, err := ListXattrs(src)
	if err != nil && !errors.Is(err, unix.ENOENT) {
		return &os.PathError{Op: "listxattr", Path: src, Err: err}
	}
	if err := SetXattrs(dst, xs, isLink); err != nil {
		return err
	}
	if !isLink {
		if err := unix.Fchmodat(unix.AT_FDCWD, dst, st.Mode&0o7777, 0); err != nil {
			return &os.PathError{Op: "chmod", Path: dst, Err: err}
		}
	}
	ts := []unix.Timespec{st.Atim, st.Mtim}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, dst, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return &os.PathError{Op: "utimes", Path: dst, Err: err}
	}
	return nil
}
