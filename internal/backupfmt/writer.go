package backupfmt

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/linuxvss/vss/internal/fsutil"
)

// DefaultChunkSize is the block size of new targets. 64 KiB keeps the
// manifest near 0.1% of the data (one SHA-256 per block) while a change of
// a few database pages stores little more than those pages.
const DefaultChunkSize = 64 << 10

// Options describe the version Create makes.
type Options struct {
	Kind Kind
	// Base is the version an incremental or differential version is
	// compared with. Empty: the newest complete version (incremental) or the
	// newest complete full version (differential).
	Base string
	// SetID is the shadow copy set the data is read from (recorded only).
	SetID string
	// ChunkSize is the block size, a multiple of 4096; 0 means the base's,
	// or DefaultChunkSize. It must equal the base's.
	ChunkSize int64
	// HashAll reads and hashes every file, also those whose size and
	// modification time match the base.
	HashAll bool
	// Keep, if not nil, chooses what AddTree records: it is given the
	// path in the version of each entry below the tree's root (the root
	// itself is always kept) and whether it is a directory; an entry it
	// refuses is left out, a refused directory with everything below it.
	Keep func(p string, dir bool) bool
}

// Progress is reported while a tree is backed up, restored or verified.
type Progress struct {
	File       string // the entry being processed
	BytesDone  int64
	BytesTotal int64
	FilesDone  int64
	FilesTotal int64
}

// Stats counts what a Writer did.
type Stats struct {
	Files       int64 // entries recorded
	BytesRead   int64 // file bytes read from the source
	BytesStored int64 // bytes appended to data files
	BytesReused int64 // file bytes recorded as references to older versions
}

// Writer makes one version. It writes into DIR/.<id>.partial and renames
// that to DIR/<id> in Commit.
type Writer struct {
	dir, id, partial string
	o                Options
	m                Manifest
	baseFiles        map[string]*File
	baseBlocks       map[string][]block // path -> resolved blocks of the base
	byHash           map[string]block   // sha256 -> a block of the base holding it
	ranges           map[string][][2]int64
	seen             map[string]bool
	stats            Stats
	closed           bool
	lock             *os.File // holds the target's lock until Commit or Abort
	fsyncs           *syncer  // the data files being fsynced
	// syncfs says that the version's filesystem makes every file durable
	// with one syncfs and reports every writeback error since the lock
	// file was opened: Commit syncs the data files with one syncfs of it
	// instead of one fsync each.
	syncfs bool
	buf    []byte        // the read buffer of addFile
	bw     *bufio.Writer // the data file writer of addFile
}

// LockName is the file of a backup target a backup holds locked (flock)
// while it makes a version.
const LockName = ".lock"

// ErrTargetBusy is returned by Create while another backup writes to the
// same target.
var ErrTargetBusy = errors.New("another backup is writing to this backup target")

// lockTarget takes the target's lock, without waiting.
func lockTarget(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, LockName), os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock backup target %s: %w", dir, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("backup target %s: %w", dir, ErrTargetBusy)
		}
		return nil, fmt.Errorf("lock backup target %s: %w", dir, err)
	}
	return f, nil
}

// removePartials removes the partial versions of dir (.ID.partial).
func removePartials(dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("list backup target %s: %w", dir, err)
	}
	for _, e := range ents {
		n := e.Name()
		if !e.IsDir() || !strings.HasPrefix(n, ".") || !strings.HasSuffix(n, ".partial") {
			continue
		}
		if _, err := ParseVersionID(strings.TrimSuffix(n[1:], ".partial")); err != nil {
			continue
		}
		if err := os.RemoveAll(filepath.Join(dir, n)); err != nil {
			return fmt.Errorf("remove the partial version %s left by an interrupted backup: %w", n, err)
		}
	}
	return nil
}

// unlock releases the target's lock.
func (w *Writer) unlock() {
	if w.lock != nil {
		w.lock.Close()
		w.lock = nil
	}
}

