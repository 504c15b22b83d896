package fsutil

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

var tmpSeq atomic.Uint64

func tmpName(dst string) string {
	return filepath.Join(filepath.Dir(dst), ".vss-tmp-"+strconv.Itoa(os.Getpid())+"-"+strconv.FormatUint(tmpSeq.Add(1), 10))
}

// SyncTree makes the tree at dst identical to the tree at src, touching only
// what differs, and returns the new entries of src.
//
// With prev (the entries src had when dst last became identical to it), an
// entry whose inode, size, change and modification times are unchanged and
// that was not racy is trusted to be unchanged, so only changed entries are
// read: this is how the copy provider catches up inside the hold. Without
// prev, every regular file is compared by content (revert).
func SyncTree(ctx context.Context, src, dst string, prev []Entry, o CopyOptions) ([]Entry, Stats, error) {
	var st Stats
	entries, err := Walk(ctx, src, o.WalkOptions)
	if err != nil {
		return nil, st, err
	}
	st.Entries = int64(len(entries))
	if !entries[0].IsDir() {
		return nil, st, fmt.Errorf("sync %s: not a directory", src)
	}
	var before map[string]*Entry
	if prev != nil {
		before = make(map[string]*Entry, len(prev))
		for i := range prev {
			before[prev[i].Rel] = &prev[i]
		}
	}
	inSrc := make(map[string]bool, len(entries))
	for i := range entries {
		inSrc[entries[i].Rel] = true
	}
	// Remove what src no longer has, so that new entries find their names free.
	dstEntries, err := Walk(ctx, dst, o.WalkOptions)
	if err != nil {
		return nil, st, err
	}
	for i := range dstEntries {
		d := &dstEntries[i]
		if inSrc[d.Rel] || !inSrc[filepath.Dir(d.Rel)] {
			continue // kept, or below a directory removed already
		}
		if err := os.RemoveAll(filepath.Join(dst, d.Rel)); err != nil {
			return nil, st, err
		}
		st.Removed++
	}
	primary := map[uint64]string{} // src inode → first dst path of the group
	dstIno := map[string]uint64{}
	for i := range entries {
		if i%64 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, st, err
			}
			if o.Progress != nil {
				o.Progress(int64(i), int64(len(entries)))
			}
		}
		e := &entries[i]
		sp, dp := filepath.Join(src, e.Rel), filepath.Join(dst, e.Rel)
		var p *Entry
		if before != nil {
			p = before[e.Rel]
		}
		var dstSt unix.Stat_t
		dstErr := unix.Lstat(dp, &dstSt)
		if dstErr != nil && !errors.Is(dstErr, unix.ENOENT) {
			return nil, st, &os.PathError{Op: "lstat", Path: dp, Err: dstErr}
		}
		exists := dstErr == nil
		if exists && dstSt.Mode&unix.S_IFMT != e.Type() {
			if err := os.RemoveAll(dp); err != nil {
				return nil, st, err
			}
			st.Removed++
			exists = false
		}
		if e.IsDir() {
			if !exists {
				if err := os.Mkdir(dp, 0o700); err != nil {
					return nil, st, err
				}
			}
			continue // metadata after the contents
		}
		// Hard links: later paths of a group link to the first one.
		if e.Stat.Nlink > 1 {
			if first, ok := primary[e.Stat.Ino]; ok {
				if exists && dstSt.Ino == dstIno[first] {
					continue
				}
				tmp := tmpName(dp)
				if err := os.Link(first, tmp); err != nil {
					return nil, st, err
				}
				if err := os.Rename(tmp, dp); err != nil {
					os.Remove(tmp)
					return nil, st, err
				}
				continue
			}
		}
		unchanged := exists && p != nil && p.Type() == e.Type() && p.Stat.Ino == e.Stat.Ino && p.Stat.Size == e.Stat.Size &&
			p.Stat.Mtim == e.Stat.Mtim && p.Stat.Ctim == e.Stat.Ctim && p.Stat.Nlink == e.Stat.Nlink && !p.Racy()
		if !unchanged {
			var ls Stats
			if err := syncEntry(ctx, sp, dp, e, exists, &dstSt, before == nil, o, &ls); err != nil {
				if errors.Is(err, os.ErrNotExist) {
					continue // gone from src since the walk
				}
				return nil, st, err
			}
			st.add(&ls)
		}
		if e.Stat.Nlink > 1 {
			var now unix.Stat_t
			if err := unix.Lstat(dp, &now); err == nil {
				primary[e.Stat.Ino] = dp
				dstIno[dp] = now.Ino
			}
		}
	}
	// Directory metadata, deepest first.
	for i := len(entries) - 1; i >= 0; i-- {
		e := &entries[i]
		if !e.IsDir() {
			continue
		}
		if err := syncMeta(filepath.Join(src, e.Rel), filepath.Join(dst, e.Rel), &e.Stat, &st); err != nil {
			return nil, st, err
		}
	}
	if o.Progress != nil {
		o.Progress(int64(len(entries)), int64(len(entries)))
	}
	return entries, st, nil
}

