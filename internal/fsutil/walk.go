// Package fsutil copies, synchronises and compares directory trees with all
// of their metadata (owners, modes, times, extended attributes and ACLs,
// symbolic links, hard links, device nodes, sparse files), optionally
// sharing extents (FICLONE) instead of copying bytes. The file-level
// providers and revert are built on it.
package fsutil

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sort"

	"golang.org/x/sys/unix"
)

// Entry is one item of a tree, with the stat taken when it was walked.
type Entry struct {
	Rel  string // path relative to the root; "." for the root itself
	Stat unix.Stat_t
	// StatTime is the coarse real-time clock read just before the stat; a
	// change time at or after StatTime-Granularity makes the entry "racy":
	// a later change within the same clock tick would not be visible.
	StatTime unix.Timespec
	// SkipContents marks a directory whose contents are not part of the
	// tree (a mount point below the root).
	SkipContents bool
}

// Type returns the file type bits of the entry.
func (e *Entry) Type() uint32 { return e.Stat.Mode & unix.S_IFMT }

// IsDir reports whether the entry is a directory.
func (e *Entry) IsDir() bool { return e.Type() == unix.S_IFDIR }

// WalkOptions filters a walk.
type WalkOptions struct {
	// Exclude leaves out an entry (and, for a directory, all below it).
	Exclude func(rel string) bool
	// SkipContents keeps a directory but not what is below it.
	SkipContents func(rel string) bool
}

// Walk lists the tree under root in pre-order (a directory before its
// contents, names sorted). It does not follow symbolic links.
func Walk(ctx context.Context, root string, o WalkOptions) ([]Entry, error) {
	var out []Entry
	err := WalkFunc(ctx, root, o, func(e *Entry) error {
		out = append(out, *e)
		return nil
	})
	return out, err
}

// WalkFunc calls fn for every entry of the tree under root in pre-order,
// the root (".") first. An error from fn stops the walk.
func WalkFunc(ctx context.Context, root string, o WalkOptions, fn func(*Entry) error) error {
	e := Entry{Rel: ".", StatTime: coarseNow()}
	if err := unix.Lstat(root, &e.Stat); err != nil {
		return &os.PathError{Op: "lstat", Path: root, Err: err}
	}
	if err := fn(&e); err != nil {
		return err
	}
	if !e.IsDir() {
		return nil
	}
	return walkDir(ctx, root, ".", o, fn)
}

func walkDir(ctx context.Context, root, rel string, o WalkOptions, fn func(*Entry) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	dirPath := filepath.Join(root, rel)
	fd, err := unix.Open(dirPath, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: dirPath, Err: err}
	}
	f := os.NewFile(uintptr(fd), dirPath)
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil && !errors.Is(err, io.EOF) {
		return &os.PathError{Op: "readdir", Path: dirPath, Err: err}
	}
	sort.Strings(names)
	for _, name := range names {
		crel := name
		if rel != "." {
			crel = rel + "/" + name
		}
		if o.Exclude != nil && o.Exclude(crel) {
			continue
		}
		e := Entry{Rel: crel, StatTime: coarseNow()}
		if err := unix.Fstatat(fd, name, &e.Stat, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			if errors.Is(err, unix.ENOENT) {
				continue // removed while we walked
			}
			return &os.PathError{Op: "lstat", Path: filepath.Join(dirPath, name), Err: err}
		}
		if e.IsDir() && o.SkipContents != nil && o.SkipContents(crel) {
			e.SkipContents = true
		}
		if err := fn(&e); err != nil {
			return err
		}
		if e.IsDir() && !e.SkipContents {
			if err := walkDir(ctx, root, crel, o, fn); err != nil {
				if errors.Is(err, unix.ENOENT) {
					continue
				}
				return err
			}
		}
	}
	return nil
}

// Granularity is how far back from the stat time a change time still counts
// as racy. Kernel file times come from a clock that ticks at most every
// 10 ms (HZ=100).
const Granularity = 20_000_000 // ns

func coarseNow() unix.Timespec {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_REALTIME_COARSE, &ts)
	return ts
}

func tsNano(ts unix.Timespec) int64 { return ts.Sec*1_000_000_000 + ts.Nsec }

// Racy reports whether the entry changed so shortly before it was stat'ed
// that a further change in the same clock tick would go unseen.
func (e *Entry) Racy() bool {
	return tsNano(e.Stat.Ctim) >= tsNano(e.StatTime)-Granularity
}
