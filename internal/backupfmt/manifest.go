// Package backupfmt is the on-disk format of wbadmin backups: a backup
// target directory holding complete, immutable versions (full, copy,
// incremental, differential), each with a JSON manifest, the stored data
// of its files, and the metadata documents of the backup (Writer Metadata
// Documents, the Backup Components Document).
//
// The format is documented for people in docs/backup-format.md: a file can
// be got back with cat, dd, jq and sha256sum alone.
//
// A file's data is cut into fixed-size blocks (ChunkSize, aligned on the
// file offset), each with a SHA-256. A block is either stored in the
// version that made it (appended to data/<path> in that version) or refers
// to the same bytes stored by an older version. Consecutive blocks that lie
// back to back in one data file are written as one run, so that a file
// backed up in full is one run and its data file is a plain copy of it.
package backupfmt

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"
)

// FormatVersion is the value of the manifest's "format" field.
const FormatVersion = 1

// Names inside a version directory.
const (
	ManifestName    = "manifest.json"
	ManifestSumName = "manifest.json.sha256"
	DataDir         = "data"
	WritersDir      = "writers"
	BCDName         = "bcd.xml"
)

// Kind is the kind of a version.
type Kind string

// The kinds of version. Full and copy versions store every block;
// incremental and differential versions store only the blocks that differ
// from their base (the previous version, or the last full version).
const (
	Full         Kind = "full"
	Copy         Kind = "copy"
	Incremental  Kind = "incremental"
	Differential Kind = "differential"
)

func (k Kind) valid() bool {
	switch k {
	case Full, Copy, Incremental, Differential:
		return true
	}
	return false
}

// hasBase reports whether versions of kind k need a base version.
func (k Kind) hasBase() bool { return k == Incremental || k == Differential }

// File types in the manifest.
const (
	TypeDir      = "dir"
	TypeFile     = "file"
	TypeSymlink  = "symlink"
	TypeHardlink = "hardlink" // another name of the regular file Link
	TypeFIFO     = "fifo"
	TypeChar     = "char"
	TypeBlock    = "block"
	TypeSocket   = "socket"
)

var validTypes = map[string]bool{TypeDir: true, TypeFile: true, TypeSymlink: true, TypeHardlink: true,
	TypeFIFO: true, TypeChar: true, TypeBlock: true, TypeSocket: true}

// Manifest is the content of manifest.json.
type Manifest struct {
	Format    int        `json:"format"`
	Version   string     `json:"version"` // the version's id (its directory name)
	Kind      Kind       `json:"kind"`
	Base      string     `json:"base,omitempty"` // version compared with (incremental, differential)
	Created   time.Time  `json:"created"`
	SetID     string     `json:"set_id,omitempty"` // the shadow copy set the data was read from
	ChunkSize int64      `json:"chunk_size"`
	Metadata  []MetaFile `json:"metadata,omitempty"`
	Files     []File     `json:"files"`
}

// MetaFile is a metadata document stored with the version (bcd.xml,
// writers/NAME).
type MetaFile struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Xattr is one extended attribute; its value is base64 in JSON.
type Xattr struct {
	Name  string `json:"name"`
	Value []byte `json:"value"`
}

// File is one entry of the backed-up tree.
type File struct {
	Path   string  `json:"path"` // relative, slash-separated, "." for the top
	Type   string  `json:"type"`
	Mode   string  `json:"mode"` // permission bits in octal, with setuid, setgid, sticky
	UID    uint32  `json:"uid"`
	GID    uint32  `json:"gid"`
	Mtime  int64   `json:"mtime_ns"` // nanoseconds since 1970 UTC
	Size   int64   `json:"size,omitempty"`
	Target string  `json:"target,omitempty"` // symlink target
	Link   string  `json:"link,omitempty"`   // hardlink: path of the file it is another name of
	Rdev   uint64  `json:"rdev,omitempty"`   // char, block
	Xattrs []Xattr `json:"xattrs,omitempty"`
	// Extents lists the [offset, length] ranges holding data when the file
	// is sparse; nil when the file has no holes.
	Extents [][2]int64 `json:"extents,omitempty"`
	// Runs give the data, in offset order. Bytes of [0, Size) outside every
	// run are zeros (holes).
	Runs []Run `json:"runs,omitempty"`
}

