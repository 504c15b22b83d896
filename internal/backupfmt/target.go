package backupfmt

import (
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
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/linuxvss/vss/internal/fsutil"
)

// Target is a backup target directory.
type Target struct {
	dir string
}

// Open opens the backup target dir, which must exist.
func Open(dir string) (*Target, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("open backup target: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("open backup target %s: not a directory", dir)
	}
	return &Target{dir: dir}, nil
}

// Dir returns the target's directory.
func (t *Target) Dir() string { return t.dir }

// Version describes a complete version.
type Version struct {
	ID      string
	Kind    Kind
	Base    string
	Time    time.Time
	SetID   string
	Files   int
	Content []string // metadata documents stored with it
	// CanRecover is true when the manifest checks and every version it
	// takes data from is there and checks too (stored bytes are checked by
	// Verify, not here).
	CanRecover bool
	Problem    string // why not, when CanRecover is false
}

// Versions lists the complete versions, oldest first. Partial versions
// (.ID.partial, left by an interrupted backup) are not listed.
func (t *Target) Versions() ([]Version, error) {
	ents, err := os.ReadDir(t.dir)
	if err != nil {
		return nil, fmt.Errorf("list backup target %s: %w", t.dir, err)
	}
	var out []Version
	ok := map[string]error{}
	manifests := map[string]*Manifest{}
	for _, e := range ents {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		tm, err := ParseVersionID(e.Name())
		if err != nil {
			continue
		}
		v := Version{ID: e.Name(), Time: tm}
		m, err := t.manifest(v.ID)
		ok[v.ID] = err
		if err == nil {
			manifests[v.ID] = m
			v.Kind, v.Base, v.Time, v.SetID, v.Files = m.Kind, m.Base, m.Created, m.SetID, len(m.Files)
			for _, mf := range m.Metadata {
				v.Content = append(v.Content, mf.Name)
			}
		}
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	for i := range out {
		v := &out[i]
		if err := ok[v.ID]; err != nil {
			v.Problem = err.Error()
			continue
		}
		v.CanRecover = true
		for ref := range referenced(manifests[v.ID]) {
			err, there := ok[ref]
			if !there {
				err = fmt.Errorf("version %s, which it takes data from, is missing", ref)
			} else if err != nil {
				err = fmt.Errorf("version %s, which it takes data from: %w", ref, err)
			}
			if err != nil {
				v.CanRecover, v.Problem = false, err.Error()
				break
			}
		}
	}
	return out, nil
}

// BaseOf returns the version (of versions, oldest first, as Versions
// lists them) a new version of kind k is compared with when no base is
// given: the newest complete version for an incremental one, the newest
// complete full one for a differential; "" when there is none or k has no
// base.
func BaseOf(k Kind, versions []Version) string {
	if !k.hasBase() {
		return ""
	}
	for i := len(versions) - 1; i >= 0; i-- {
		if v := versions[i]; v.CanRecover && (k == Incremental || v.Kind == Full) {
			return v.ID
		}
	}
	return ""
}

// referenced returns the other versions whose data files m refers to.
func referenced(m *Manifest) map[string]bool {
	out := map[string]bool{}
	for i := range m.Files {
		for _, r := range m.Files[i].Runs {
			if r.Version != "" {
				out[r.Version] = true
			}
		}
	}
	return out
}

// manifest reads, checks against its checksum and parses the manifest of
// version id.
func (t *Target) manifest(id string) (*Manifest, error) {
	if _, err := ParseVersionID(id); err != nil {
		return nil, err
	}
	dir := filepath.Join(t.dir, id)
	b, err := os.ReadFile(filepath.Join(dir, ManifestName))
	if err != nil {
		return nil, fmt.Errorf("version %s: %w", id, err)
	}
	sb, err := os.ReadFile(filepath.Join(dir, ManifestSumName))
	if err != nil {
		return nil, fmt.Errorf("version %s: %w", id, err)
	}
	want, _, _ := strings.Cut(strings.TrimSpace(string(sb)), " ")
	got := sha256.Sum256(b)
	if hex.EncodeToString(got[:]) != want {
		return nil, fmt.Errorf("version %s: %s does not match the checksum in %s: the manifest is damaged",
			id, filepath.Join(dir, ManifestName), ManifestSumName)
	}
	m, err := ParseManifest(b)
	if err != nil {
		return nil, fmt.Errorf("version %s: %s: %w", id, filepath.Join(dir, ManifestName), err)
	}
	if m.Version != id {
		return nil, fmt.Errorf("version %s: its manifest names version %s", id, m.Version)
	}
	return m, nil
}

// Manifest returns the checked manifest of a version (for listing items).
func (t *Target) Manifest(id string) (*Manifest, error) { return t.manifest(id) }

// Metadata returns a metadata document stored with a version, checked
// against its SHA-256.
func (t *Target) Metadata(id, name string) ([]byte, error) {
	m, err := t.manifest(id)
	if err != nil {
		return nil, err
	}
	for _, mf := range m.Metadata {
		if mf.Name != name {
			continue
		}
		p := filepath.Join(t.dir, id, filepath.FromSlash(name))
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("metadata %s of version %s: %w", name, id, err)
		}
		if s := sha256.Sum256(b); hex.EncodeToString(s[:]) != mf.SHA256 {
			return nil, fmt.Errorf("metadata %s of version %s: %s is damaged (sha256 mismatch)", name, id, p)
		}
		return b, nil
	}
	return nil, fmt.Errorf("metadata %s of version %s: %w", name, id, os.ErrNotExist)
}