// Create starts a new version in the backup target dir (made if missing).
func Create(dir string, o Options) (*Writer, error) {
	if !o.Kind.valid() {
		return nil, fmt.Errorf("create version in %s: unknown kind %q", dir, o.Kind)
	}
	if !o.Kind.hasBase() && o.Base != "" {
		return nil, fmt.Errorf("create version in %s: a %s version has no base", dir, o.Kind)
	}
	if o.ChunkSize < 0 || o.ChunkSize%4096 != 0 || o.ChunkSize > MaxChunkSize {
		return nil, fmt.Errorf("create version in %s: chunk size %d is not a multiple of 4096 up to %d", dir, o.ChunkSize, MaxChunkSize)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create backup target: %w", err)
	}
	lock, err := lockTarget(dir)
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			lock.Close()
		}
	}()
	// Under the lock no other backup runs here: a partial version is what
	// an interrupted backup left, and goes.
	if err := removePartials(dir); err != nil {
		return nil, err
	}
	t := &Target{dir: dir}
	w := &Writer{dir: dir, o: o, ranges: map[string][][2]int64{}, seen: map[string]bool{}, lock: lock}
	if o.Kind.hasBase() {
		base := o.Base
		if base == "" {
			vs, err := t.Versions()
			if err != nil {
				return nil, err
			}
			if base = BaseOf(o.Kind, vs); base == "" {
				return nil, fmt.Errorf("create %s version in %s: no complete version to use as its base", o.Kind, dir)
			}
		}
		bm, err := t.manifest(base)
		if err != nil {
			return nil, fmt.Errorf("create %s version: base: %w", o.Kind, err)
		}
		if o.ChunkSize == 0 {
			o.ChunkSize = bm.ChunkSize
		}
		if o.ChunkSize != bm.ChunkSize {
			return nil, fmt.Errorf("create %s version in %s: chunk size %d differs from the base's %d", o.Kind, dir, o.ChunkSize, bm.ChunkSize)
		}
		w.indexBase(bm)
		o.Base = base
	}
	if o.ChunkSize == 0 {
		o.ChunkSize = DefaultChunkSize
	}
	w.o = o
	id, err := newID(dir)
	if err != nil {
		return nil, err
	}
	if o.Base != "" && o.Base >= id {
		return nil, fmt.Errorf("create version in %s: base %s is not older than the new version %s", dir, o.Base, id)
	}
	w.id = id
	w.partial = filepath.Join(dir, "."+id+".partial")
	if err := os.Mkdir(w.partial, 0o700); err != nil {
		return nil, fmt.Errorf("create version: %w", err)
	}
	w.syncfs = syncfsSyncs(w.partial)
	created, _ := ParseVersionID(id)
	ok = true
	w.m = Manifest{Format: FormatVersion, Version: id, Kind: o.Kind, Base: o.Base, Created: created,
		SetID: o.SetID, ChunkSize: o.ChunkSize}
	return w, nil
}

// newID returns a version id for now, later than every name in dir
// (complete or partial), so that ids sort in the order versions were made.
func newID(dir string) (string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return "", fmt.Errorf("list backup target %s: %w", dir, err)
	}
	now := time.Now().UTC().Truncate(time.Millisecond)
	for _, e := range ents {
		n := strings.TrimSuffix(strings.TrimPrefix(e.Name(), "."), ".partial")
		if t, err := ParseVersionID(n); err == nil && !t.Before(now) {
			now = t.Add(time.Millisecond)
		}
	}
	return now.Format(versionLayout), nil
}

// ID returns the id of the version being made.
func (w *Writer) ID() string { return w.id }

// Stats returns what the writer did so far.
func (w *Writer) Stats() Stats { return w.stats }

// indexBase makes the lookups of the base manifest: its files by path, its
// blocks resolved to the data files that hold them, and a hash index.
func (w *Writer) indexBase(bm *Manifest) {
	w.baseFiles = map[string]*File{}
	w.baseBlocks = map[string][]block{}
	w.byHash = map[string]block{}
	for i := range bm.Files {
		f := &bm.Files[i]
		w.baseFiles[f.Path] = f
		if f.Type != TypeFile {
			continue
		}
		bs := f.blocks(bm.ChunkSize, bm.Version)
		w.baseBlocks[f.Path] = bs
		for _, b := range bs {
			if _, ok := w.byHash[b.sum]; !ok {
				w.byHash[b.sum] = b
			}
		}
	}
	// A hard link of the base has the data of its first name.
	for i := range bm.Files {
		f := &bm.Files[i]
		if f.Type == TypeHardlink {
			w.baseFiles[f.Path] = w.baseFiles[f.Link]
			w.baseBlocks[f.Path] = w.baseBlocks[f.Link]
		}
	}
}

