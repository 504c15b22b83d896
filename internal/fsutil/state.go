package fsutil

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// FileState is what a tree comparison looks at for one entry: everything a
// user can observe except inode numbers, change and access times, and the
// size of directories.
type FileState struct {
	Type     uint32
	Mode     uint32 // permission bits, with setuid, setgid and sticky
	Uid, Gid uint32
	Size     int64
	Mtime    int64 // ns
	Target   string
	Rdev     uint64
	Xattrs   string // name=hex;… sorted
	Hash     string // sha256 of the data
	Segments string // data ranges of a sparse file, "" when not sparse
	LinkTo   string // the first path of its hard-link group, if any
}

// TreeState maps the relative paths of a tree to their state.
type TreeState map[string]FileState

// StateOf captures the state of the tree at root.
func StateOf(ctx context.Context, root string, o WalkOptions) (TreeState, error) {
	entries, err := Walk(ctx, root, o)
	if err != nil {
		return nil, err
	}
	ts := make(TreeState, len(entries))
	first := map[uint64]string{}
	for i := range entries {
		e := &entries[i]
		p := filepath.Join(root, e.Rel)
		fs := FileState{Type: e.Type(), Mode: e.Stat.Mode & 0o7777, Uid: e.Stat.Uid, Gid: e.Stat.Gid, Mtime: tsNano(e.Stat.Mtim)}
		if e.Type() != unix.S_IFDIR {
			fs.Size = e.Stat.Size
		}
		if e.Type() != unix.S_IFDIR && e.Stat.Nlink > 1 {
			if f, ok := first[e.Stat.Ino]; ok {
				fs.LinkTo = f
			} else {
				first[e.Stat.Ino] = e.Rel
			}
		}
		xs, err := ListXattrs(p)
		if err != nil {
			return nil, fmt.Errorf("xattrs of %s: %w", p, err)
		}
		var xb strings.Builder
		for _, x := range xs {
			fmt.Fprintf(&xb, "%s=%s;", x.Name, hex.EncodeToString(x.Value))
		}
		fs.Xattrs = xb.String()
		switch e.Type() {
		case unix.S_IFLNK:
			fs.Target, err = os.Readlink(p)
			if err != nil {
				return nil, err
			}
		case unix.S_IFCHR, unix.S_IFBLK:
			fs.Rdev = e.Stat.Rdev
		case unix.S_IFREG:
			if err := hashFile(p, &fs); err != nil {
				return nil, err
			}
		}
		ts[e.Rel] = fs
	}
	return ts, nil
}

func hashFile(p string, fs *FileState) error {
	f, err := openSrc(p)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return err
	}
	fs.Hash = hex.EncodeToString(h.Sum(nil))
	segs, err := dataSegments(int(f.Fd()), fs.Size)
	if err != nil {
		return err
	}
	if !(len(segs) == 1 && segs[0].Off == 0 && segs[0].Len == fs.Size) && fs.Size > 0 {
		var b strings.Builder
		for _, s := range segs {
			fmt.Fprintf(&b, "%d+%d,", s.Off, s.Len)
		}
		fs.Segments = b.String()
	}
	return nil
}

// Diff lists the differences between two tree states, one line each,
// sorted; nil when they are equal.
func Diff(want, got TreeState) []string {
	var out []string
	for k, w := range want {
		g, ok := got[k]
		if !ok {
			out = append(out, "missing: "+k)
			continue
		}
		if w != g {
			out = append(out, fmt.Sprintf("differs: %s: want %+v, got %+v", k, w, g))
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			out = append(out, "extra: "+k)
		}
	}
	sort.Strings(out)
	return out
}