// Run is a sequence of consecutive blocks of a file that lie back to back
// in one data file: bytes [Off, Off+Len) of the file are bytes
// [At, At+Len) of the data file. The data file is DIR/<Version>/<File>,
// where an empty Version is the manifest's own version and an empty File is
// "data/" + the entry's path.
type Run struct {
	Off     int64    `json:"off"`
	Len     int64    `json:"len"`
	Version string   `json:"version,omitempty"`
	File    string   `json:"file,omitempty"`
	At      int64    `json:"at"`
	SHA256  []string `json:"sha256"` // one per block of ChunkSize (the last may be shorter)
}

// block is one block of a run, with its data file resolved.
type block struct {
	off, len int64
	sum      string
	version  string // never empty once resolved
	file     string // never empty once resolved
	at       int64
}

// ModeBits returns the permission bits of the entry.
func (f *File) ModeBits() uint32 {
	m, _ := strconv.ParseUint(f.Mode, 8, 32)
	return uint32(m)
}

// dataFile is the name of the data file of path inside a version.
func dataFile(p string) string { return DataDir + "/" + p }

// blocks expands the runs of f into blocks, resolving the data file of
// each against the version id that holds the manifest.
func (f *File) blocks(cs int64, own string) []block {
	var out []block
	for _, r := range f.Runs {
		v, file := r.Version, r.File
		if v == "" {
			v = own
		}
		if file == "" {
			file = dataFile(f.Path)
		}
		for i, s := range r.SHA256 {
			o := int64(i) * cs
			out = append(out, block{off: r.Off + o, len: min(cs, r.Len-o), sum: s, version: v, file: file, at: r.At + o})
		}
	}
	return out
}

// runsOf merges blocks (in offset order) into runs for the entry at path
// p in version own.
func runsOf(bs []block, p, own string) []Run {
	var out []Run
	for _, b := range bs {
		v, file := b.version, b.file
		if v == own {
			v = ""
		}
		if file == dataFile(p) {
			file = ""
		}
		if n := len(out); n > 0 {
			r := &out[n-1]
			if r.Version == v && r.File == file && r.Off+r.Len == b.off && r.At+r.Len == b.at {
				r.Len += b.len
				r.SHA256 = append(r.SHA256, b.sum)
				continue
			}
		}
		out = append(out, Run{Off: b.off, Len: b.len, Version: v, File: file, At: b.at, SHA256: []string{b.sum}})
	}
	return out
}

// versionLayout is how version ids are spelled: UTC, sortable as strings,
// without colons.
const versionLayout = "2006-01-02T15-04-05.000Z"

// ParseVersionID returns the time of a version id, or an error if id is
// not one.
func ParseVersionID(id string) (time.Time, error) {
	t, err := time.Parse(versionLayout, id)
	if err != nil || t.Format(versionLayout) != id {
		return time.Time{}, fmt.Errorf("%q is not a version id (want the form %s)", id, versionLayout)
	}
	return t, nil
}

// validRel reports whether p is a clean relative slash path inside the
// tree ("." for its top) with no ".." and no NUL.
func validRel(p string) bool {
	if p == "." {
		return true
	}
	if p == "" || strings.HasPrefix(p, "/") || path.Clean(p) != p || strings.ContainsRune(p, 0) {
		return false
	}
	for _, e := range strings.Split(p, "/") {
		if e == ".." || e == "." {
			return false
		}
	}
	return true
}

// validMetaName reports whether name may name a metadata document:
// "bcd.xml" or "writers/NAME".
func validMetaName(name string) bool {
	if name == BCDName {
		return true
	}
	rest, ok := strings.CutPrefix(name, WritersDir+"/")
	return ok && rest != "" && validRel(rest) && !strings.Contains(rest, "/")
}