// AddFileRanges says that of the file rel (a path of the version, as
// AddTree records it) only the byte ranges given as [offset, length] have
// changed since the base (a writer's partial files). When AddTree meets the
// file, it reads and stores only the blocks those ranges touch, and blocks
// the base does not have; the others refer to the base without being read.
// It must be called before the AddTree that covers rel.
func (w *Writer) AddFileRanges(rel string, ranges [][2]int64) error {
	if !validRel(rel) || rel == "." {
		return fmt.Errorf("file ranges: bad path %q", rel)
	}
	if !w.o.Kind.hasBase() {
		return fmt.Errorf("file ranges for %s: a %s version stores whole files", rel, w.o.Kind)
	}
	for _, r := range ranges {
		if r[0] < 0 || r[1] < 0 {
			return fmt.Errorf("file ranges for %s: bad range %v", rel, r)
		}
	}
	w.ranges[rel] = append(w.ranges[rel], ranges...)
	return nil
}

// AddMetadata stores a metadata document with the version: name is
// "bcd.xml" (the Backup Components Document) or "writers/NAME" (a Writer
// Metadata Document).
func (w *Writer) AddMetadata(name string, b []byte) error {
	if w.closed {
		return fmt.Errorf("add metadata %s: version %s already committed or aborted", name, w.id)
	}
	if !validMetaName(name) {
		return fmt.Errorf("add metadata %q: the name must be %s or %s/NAME", name, BCDName, WritersDir)
	}
	for _, mf := range w.m.Metadata {
		if mf.Name == name {
			return fmt.Errorf("add metadata %s: already added", name)
		}
	}
	p := filepath.Join(w.partial, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return fmt.Errorf("add metadata %s: %w", name, err)
	}
	if err := writeFileSync(p, b); err != nil {
		return fmt.Errorf("add metadata %s: %w", name, err)
	}
	sum := sha256.Sum256(b)
	w.m.Metadata = append(w.m.Metadata, MetaFile{Name: name, Size: int64(len(b)), SHA256: hex.EncodeToString(sum[:])})
	return nil
}

func writeFileSync(p string, b []byte) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// AddTree backs up the tree at root (a shadow copy: it is only read) under
// the path rel of the version ("" or "." for the top). progress, if not
// nil, is called after each entry.
func (w *Writer) AddTree(ctx context.Context, root, rel string, progress func(Progress)) error {
	err := w.addTree(ctx, root, rel, progress)
	// Every data file written is fsynced (or, with syncfs, on its way to
	// disk) and closed before AddTree returns.
	if serr := w.stopSyncer(); err == nil && serr != nil {
		err = fmt.Errorf("add tree %s: %w", root, serr)
	}
	return err
}