// dataReader reads blocks from data files, checking each against its
// SHA-256, keeping the files it opened.
type dataReader struct {
	dir   string
	files map[string]*os.File
	buf   []byte
}

func newDataReader(dir string, cs int64) *dataReader {
	return &dataReader{dir: dir, files: map[string]*os.File{}, buf: make([]byte, cs)}
}

func (d *dataReader) close() {
	for _, f := range d.files {
		f.Close()
	}
}

// read returns the checked bytes of b (valid until the next read).
func (d *dataReader) read(b block) ([]byte, error) {
	where := fmt.Sprintf("%s/%s at %d", b.version, b.file, b.at)
	key := b.version + "/" + b.file
	f, ok := d.files[key]
	if !ok {
		var err error
		f, err = os.Open(filepath.Join(d.dir, b.version, filepath.FromSlash(b.file)))
		if err != nil {
			return nil, fmt.Errorf("block at %d: %w", b.off, err)
		}
		d.files[key] = f
	}
	buf := d.buf[:b.len]
	if _, err := f.ReadAt(buf, b.at); err != nil {
		if errors.Is(err, io.EOF) {
			err = errors.New("data file too short")
		}
		return nil, fmt.Errorf("block at %d (%s): %w", b.off, where, err)
	}
	if s := sha256.Sum256(buf); hex.EncodeToString(s[:]) != b.sum {
		return nil, fmt.Errorf("block at %d (%s): sha256 mismatch: the stored data is damaged", b.off, where)
	}
	return buf, nil
}

// Problem is one damaged item found by Verify.
type Problem struct {
	Path    string // the file of the tree (or manifest.json, or a metadata document)
	Message string
}

func (p Problem) String() string { return p.Path + ": " + p.Message }

// Verify reads every byte a restore of version id would use (those stored
// in it and those it takes from older versions) and checks it against its
// SHA-256. It returns one Problem per damaged file; the error is for
// failures to verify at all.
func (t *Target) Verify(ctx context.Context, id string) ([]Problem, error) {
	return t.VerifyProgress(ctx, id, nil)
}

// VerifyProgress is Verify, calling progress (when not nil) after each
// file.
func (t *Target) VerifyProgress(ctx context.Context, id string, progress func(Progress)) ([]Problem, error) {
	m, err := t.manifest(id)
	if err != nil {
		if _, statErr := os.Stat(filepath.Join(t.dir, id)); statErr != nil {
			return nil, fmt.Errorf("verify: %w", err)
		}
		return []Problem{{Path: ManifestName, Message: err.Error()}}, nil
	}
	var probs []Problem
	for _, mf := range m.Metadata {
		if _, err := t.Metadata(id, mf.Name); err != nil {
			probs = append(probs, Problem{Path: mf.Name, Message: err.Error()})
		}
	}
	d := newDataReader(t.dir, m.ChunkSize)
	defer d.close()
	var p Progress
	p.FilesTotal = int64(len(m.Files))
	for i := range m.Files {
		if m.Files[i].Type == TypeFile {
			p.BytesTotal += m.Files[i].Size
		}
	}
	for i := range m.Files {
		f := &m.Files[i]
		p.File = f.Path
		var bad []string
		for _, b := range f.blocks(m.ChunkSize, m.Version) {
			if err := ctx.Err(); err != nil {
				return probs, err
			}
			if _, err := d.read(b); err != nil {
				bad = append(bad, err.Error())
			}
		}
		if len(bad) > 0 {
			msg := bad[0]
			if len(bad) > 1 {
				msg += fmt.Sprintf(" (and %d more damaged blocks)", len(bad)-1)
			}
			probs = append(probs, Problem{Path: f.Path, Message: msg})
		}
		p.FilesDone++
		if f.Type == TypeFile {
			p.BytesDone += f.Size
		}
		if progress != nil {
			progress(p)
		}
	}
	return probs, nil
}