func validSum(s string) bool {
	if len(s) != 64 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil && strings.ToLower(s) == s
}

// MaxChunkSize bounds the chunk size a manifest may declare.
const MaxChunkSize = 64 << 20

// ParseManifest decodes and checks a manifest. Every path, offset and
// reference is validated, so that what a manifest says can be acted on
// without escaping the target or the restore directory.
func ParseManifest(b []byte) (*Manifest, error) {
	var m Manifest
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	if dec.More() {
		return nil, fmt.Errorf("manifest: data after the JSON document")
	}
	if err := m.check(); err != nil {
		return nil, fmt.Errorf("manifest of version %q: %w", m.Version, err)
	}
	return &m, nil
}

func (m *Manifest) check() error {
	if m.Format != FormatVersion {
		return fmt.Errorf("format %d, this program reads format %d", m.Format, FormatVersion)
	}
	if _, err := ParseVersionID(m.Version); err != nil {
		return err
	}
	if !m.Kind.valid() {
		return fmt.Errorf("unknown kind %q", m.Kind)
	}
	if m.Kind.hasBase() {
		if _, err := ParseVersionID(m.Base); err != nil {
			return fmt.Errorf("base: %w", err)
		}
		if m.Base >= m.Version {
			return fmt.Errorf("base %s is not older than the version", m.Base)
		}
	} else if m.Base != "" {
		return fmt.Errorf("a %s version has no base (has %q)", m.Kind, m.Base)
	}
	if m.ChunkSize <= 0 || m.ChunkSize > MaxChunkSize {
		return fmt.Errorf("chunk size %d out of range (1..%d)", m.ChunkSize, MaxChunkSize)
	}
	seenMeta := map[string]bool{}
	for _, mf := range m.Metadata {
		if !validMetaName(mf.Name) || seenMeta[mf.Name] {
			return fmt.Errorf("metadata file %q: bad or repeated name", mf.Name)
		}
		seenMeta[mf.Name] = true
		if mf.Size < 0 || !validSum(mf.SHA256) {
			return fmt.Errorf("metadata file %q: bad size or sha256", mf.Name)
		}
	}
	types := make(map[string]string, len(m.Files))
	for i := range m.Files {
		f := &m.Files[i]
		if !validRel(f.Path) {
			return fmt.Errorf("file %q: bad path", f.Path)
		}
		if _, dup := types[f.Path]; dup {
			return fmt.Errorf("file %q: listed twice", f.Path)
		}
		types[f.Path] = f.Type
	}
	for i := range m.Files {
		f := &m.Files[i]
		if err := m.checkFile(f, types); err != nil {
			return fmt.Errorf("file %q: %w", f.Path, err)
		}
	}
	return nil
}