func (w *Writer) addTree(ctx context.Context, root, rel string, progress func(Progress)) error {
	if w.closed {
		return fmt.Errorf("add tree %s: version %s already committed or aborted", root, w.id)
	}
	if rel == "" {
		rel = "."
	}
	if !validRel(rel) {
		return fmt.Errorf("add tree %s: bad path %q in the version", root, rel)
	}
	entries, err := fsutil.Walk(ctx, root, fsutil.WalkOptions{})
	if err != nil {
		return fmt.Errorf("add tree %s: %w", root, err)
	}
	if w.o.Keep != nil {
		kept := entries[:0]
		skipped := map[string]bool{} // directories Keep refused
		for _, e := range entries {
			if e.Rel != "." {
				if dropped(e.Rel, skipped) {
					continue
				}
				vp := e.Rel
				if rel != "." {
					vp = path.Join(rel, e.Rel)
				}
				if !w.o.Keep(vp, e.Type() == unix.S_IFDIR) {
					if e.Type() == unix.S_IFDIR {
						skipped[e.Rel] = true
					}
					continue
				}
			}
			kept = append(kept, e)
		}
		entries = kept
	}
	var p Progress
	p.FilesTotal = int64(len(entries))
	for i := range entries {
		if entries[i].Type() == unix.S_IFREG {
			p.BytesTotal += entries[i].Stat.Size
		}
	}
	type ino struct{ dev, ino uint64 }
	primary := map[ino]string{}
	pf := w.newPrefetcher(root, rel, entries)
	defer pf.stop()
	for i := range entries {
		if err := ctx.Err(); err != nil {
			return err
		}
		pf.advance(i)
		e := &entries[i]
		vp := e.Rel
		if rel != "." {
			vp = path.Join(rel, e.Rel)
		}
		if w.seen[vp] {
			return fmt.Errorf("add tree %s: %s is already in the version", root, vp)
		}
		w.seen[vp] = true
		src := filepath.Join(root, e.Rel)
		p.File = vp
		f := File{Path: vp, Mode: strconv.FormatUint(uint64(e.Stat.Mode&0o7777), 8), UID: e.Stat.Uid, GID: e.Stat.Gid,
			Mtime: e.Stat.Mtim.Nano()}
		xs, err := fsutil.ListXattrs(src)
		if err != nil {
			return fmt.Errorf("add tree: xattrs of %s: %w", src, err)
		}
		for _, x := range xs {
			f.Xattrs = append(f.Xattrs, Xattr{Name: x.Name, Value: x.Value})
		}
		switch e.Type() {
		case unix.S_IFDIR:
			f.Type = TypeDir
		case unix.S_IFLNK:
			f.Type = TypeSymlink
			if f.Target, err = os.Readlink(src); err != nil {
				return fmt.Errorf("add tree: %w", err)
			}
		case unix.S_IFIFO:
			f.Type = TypeFIFO
		case unix.S_IFSOCK:
			f.Type = TypeSocket
		case unix.S_IFCHR, unix.S_IFBLK:
			f.Type = TypeChar
			if e.Type() == unix.S_IFBLK {
				f.Type = TypeBlock
			}
			f.Rdev = e.Stat.Rdev
		case unix.S_IFREG:
			key := ino{e.Stat.Dev, e.Stat.Ino}
			if first, ok := primary[key]; ok && e.Stat.Nlink > 1 {
				f.Type, f.Link, f.Size = TypeHardlink, first, e.Stat.Size
				p.BytesDone += e.Stat.Size
				break
			}
			if e.Stat.Nlink > 1 {
				primary[key] = vp
			}
			f.Type = TypeFile
			if err := w.addFile(ctx, src, &f, &p, progress); err != nil {
				return err
			}
		default:
			return fmt.Errorf("add tree: %s: unknown file type %#o", src, e.Type())
		}
		w.m.Files = append(w.m.Files, f)
		w.stats.Files++
		p.FilesDone++
		if progress != nil {
			progress(p)
		}
	}
	return nil
}

// The read-ahead of AddTree: while one file is read, hashed and written,
// a few goroutines ask the kernel to read the next ones (posix_fadvise
// WILLNEED, which only starts the reads), so that the disk serves several
// files at once rather than one after the other; and the file being read
// is read ahead of the reader in the same way.
const (
	prefetchFiles   = 64       // entries looked ahead of the one being backed up
	prefetchBytes   = 32 << 20 // bytes asked for ahead of it at most
	prefetchWorkers = 4        // goroutines asking for them
	prefetchHead    = 4 << 20  // bytes of a file asked for before its turn
	readAheadStep   = 2 << 20  // bytes asked for at once in the file being read
	readAhead       = 8 << 20  // how far in front of the reader
)

// prefetcher asks the kernel to read the files AddTree will read next.
type prefetcher struct {
	files []prefetchFile
	// files[done:next] are queued and not yet reached by AddTree; ahead
	// is what was asked for of them.
	done, next int
	ahead      int64
	jobs       chan prefetchFile
	wg         sync.WaitGroup
}