// OverwriteMode says what Restore does with an item that exists already.
type OverwriteMode int

const (
	// CreateCopy restores next to the existing item, as NAME.restored-VERSION.
	CreateCopy OverwriteMode = iota
	// Overwrite replaces the existing item.
	Overwrite
	// Skip keeps the existing item.
	Skip
)

// RestoreOptions tune Restore.
type RestoreOptions struct {
	Overwrite OverwriteMode
	Progress  func(Progress)
	// Rename, if not nil, gives for a path of the version the path under
	// dst it is restored to (a database restored under a new name); it
	// must return a clean relative path, and the same for an entry and
	// everything below it.
	Rename func(p string) string
	// Mirror, if not nil, says of a directory of the version whether,
	// once restored, it is to hold exactly what the version has there:
	// the entries this restore did not put there are removed (a database
	// restored in place must not keep files of a later state).
	Mirror func(p string) bool
}

// Restore recreates the items (paths of the version, a directory with all
// below it; none for everything) of version id under dst, with their
// metadata. Every block is checked against its SHA-256 before the file it
// belongs to is put in place: a damaged file is not restored, and the
// error names it (the other items are restored).
func (t *Target) Restore(ctx context.Context, id string, items []string, dst string, o RestoreOptions) error {
	m, err := t.manifest(id)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	byPath := make(map[string]*File, len(m.Files))
	for i := range m.Files {
		byPath[m.Files[i].Path] = &m.Files[i]
	}
	want := map[string]bool{}
	for _, it := range items {
		it = strings.TrimSuffix(strings.TrimPrefix(it, "/"), "/")
		if it == "" {
			it = "."
		}
		if !validRel(it) {
			return fmt.Errorf("restore: item %q is not a clean path inside the backup", it)
		}
		if byPath[it] == nil {
			return fmt.Errorf("restore: item %q is not in version %s", it, id)
		}
		want[it] = true
	}
	selected := func(p string) bool {
		if len(want) == 0 || want["."] {
			return true
		}
		for q := p; ; q = path.Dir(q) {
			if want[q] {
				return true
			}
			if q == "." || !strings.Contains(q, "/") {
				return false
			}
		}
	}
	var sel []*File
	var p Progress
	for i := range m.Files {
		if f := &m.Files[i]; selected(f.Path) {
			sel = append(sel, f)
			if f.Type == TypeFile {
				p.BytesTotal += f.Size
			}
		}
	}
	p.FilesTotal = int64(len(sel))
	_, err = os.Lstat(dst)
	newDst := errors.Is(err, os.ErrNotExist)
	if err := os.MkdirAll(dst, 0o700); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	r := &restorer{newDst: newDst, t: t, m: m, dst: dst, o: o, byPath: byPath, placed: map[string]string{}, restored: map[string]bool{},
		d: newDataReader(t.dir, m.ChunkSize)}
	defer r.d.close()
	var errs []error
	type dirMeta struct {
		f      *File
		target string
	}
	var dirs []dirMeta
	for _, f := range sel {
		if err := ctx.Err(); err != nil {
			return err
		}
		p.File = f.Path
		target, apply, err := r.entry(f)
		if err != nil {
			errs = append(errs, err)
		} else if apply && f.Type == TypeDir {
			dirs = append(dirs, dirMeta{f, target})
		}
		p.FilesDone++
		if f.Type == TypeFile {
			p.BytesDone += f.Size
		}
		if o.Progress != nil {
			o.Progress(p)
		}
	}
	if o.Mirror != nil && len(errs) == 0 {
		for _, f := range sel {
			if f.Type != TypeDir || !o.Mirror(f.Path) {
				continue
			}
			if err := r.mirror(f); err != nil {
				errs = append(errs, err)
			}
		}
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := applyMeta(dirs[i].target, dirs[i].f); err != nil {
			errs = append(errs, fmt.Errorf("restore %s: %w", dirs[i].f.Path, err))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("restore of version %s: %d items failed: %w", id, len(errs), errors.Join(errs...))
	}
	return nil
}

type restorer struct {
	newDst bool // dst was made by this restore
	t      *Target
	m      *Manifest
	dst    string
	o      RestoreOptions
	byPath map[string]*File
	placed map[string]string // path of the version -> where its file was restored
	// restored are the paths under dst this restore made or kept.
	restored map[string]bool
	d        *dataReader
}

// dest returns the path under dst the entry p of the version goes to.
func (r *restorer) dest(p string) (string, error) {
	if r.o.Rename == nil || p == "." {
		return p, nil
	}
	q := r.o.Rename(p)
	if !validRel(q) {
		return "", fmt.Errorf("%s would be restored as %q, which is not a clean path inside the target", p, q)
	}
	return q, nil
}

// mirror removes from the restored directory of f the entries this
// restore did not put there.
func (r *restorer) mirror(f *File) error {
	d, err := r.dest(f.Path)
	if err != nil {
		return err
	}
	dir := r.dst
	if d != "." {
		dir = filepath.Join(r.dst, filepath.FromSlash(d))
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("restore %s: %w", f.Path, err)
	}
	for _, e := range ents {
		if r.restored[path.Join(d, e.Name())] {
			continue
		}
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return fmt.Errorf("restore %s: removing what the version does not have: %w", f.Path, err)
		}
	}
	return nil
}