// checkFile checks one entry; types holds the types of all entries.
func (m *Manifest) checkFile(f *File, types map[string]string) error {
	if !validTypes[f.Type] {
		return fmt.Errorf("unknown type %q", f.Type)
	}
	if f.Path == "." && f.Type != TypeDir {
		return fmt.Errorf("the top of the tree must be a directory")
	}
	// Nothing may lie below an entry that is not a directory (a symbolic
	// link would lead a restore out of its target).
	for d := path.Dir(f.Path); d != "." && d != "/"; d = path.Dir(d) {
		if t, ok := types[d]; ok && t != TypeDir {
			return fmt.Errorf("below %q, which is a %s", d, t)
		}
	}
	if m, err := strconv.ParseUint(f.Mode, 8, 32); err != nil || m > 0o7777 {
		return fmt.Errorf("bad mode %q", f.Mode)
	}
	if f.Size < 0 {
		return fmt.Errorf("negative size")
	}
	if f.Type == TypeSymlink && (f.Target == "" || strings.ContainsRune(f.Target, 0)) {
		return fmt.Errorf("symlink without a valid target")
	}
	if f.Type != TypeSymlink && f.Target != "" {
		return fmt.Errorf("target on a %s", f.Type)
	}
	if f.Type == TypeHardlink {
		// Its first name is a regular file that comes before it in
		// manifest order, so that a restore makes that first.
		if types[f.Link] != TypeFile || !pathLess(f.Link, f.Path) {
			return fmt.Errorf("hard link to %q, which is not a regular file that sorts before it", f.Link)
		}
	} else if f.Link != "" {
		return fmt.Errorf("link on a %s", f.Type)
	}
	for _, x := range f.Xattrs {
		if x.Name == "" || strings.ContainsRune(x.Name, 0) {
			return fmt.Errorf("bad xattr name %q", x.Name)
		}
	}
	if f.Type != TypeFile {
		if len(f.Runs) > 0 || len(f.Extents) > 0 {
			return fmt.Errorf("data on a %s", f.Type)
		}
		return nil
	}
	var end int64
	for _, e := range f.Extents {
		if e[0] < end || e[1] <= 0 || e[0] > f.Size-e[1] {
			return fmt.Errorf("extent %v out of order or outside the size", e)
		}
		end = e[0] + e[1]
	}
	cs := m.ChunkSize
	end = 0
	for _, r := range f.Runs {
		if r.Off < end || r.Off%cs != 0 || r.Len <= 0 || r.Off > f.Size-r.Len || r.At < 0 {
			return fmt.Errorf("run at %d+%d out of order, unaligned or outside the size", r.Off, r.Len)
		}
		// Full blocks, except a last one that ends the file.
		n := (r.Len + cs - 1) / cs
		if int64(len(r.SHA256)) != n || (r.Len%cs != 0 && r.Off+r.Len != f.Size) {
			return fmt.Errorf("run at %d: %d sums for %d bytes in blocks of %d", r.Off, len(r.SHA256), r.Len, cs)
		}
		if r.At > (1<<62)-r.Len {
			return fmt.Errorf("run at %d: data offset out of range", r.Off)
		}
		for _, s := range r.SHA256 {
			if !validSum(s) {
				return fmt.Errorf("run at %d: bad sha256 %q", r.Off, s)
			}
		}
		if r.Version != "" {
			if _, err := ParseVersionID(r.Version); err != nil {
				return fmt.Errorf("run at %d: %w", r.Off, err)
			}
			if r.Version >= m.Version {
				return fmt.Errorf("run at %d refers to version %s, not older than this one", r.Off, r.Version)
			}
		}
		if r.File != "" {
			rest, ok := strings.CutPrefix(r.File, DataDir+"/")
			if !ok || !validRel(rest) || rest == "." {
				return fmt.Errorf("run at %d: bad data file %q", r.Off, r.File)
			}
		}
		end = r.Off + r.Len
	}
	return nil
}

// encode writes the manifest with one file entry per line, so that grep
// and diff work on it as well as jq.
func (m *Manifest) encode() ([]byte, error) {
	sort.Slice(m.Files, func(i, j int) bool { return pathLess(m.Files[i].Path, m.Files[j].Path) })
	files := m.Files
	hdr := *m
	hdr.Files = nil
	h, err := json.Marshal(&hdr)
	if err != nil {
		return nil, err
	}
	// h ends with `"files":null}`.
	h = bytes.TrimSuffix(h, []byte(`"files":null}`))
	var b bytes.Buffer
	b.Write(h)
	b.WriteString("\"files\":[\n")
	for i := range files {
		fb, err := json.Marshal(&files[i])
		if err != nil {
			return nil, err
		}
		b.Write(fb)
		if i < len(files)-1 {
			b.WriteByte(',')
		}
		b.WriteByte('\n')
	}
	b.WriteString("]}\n")
	return b.Bytes(), nil
}

// pathLess orders paths so that a directory comes right before what is in
// it ("." first, then component by component).
func pathLess(a, b string) bool {
	if a == "." || b == "." {
		return a == "." && b != "."
	}
	return strings.ReplaceAll(a, "/", "\x00") < strings.ReplaceAll(b, "/", "\x00")
}