type prefetchFile struct {
	entry int // index in AddTree's entries
	path  string
	head  int64 // bytes asked for
}

// newPrefetcher lists the regular files of entries (of the tree at root,
// recorded under rel) whose data addFile will read.
func (w *Writer) newPrefetcher(root, rel string, entries []fsutil.Entry) *prefetcher {
	pf := &prefetcher{jobs: make(chan prefetchFile, prefetchFiles)}
	for i := range entries {
		e := &entries[i]
		if e.Type() != unix.S_IFREG || e.Stat.Size == 0 {
			continue
		}
		vp := e.Rel
		if rel != "." {
			vp = path.Join(rel, e.Rel)
		}
		if !w.readsAll(vp, e.Stat.Size, e.Stat.Mtim.Nano()) {
			continue
		}
		pf.files = append(pf.files, prefetchFile{entry: i, path: filepath.Join(root, e.Rel), head: min(e.Stat.Size, prefetchHead)})
	}
	if len(pf.files) == 0 {
		return pf
	}
	pf.wg.Add(prefetchWorkers)
	for range prefetchWorkers {
		go func() {
			defer pf.wg.Done()
			for f := range pf.jobs {
				fd, err := unix.Open(f.path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC|unix.O_NOATIME, 0)
				if errors.Is(err, unix.EPERM) {
					fd, err = unix.Open(f.path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
				}
				if err != nil {
					continue // addFile will say what is wrong
				}
				_ = unix.Fadvise(fd, 0, f.head, unix.FADV_WILLNEED)
				unix.Close(fd)
			}
		}()
	}
	return pf
}

// advance queues the files of the prefetchFiles entries from entry i on,
// up to prefetchBytes ahead and as far as the queue has room: the
// read-ahead never holds AddTree up.
func (pf *prefetcher) advance(i int) {
	for pf.done < pf.next && pf.files[pf.done].entry < i {
		pf.ahead -= pf.files[pf.done].head
		pf.done++
	}
	for pf.next < len(pf.files) && pf.files[pf.next].entry < i+prefetchFiles && pf.ahead < prefetchBytes {
		select {
		case pf.jobs <- pf.files[pf.next]:
			pf.ahead += pf.files[pf.next].head
			pf.next++
		default:
			return
		}
	}
}

// stop ends the read-ahead and waits for its goroutines.
func (pf *prefetcher) stop() {
	close(pf.jobs)
	pf.wg.Wait()
}

// readsAll reports whether addFile reads the whole of the file vp of this
// size and modification time: unless the base has it with the same size
// and time, or only ranges of it changed.
func (w *Writer) readsAll(vp string, size, mtime int64) bool {
	if _, ok := w.ranges[vp]; ok {
		return false
	}
	base := w.baseFiles[vp]
	return base == nil || base.Type != TypeFile || w.o.HashAll || base.Size != size || base.Mtime != mtime
}

// dropped reports whether rel lies below one of the skipped directories.
func dropped(rel string, skipped map[string]bool) bool {
	for d := path.Dir(rel); d != "." && d != "/"; d = path.Dir(d) {
		if skipped[d] {
			return true
		}
	}
	return false
}

// openSrc opens a file of the shadow for reading without changing its
// access time where the kernel lets us.
func openSrc(p string) (*os.File, error) {
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NOATIME, 0)
	if errors.Is(err, unix.EPERM) {
		fd, err = unix.Open(p, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	}
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: p, Err: err}
	}
	return os.NewFile(uintptr(fd), p), nil
}

// dataSegments returns the [offset, length] ranges of fd that hold data,
// with SEEK_DATA/SEEK_HOLE (one range for the whole file where the
// filesystem does not report holes).
func dataSegments(fd int, size int64) ([][2]int64, error) {
	var segs [][2]int64
	for off := int64(0); off < size; {
		d, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break
		}
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP) {
			return [][2]int64{{0, size}}, nil
		}
		if err != nil {
			return nil, err
		}
		if d >= size {
			break
		}
		h, err := unix.Seek(fd, d, unix.SEEK_HOLE)
		if err != nil {
			return nil, err
		}
		h = min(h, size)
		segs = append(segs, [2]int64{d, h - d})
		off = h
	}
	return segs, nil
}