// safeParent makes the directories above rel in dst, refusing to go
// through anything that is not a real directory (a symbolic link could
// lead out of dst).
func (r *restorer) safeParent(rel string) error {
	cur := r.dst
	dir := path.Dir(rel)
	if dir == "." {
		return nil
	}
	for _, e := range strings.Split(dir, "/") {
		cur = filepath.Join(cur, e)
		var st unix.Stat_t
		err := unix.Lstat(cur, &st)
		if errors.Is(err, unix.ENOENT) {
			if err := os.Mkdir(cur, 0o700); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return &os.PathError{Op: "lstat", Path: cur, Err: err}
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			return fmt.Errorf("%s is not a directory: refusing to restore through it", cur)
		}
	}
	return nil
}

// entry restores one entry. It returns where it went and whether the
// directory metadata is to be applied at the end.
func (r *restorer) entry(f *File) (string, bool, error) {
	fail := func(err error) (string, bool, error) {
		return "", false, fmt.Errorf("restore %s: %w", f.Path, err)
	}
	d, err := r.dest(f.Path)
	if err != nil {
		return fail(err)
	}
	if err := r.safeParent(d); err != nil {
		return fail(err)
	}
	target := r.dst
	if d != "." {
		target = filepath.Join(r.dst, filepath.FromSlash(d))
	}
	r.restored[d] = true
	var st unix.Stat_t
	err = unix.Lstat(target, &st)
	exists := err == nil
	if err != nil && !errors.Is(err, unix.ENOENT) {
		return fail(&os.PathError{Op: "lstat", Path: target, Err: err})
	}
	isDir := exists && st.Mode&unix.S_IFMT == unix.S_IFDIR
	if f.Type == TypeDir {
		if exists && !isDir {
			if r.o.Overwrite != Overwrite {
				return fail(fmt.Errorf("%s exists and is not a directory", target))
			}
			if err := os.Remove(target); err != nil {
				return fail(err)
			}
			exists = false
		}
		if !exists {
			if err := os.Mkdir(target, 0o700); err != nil {
				return fail(err)
			}
		}
		made := !exists || (f.Path == "." && r.newDst)
		return target, made || r.o.Overwrite == Overwrite, nil
	}
	if exists {
		switch r.o.Overwrite {
		case Skip:
			return target, false, nil
		case CreateCopy:
			base := target + ".restored-" + r.m.Version
			target = base
			for i := 2; ; i++ {
				if _, err := os.Lstat(target); errors.Is(err, os.ErrNotExist) {
					break
				}
				target = fmt.Sprintf("%s-%d", base, i)
			}
		case Overwrite:
			if isDir {
				return fail(fmt.Errorf("%s is a directory: not replacing it by a %s", target, f.Type))
			}
		}
	}
	// Build the entry under a temporary name next to it, then rename.
	tmp := filepath.Join(filepath.Dir(target), fmt.Sprintf(".%s.vss-restore-%d", filepath.Base(target), os.Getpid()))
	os.Remove(tmp)
	if err := r.make(f, tmp); err != nil {
		os.Remove(tmp)
		return fail(err)
	}
	if err := os.Rename(tmp, target); err != nil {
		os.Remove(tmp)
		return fail(err)
	}
	switch f.Type {
	case TypeFile:
		r.placed[f.Path] = target
	case TypeHardlink:
		if _, ok := r.placed[f.Link]; !ok {
			r.placed[f.Link] = target // later names link to this one
		}
	}
	return target, false, nil
}