// syncEntry brings the non-directory dp up to date with sp.
func syncEntry(ctx context.Context, sp, dp string, e *Entry, exists bool, dstSt *unix.Stat_t, compare bool, o CopyOptions, st *Stats) error {
	switch e.Type() {
	case unix.S_IFREG:
		in, err := openSrc(sp)
		if err != nil {
			return err
		}
		defer in.Close()
		var sst unix.Stat_t
		if err := unix.Fstat(int(in.Fd()), &sst); err != nil {
			return err
		}
		if exists && dstSt.Nlink == 1 {
			out, err := os.OpenFile(dp, os.O_RDWR, 0)
			if err != nil {
				return err
			}
			same := false
			if compare {
				same, err = SameData(in, out, o.SameFilesystem)
				if err != nil {
					out.Close()
					return err
				}
			}
			if !same {
				if o.Clone {
					// Replace by a fresh clone below.
					out.Close()
				} else {
					n, err := UpdateData(ctx, out, in, sst.Size)
					if cerr := out.Close(); err == nil {
						err = cerr
					}
					if err != nil {
						return err
					}
					st.Files++
					st.Bytes += n
					return syncMeta(sp, dp, &sst, st)
				}
			} else {
				out.Close()
				return syncMeta(sp, dp, &sst, st)
			}
		}
		tmp := tmpName(dp)
		out, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return err
		}
		n, err := fillFile(out, in, sst.Size, o)
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = applyMeta(sp, tmp, &sst, false)
		}
		if err == nil {
			err = os.Rename(tmp, dp)
		}
		if err != nil {
			os.Remove(tmp)
			return err
		}
		st.Files++
		st.Bytes += n
		return nil
	case unix.S_IFLNK:
		target, err := os.Readlink(sp)
		if err != nil {
			return err
		}
		if exists {
			if cur, err := os.Readlink(dp); err == nil && cur == target {
				return syncMeta(sp, dp, &e.Stat, st)
			}
		}
		tmp := tmpName(dp)
		if err := os.Symlink(target, tmp); err != nil {
			return err
		}
		if err := applyMeta(sp, tmp, &e.Stat, false); err != nil {
			os.Remove(tmp)
			return err
		}
		return os.Rename(tmp, dp)
	default:
		if exists && dstSt.Rdev == e.Stat.Rdev {
			return syncMeta(sp, dp, &e.Stat, st)
		}
		tmp := tmpName(dp)
		if err := unix.Mknod(tmp, e.Stat.Mode, int(e.Stat.Rdev)); err != nil {
			return &os.PathError{Op: "mknod", Path: tmp, Err: err}
		}
		if err := applyMeta(sp, tmp, &e.Stat, false); err != nil {
			os.Remove(tmp)
			return err
		}
		return os.Rename(tmp, dp)
	}
}

// syncMeta gives dp the metadata of sp where it differs.
func syncMeta(sp, dp string, sst *unix.Stat_t, st *Stats) error {
	var d unix.Stat_t
	if err := unix.Lstat(dp, &d); err != nil {
		return &os.PathError{Op: "lstat", Path: dp, Err: err}
	}
	sx, err := ListXattrs(sp)
	if err != nil {
		return err
	}
	dx, err := ListXattrs(dp)
	if err != nil {
		return err
	}
	isDir := sst.Mode&unix.S_IFMT == unix.S_IFDIR
	same := d.Uid == sst.Uid && d.Gid == sst.Gid && d.Mode == sst.Mode && d.Mtim == sst.Mtim && xattrsEqual(sx, dx)
	if same {
		return nil
	}
	st.MetadataOnly++
	return applyMeta(sp, dp, sst, isDir)
}

func xattrsEqual(a, b []Xattr) bool {
	if len(a) != len(b) {
		return false
	}
	sort.Slice(a, func(i, j int) bool { return a[i].Name < a[j].Name })
	sort.Slice(b, func(i, j int) bool { return b[i].Name < b[j].Name })
	for i := range a {
		if a[i].Name != b[i].Name || string(a[i].Value) != string(b[i].Value) {
			return false
		}
	}
	return true
}