// overlaps reports whether [off, off+n) meets one of the ranges.
func overlaps(ranges [][2]int64, off, n int64) bool {
	for _, r := range ranges {
		if r[0] < off+n && off < r[0]+r[1] {
			return true
		}
	}
	return false
}

// addFile records the data of the regular file src in f.
func (w *Writer) addFile(ctx context.Context, src string, f *File, p *Progress, progress func(Progress)) error {
	in, err := openSrc(src)
	if err != nil {
		return fmt.Errorf("add tree: %w", err)
	}
	defer in.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(in.Fd()), &st); err != nil {
		return fmt.Errorf("add tree: stat %s: %w", src, err)
	}
	f.Size, f.Mtime = st.Size, st.Mtim.Nano()
	f.Mode = strconv.FormatUint(uint64(st.Mode&0o7777), 8)
	f.UID, f.GID = st.Uid, st.Gid
	base := w.baseFiles[f.Path]
	if base != nil && base.Type != TypeFile {
		base = nil
	}
	var baseAt map[int64]block
	if base != nil {
		baseAt = map[int64]block{}
		for _, b := range w.baseBlocks[f.Path] {
			baseAt[b.off] = b
		}
	}
	ranges, haveRanges := w.ranges[f.Path]
	// The "last modify time" schema: same size and time, same data.
	if base != nil && !haveRanges && !w.o.HashAll && base.Size == f.Size && base.Mtime == f.Mtime {
		f.Extents = base.Extents
		f.Runs = runsOf(w.baseBlocks[f.Path], f.Path, w.id)
		w.stats.BytesReused += f.Size
		p.BytesDone += f.Size
		return nil
	}
	segs, err := dataSegments(int(in.Fd()), f.Size)
	if err != nil {
		return fmt.Errorf("add tree: holes of %s: %w", src, err)
	}
	if !(len(segs) == 1 && segs[0] == [2]int64{0, f.Size}) && f.Size > 0 {
		f.Extents = segs
	}
	cs := w.o.ChunkSize
	if int64(len(w.buf)) != cs {
		w.buf = make([]byte, cs)
	}
	buf := w.buf
	var out *os.File
	bw := w.bw
	var at int64
	var bs []block
	defer func() {
		if out != nil {
			out.Close()
		}
	}()
	lastReport := time.Now()
	// Read ahead of the reader when the whole file is read (the
	// prefetcher asked for its head).
	advised := int64(-1)
	if !haveRanges {
		advised = min(f.Size, prefetchHead)
	}
	for off := int64(0); off < f.Size; off += cs {
		n := min(cs, f.Size-off)
		for advised >= 0 && advised < f.Size && advised < off+readAhead {
			_ = unix.Fadvise(int(in.Fd()), advised, readAheadStep, unix.FADV_WILLNEED)
			advised += readAheadStep
		}
		if !overlaps(segs, off, n) {
			p.BytesDone += n
			continue // a hole
		}
		bb, inBase := baseAt[off]
		inBase = inBase && bb.len == n
		if haveRanges && inBase && !overlaps(ranges, off, n) {
			bs = append(bs, bb)
			w.stats.BytesReused += n
			p.BytesDone += n
			continue
		}
		if off%(16*cs) == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		if _, err := in.ReadAt(buf[:n], off); err != nil {
			if errors.Is(err, io.EOF) {
				err = fmt.Errorf("file shrank while read")
			}
			return fmt.Errorf("add tree: read %s at %d: %w", src, off, err)
		}
		w.stats.BytesRead += n
		p.BytesDone += n
		s := sha256.Sum256(buf[:n])
		sum := hex.EncodeToString(s[:])
		if inBase && bb.sum == sum {
			bs = append(bs, bb)
			w.stats.BytesReused += n
		} else if hb, ok := w.byHash[sum]; ok && hb.len == n {
			hb.off = off
			bs = append(bs, hb)
			w.stats.BytesReused += n
		} else {
			if out == nil {
				dp := filepath.Join(w.partial, DataDir, filepath.FromSlash(f.Path))
				if err := os.MkdirAll(filepath.Dir(dp), 0o700); err != nil {
					return fmt.Errorf("add tree: %w", err)
				}
				if out, err = os.OpenFile(dp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600); err != nil {
					return fmt.Errorf("add tree: data of %s: %w", f.Path, err)
				}
				if bw == nil {
					bw = bufio.NewWriterSize(out, 1<<20)
					w.bw = bw
				}
				bw.Reset(out)
			}
			if _, err := bw.Write(buf[:n]); err != nil {
				return fmt.Errorf("add tree: write data of %s: %w", f.Path, err)
			}
			bs = append(bs, block{off: off, len: n, sum: sum, version: w.id, file: dataFile(f.Path), at: at})
			at += n
			w.stats.BytesStored += n
		}
		if progress != nil && time.Since(lastReport) > 200*time.Millisecond {
			lastReport = time.Now()
			progress(*p)
		}
	}
	if out != nil {
		err := bw.Flush()
		bw.Reset(nil)
		if err != nil {
			return fmt.Errorf("add tree: write data of %s: %w", f.Path, err)
		}
		w.syncLater(out, f.Path)
		out = nil
	}
	f.Runs = runsOf(bs, f.Path, w.id)
	return nil
}