// make creates the non-directory f at tmp with its metadata.
func (r *restorer) make(f *File, tmp string) error {
	switch f.Type {
	case TypeFile:
		if err := r.writeData(f, tmp); err != nil {
			return err
		}
	case TypeHardlink:
		if first, ok := r.placed[f.Link]; ok {
			// Another name of a file restored already: same inode, same metadata.
			return os.Link(first, tmp)
		}
		// Its first name was not restored: restore the data as a file.
		if err := r.writeData(r.byPath[f.Link], tmp); err != nil {
			return err
		}
	case TypeSymlink:
		if err := os.Symlink(f.Target, tmp); err != nil {
			return err
		}
	case TypeFIFO, TypeChar, TypeBlock, TypeSocket:
		mode := map[string]uint32{TypeFIFO: unix.S_IFIFO, TypeChar: unix.S_IFCHR, TypeBlock: unix.S_IFBLK, TypeSocket: unix.S_IFSOCK}[f.Type]
		if err := unix.Mknod(tmp, mode|f.ModeBits(), int(f.Rdev)); err != nil {
			return &os.PathError{Op: "mknod", Path: tmp, Err: err}
		}
	default:
		return fmt.Errorf("unknown type %q", f.Type)
	}
	if f.Type == TypeHardlink {
		return applyMeta(tmp, r.byPath[f.Link])
	}
	return applyMeta(tmp, f)
}

// writeData writes the data of src (checked block by block) into a new
// file tmp.
func (r *restorer) writeData(src *File, tmp string) error {
	out, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	err = func() error {
		// The size first: writes inside the size never extend the file, so
		// that no filesystem preallocates past them (XFS would fill holes).
		if err := out.Truncate(src.Size); err != nil {
			return err
		}
		for _, b := range src.blocks(r.m.ChunkSize, r.m.Version) {
			data, err := r.d.read(b)
			if err != nil {
				return err
			}
			if len(src.Extents) == 0 {
				if _, err := out.WriteAt(data, b.off); err != nil {
					return err
				}
				continue
			}
			// A sparse file: write only where it had data, so that holes stay holes.
			for _, e := range src.Extents {
				a, z := max(e[0], b.off), min(e[0]+e[1], b.off+b.len)
				if a < z {
					if _, err := out.WriteAt(data[a-b.off:z-b.off], a); err != nil {
						return err
					}
				}
			}
		}
		return out.Sync()
	}()
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}

// applyMeta gives p the owner, extended attributes, mode and times of f.
func applyMeta(p string, f *File) error {
	isLink := f.Type == TypeSymlink
	if err := unix.Lchown(p, int(f.UID), int(f.GID)); err != nil {
		return &os.PathError{Op: "lchown", Path: p, Err: err}
	}
	xs := make([]fsutil.Xattr, len(f.Xattrs))
	for i, x := range f.Xattrs {
		xs[i] = fsutil.Xattr{Name: x.Name, Value: x.Value}
	}
	if err := fsutil.SetXattrs(p, xs, isLink); err != nil {
		return err
	}
	if !isLink {
		if err := unix.Fchmodat(unix.AT_FDCWD, p, f.ModeBits(), 0); err != nil {
			return &os.PathError{Op: "chmod", Path: p, Err: err}
		}
	}
	mt := unix.NsecToTimespec(f.Mtime)
	ts := []unix.Timespec{mt, mt}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return &os.PathError{Op: "utimes", Path: p, Err: err}
	}
	return nil
}