// fsyncWorkers is how many data files are fsynced at once.
const fsyncWorkers = 16

// syncer fsyncs and closes the data files of a version in the background,
// a few at a time, so that the writeback of a file overlaps with the
// reading of the next ones and concurrent fsyncs share the filesystem's
// journal commits. Commit waits for them: every data file is on disk
// before the version can exist. When Commit syncs the filesystem
// (Writer.syncfs), the syncer only starts the writeback of each file
// (sync_file_range) and closes it.
type syncer struct {
	files     chan syncJob
	startOnly bool
	wg        sync.WaitGroup
	mu        sync.Mutex
	err       error // the first failure
}

type syncJob struct {
	f    *os.File
	path string // in the version
}

func (s *syncer) work() {
	defer s.wg.Done()
	for j := range s.files {
		var err error
		if s.startOnly {
			err = unix.SyncFileRange(int(j.f.Fd()), 0, 0, unix.SYNC_FILE_RANGE_WRITE)
		} else {
			err = j.f.Sync()
		}
		if cerr := j.f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			s.mu.Lock()
			if s.err == nil {
				s.err = fmt.Errorf("write data of %s: %w", j.path, err)
			}
			s.mu.Unlock()
		}
	}
}

// syncLater hands a written data file over to the syncer, which fsyncs and
// closes it; it waits while fsyncWorkers files wait already.
func (w *Writer) syncLater(f *os.File, path string) {
	if w.fsyncs == nil {
		w.fsyncs = &syncer{files: make(chan syncJob, fsyncWorkers), startOnly: w.syncfs}
		w.fsyncs.wg.Add(fsyncWorkers)
		for range fsyncWorkers {
			go w.fsyncs.work()
		}
	}
	w.fsyncs.files <- syncJob{f, path}
}

// stopSyncer waits until the syncer has done with every data file handed
// to syncLater, and returns its first failure.
func (w *Writer) stopSyncer() error {
	s := w.fsyncs
	if s == nil {
		return nil
	}
	w.fsyncs = nil
	close(s.files)
	s.wg.Wait()
	return s.err
}

// waitSync waits until every data file handed to syncLater is on disk:
// fsynced by the syncer, or, with Writer.syncfs, by a syncfs of the
// version's filesystem (through the lock file, open since Create), which
// also makes what else was written there durable (the manifest, the
// directories). It returns the first failure.
func (w *Writer) waitSync() error {
	if err := w.stopSyncer(); err != nil {
		return err
	}
	if w.syncfs {
		if w.lock == nil {
			return fmt.Errorf("write data: syncfs %s: the target is not locked", w.partial)
		}
		if err := unix.Syncfs(int(w.lock.Fd())); err != nil {
			return fmt.Errorf("write data: syncfs %s: %w", w.partial, err)
		}
	}
	return nil
}

// syncfsSyncs reports whether one syncfs of dir's filesystem is as good
// as an fsync of each file written there: a local disk filesystem
// (ext2/3/4, XFS, btrfs, F2FS) on Linux 5.8 or later, where syncfs reports
// the writeback errors that happened since the descriptor it is given was
// opened. Otherwise each data file is fsynced.
func syncfsSyncs(dir string) bool {
	var u unix.Utsname
	if unix.Uname(&u) != nil || !kernelAtLeast(unix.ByteSliceToString(u.Release[:]), 5, 8) {
		return false
	}
	var st unix.Statfs_t
	if unix.Statfs(dir, &st) != nil {
		return false
	}
	switch uint32(st.Type) {
	case unix.EXT4_SUPER_MAGIC, unix.XFS_SUPER_MAGIC, unix.BTRFS_SUPER_MAGIC, unix.F2FS_SUPER_MAGIC:
		return true
	}
	return false
}

// kernelAtLeast reports whether a kernel release ("6.1.0-13-amd64") is
// major.minor or later.
func kernelAtLeast(release string, major, minor int) bool {
	var ma, mi int
	if _, err := fmt.Sscanf(release, "%d.%d", &ma, &mi); err != nil {
		return false
	}
	return ma > major || ma == major && mi >= minor
}

// Commit writes the manifest and its checksum, flushes everything to disk
// and renames the version into place: only then does it exist.
func (w *Writer) Commit() error {
	if w.closed {
		return fmt.Errorf("commit version %s: already committed or aborted", w.id)
	}
	if !w.syncfs {
		if err := w.waitSync(); err != nil {
			return fmt.Errorf("commit version %s: %w", w.id, err)
		}
	}
	sort.Slice(w.m.Metadata, func(i, j int) bool { return w.m.Metadata[i].Name < w.m.Metadata[j].Name })
	if w.m.Files == nil {
		w.m.Files = []File{}
	}
	b, err := w.m.encode()
	if err != nil {
		return fmt.Errorf("commit version %s: encode manifest: %w", w.id, err)
	}
	if _, err := ParseManifest(b); err != nil {
		return fmt.Errorf("commit version %s: the manifest made does not check: %w", w.id, err)
	}
	if err := writeFileSync(filepath.Join(w.partial, ManifestName), b); err != nil {
		return fmt.Errorf("commit version %s: %w", w.id, err)
	}
	sum := sha256.Sum256(b)
	line := hex.EncodeToString(sum[:]) + "  " + ManifestName + "\n"
	if err := writeFileSync(filepath.Join(w.partial, ManifestSumName), []byte(line)); err != nil {
		return fmt.Errorf("commit version %s: %w", w.id, err)
	}
	if w.syncfs {
		// One syncfs for the data files and every directory.
		err = w.waitSync()
	} else {
		// Data files were synced by waitSync; now every directory.
		err = filepath.WalkDir(w.partial, func(p string, d os.DirEntry, err error) error {
			if err != nil || !d.IsDir() {
				return err
			}
			return syncDir(p)
		})
	}
	if err != nil {
		return fmt.Errorf("commit version %s: %w", w.id, err)
	}
	final := filepath.Join(w.dir, w.id)
	if err := os.Rename(w.partial, final); err != nil {
		return fmt.Errorf("commit version %s: %w", w.id, err)
	}
	w.closed = true
	defer w.unlock()
	if err := syncDir(w.dir); err != nil {
		return fmt.Errorf("commit version %s: %w", w.id, err)
	}
	return nil
}

func syncDir(p string) error {
	d, err := os.Open(p)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sync directory %s: %w", p, err)
	}
	return nil
}

// Abort removes the partial version. It does nothing after Commit.
func (w *Writer) Abort() error {
	if w.closed {
		return nil
	}
	w.closed = true
	defer w.unlock()
	_ = w.stopSyncer() // the files go anyway
	if err := os.RemoveAll(w.partial); err != nil {
		return fmt.Errorf("abort version %s: %w", w.id, err)
	}
	return nil
}
