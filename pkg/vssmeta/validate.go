package vssmeta

import (
	"errors"
	"fmt"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"
)

// Limits of a document.
const (
	// MaxDocumentSize is the largest document Parse reads and XML writes.
	MaxDocumentSize = 4 << 20
	// MaxComponents is the most components a writer may have, in a Writer
	// Metadata Document and in each writer of a Backup Components Document.
	MaxComponents = 10000
	// MaxNameLength is the longest writer or instance name, in bytes.
	MaxNameLength = 256
)

// ErrInvalidDocument is matched (errors.Is) by every error that reports a
// malformed or invalid document, from Parse*, XML and Validate.
var ErrInvalidDocument = errors.New("invalid VSS metadata document")

// Names of the documents in errors.
const (
	docWriterMetadata   = "writer metadata"
	docBackupComponents = "backup components"
)

// invalidError is the error of a bad document: it names the document, then
// where and what is wrong, and matches ErrInvalidDocument.
type invalidError struct {
	doc string
	err error
}

func (e *invalidError) Error() string   { return e.doc + ": " + e.err.Error() }
func (e *invalidError) Unwrap() []error { return []error{ErrInvalidDocument, e.err} }

// invalid wraps err (nil stays nil) as an error of the document doc.
func invalid(doc string, err error) error {
	if err == nil {
		return nil
	}
	return &invalidError{doc: doc, err: err}
}

// maxQuoted is how much of a string an error message quotes.
const maxQuoted = 120

// quote quotes s for an error message: plainly when it has only printable
// characters and no double quote (so that a logical path "a\b" stays
// readable), else with Go escapes; a long s is cut.
func quote(s string) string {
	cut := false
	if len(s) > maxQuoted {
		n := maxQuoted
		for n > 0 && !utf8.RuneStart(s[n]) {
			n--
		}
		s, cut = s[:n], true
	}
	plain := utf8.ValidString(s) && !strings.ContainsRune(s, '"')
	if plain {
		for _, r := range s {
			if !strconv.IsPrint(r) {
				plain = false
				break
			}
		}
	}
	q := strconv.Quote(s)
	if plain {
		q = `"` + s + `"`
	}
	if cut {
		q += "…"
	}
	return q
}

// isXMLChar reports whether XML 1.0 can carry r (the Char production).
func isXMLChar(r rune) bool {
	return r == 0x09 || r == 0x0A || r == 0x0D ||
		r >= 0x20 && r <= 0xD7FF ||
		r >= 0xE000 && r <= 0xFFFD ||
		r >= 0x10000 && r <= 0x10FFFF
}

// checkText checks that an XML document can carry s.
func checkText(field, s string) error {
	for i, r := range s {
		if r == utf8.RuneError {
			if _, n := utf8.DecodeRuneInString(s[i:]); n <= 1 {
				return fmt.Errorf("%s is not valid UTF-8", field)
			}
		}
		if r == 0 {
			return fmt.Errorf("%s contains NUL", field)
		}
		if !isXMLChar(r) {
			return fmt.Errorf("%s contains %U, which XML cannot carry", field, r)
		}
	}
	return nil
}

// checkName checks a writer, instance or service name people read: at
// most MaxNameLength bytes, no control characters; required says it must
// not be empty.
func checkName(field, s string, required bool) error {
	if len(s) > MaxNameLength {
		return fmt.Errorf("%s is %d bytes long, more than %d", field, len(s), MaxNameLength)
	}
	return checkLabel(field, s, required)
}

// checkLabel checks a name or logical path: XML text without control
// characters; required says it must not be empty.
func checkLabel(field, s string, required bool) error {
	if s == "" {
		if required {
			return fmt.Errorf("%s is empty", field)
		}
		return nil
	}
	if err := checkText(field, s); err != nil {
		return err
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return fmt.Errorf("%s %s contains the control character %U", field, quote(s), r)
		}
	}
	return nil
}

// checkPath checks an absolute, clean path.
func checkPath(field, p string) error {
	if err := checkText(field, p); err != nil {
		return err
	}
	if !filepath.IsAbs(p) {
		return fmt.Errorf("%s %s is not absolute", field, quote(p))
	}
	if c := filepath.Clean(p); c != p {
		return fmt.Errorf("%s %s is not clean (want %s)", field, quote(p), quote(c))
	}
	return nil
}

// checkFilespec checks a file name pattern: not empty, no "/", no NUL, a
// valid path.Match pattern.
func checkFilespec(spec string) error {
	if spec == "" {
		return errors.New("filespec is empty")
	}
	if strings.IndexByte(spec, 0) >= 0 {
		return errors.New("filespec contains NUL")
	}
	if err := checkText("filespec", spec); err != nil {
		return err
	}
	if strings.Contains(spec, "/") {
		return fmt.Errorf("filespec %s contains \"/\"", quote(spec))
	}
	if _, err := path.Match(spec, ""); err != nil {
		return fmt.Errorf("filespec %s is not a valid pattern: %w", quote(spec), err)
	}
	return nil
}

// checkFileName checks a single file name (PartialFile.Filename).
func checkFileName(field, name string) error {
	if name == "" {
		return fmt.Errorf("%s is empty", field)
	}
	if err := checkText(field, name); err != nil {
		return err
	}
	if strings.Contains(name, "/") || name == "." || name == ".." {
		return fmt.Errorf("%s %s is not a file name", field, quote(name))
	}
	return nil
}

// checkFileSpec checks the directory, pattern and alternate path of a
// file specification; errors start with "file path" or "file <path>:".
func checkFileSpec(dir, spec, alternate string) error {
	if err := checkPath("file path", dir); err != nil {
		return err
	}
	if err := checkFilespec(spec); err != nil {
		return fmt.Errorf("file %s: %w", quote(dir), err)
	}
	if alternate != "" {
		if err := checkPath("alternate path", alternate); err != nil {
			return fmt.Errorf("file %s: %w", quote(dir), err)
		}
	}
	return nil
}

// checkEnum checks that v is a value of the enumeration words names.
func checkEnum[T ~int](field string, words []string, v T) error {
	if !inRange(words, v) {
		return fmt.Errorf("%s %d is out of range (want %s)", field, int(v), allowed(words))
	}
	return nil
}

// checkBits checks that v has only the bits names names.
func checkBits(field string, names []bitName, v uint32) error {
	if extra := v &^ mask(names); extra != 0 {
		return fmt.Errorf("%s 0x%x has unknown bits 0x%x", field, v, extra)
	}
	return nil
}

// componentWhere names the i-th (0-based) component in errors: by its
// full path, or by its position when it has no name.
func componentWhere(logicalPath, name string, i int) string {
	if name == "" {
		return fmt.Sprintf("component %d", i+1)
	}
	return "component " + quote(fullPath(logicalPath, name))
}

// Validate checks the document: non-zero writer and instance IDs, a name
// of at most MaxNameLength bytes without control characters, every
// enumeration in range, at most MaxComponents components, each named,
// typed and unique by logical path and name, and every file
// specification well formed (absolute clean directory, a filespec
// without "/", an absolute alternate path). The error names the problem
// and where it is, and matches ErrInvalidDocument.
func (m *WriterMetadata) Validate() error {
	if m == nil {
		return invalid(docWriterMetadata, errors.New("no document"))
	}
	return invalid(docWriterMetadata, m.validate())
}

func (m *WriterMetadata) validate() error {
	if m.WriterID == uuid.Nil {
		return errors.New("writer ID is zero")
	}
	if m.InstanceID == uuid.Nil {
		return errors.New("instance ID is zero")
	}
	if err := checkName("writer name", m.Name, true); err != nil {
		return err
	}
	if err := checkName("instance name", m.InstanceName, false); err != nil {
		return err
	}
	if err := checkEnum("usage", usageWords, m.Usage); err != nil {
		return err
	}
	if err := checkEnum("data source", sourceWords, m.Source); err != nil {
		return err
	}
	if err := checkBits("backup schema", backupSchemaNames, uint32(m.Schema)); err != nil {
		return err
	}
	if err := checkEnum("restore method", restoreMethodWords, m.Restore.Method); err != nil {
		return err
	}
	if err := checkEnum("writer restore", writerRestoreWords, m.Restore.WriterRestore); err != nil {
		return err
	}
	if err := checkName("restore service", m.Restore.Service, false); err != nil {
		return err
	}
	for i, f := range m.Excludes {
		if err := checkFileSpec(f.Path, f.Filespec, f.AlternatePath); err != nil {
			return fmt.Errorf("exclude %d: %w", i+1, err)
		}
		if f.AlternatePath != "" {
			return fmt.Errorf("exclude %d: file %s: an exclude has no alternate path", i+1, quote(f.Path))
		}
		if f.Log {
			return fmt.Errorf("exclude %d: file %s: an exclude is not a log file", i+1, quote(f.Path))
		}
	}
	if len(m.Components) > MaxComponents {
		return fmt.Errorf("%d components, more than %d", len(m.Components), MaxComponents)
	}
	seen := make(map[[2]string]bool, len(m.Components))
	for i := range m.Components {
		c := &m.Components[i]
		if err := c.validate(); err != nil {
			return fmt.Errorf("%s: %w", componentWhere(c.LogicalPath, c.Name, i), err)
		}
		key := [2]string{c.LogicalPath, c.Name}
		if seen[key] {
			return fmt.Errorf("%s: duplicate component (same logical path and name)", componentWhere(c.LogicalPath, c.Name, i))
		}
		seen[key] = true
	}
	return nil
}

// validate checks one component of a Writer Metadata Document.
func (c *Component) validate() error {
	if err := checkLabel("name", c.Name, true); err != nil {
		return err
	}
	if err := checkLabel("logical path", c.LogicalPath, false); err != nil {
		return err
	}
	if err := checkText("caption", c.Caption); err != nil {
		return err
	}
	if c.Type != ComponentDatabase && c.Type != ComponentFileGroup {
		return fmt.Errorf("type %s is not database or filegroup", c.Type)
	}
	if err := checkBits("component flags", componentFlagNames, uint32(c.Flags)); err != nil {
		return err
	}
	for _, f := range c.Files {
		if err := checkFileSpec(f.Path, f.Filespec, f.AlternatePath); err != nil {
			return err
		}
		if f.Log && c.Type != ComponentDatabase {
			return fmt.Errorf("file %s: a file group has no log files", quote(f.Path))
		}
	}
	return nil
}

// Validate checks the document: the backup type in range; each writer
// with non-zero, unique writer and instance IDs, at most MaxComponents
// components, each named, typed and unique by logical path and name;
// partial files with absolute paths, file names and ranges
// "offset:length[,offset:length…]" (or empty, or the absolute path of a
// file listing them); differenced files with well-formed file
// specifications and an RFC 3339 LastModify when set; new targets with
// absolute paths; snapshots with non-zero, unique IDs and a volume. The
// error names the problem and where it is, and matches ErrInvalidDocument.
func (b *BackupComponents) Validate() error {
	if b == nil {
		return invalid(docBackupComponents, errors.New("no document"))
	}
	return invalid(docBackupComponents, b.validate())
}

// writerWhere names a writer of a Backup Components Document in errors.
func writerWhere(w *WriterComponents, i int) string {
	switch {
	case w.Name != "":
		return "writer " + quote(w.Name)
	case w.InstanceID != uuid.Nil:
		return "writer instance " + w.InstanceID.String()
	}
	return fmt.Sprintf("writer %d", i+1)
}

func (b *BackupComponents) validate() error {
	if err := checkEnum("backup type", backupTypeWords, b.BackupType); err != nil {
		return err
	}
	instances := make(map[uuid.UUID]bool, len(b.Writers))
	for i := range b.Writers {
		w := &b.Writers[i]
		if err := w.validate(); err != nil {
			return fmt.Errorf("%s: %w", writerWhere(w, i), err)
		}
		if instances[w.InstanceID] {
			return fmt.Errorf("%s: duplicate instance ID %s", writerWhere(w, i), w.InstanceID)
		}
		instances[w.InstanceID] = true
	}
	ids := make(map[uuid.UUID]bool, len(b.Snapshots))
	for i, s := range b.Snapshots {
		where := fmt.Sprintf("snapshot %d", i+1)
		if s.ID == uuid.Nil {
			return fmt.Errorf("%s: ID is zero", where)
		}
		where = "snapshot " + s.ID.String()
		if ids[s.ID] {
			return fmt.Errorf("%s: duplicate snapshot ID", where)
		}
		ids[s.ID] = true
		if err := checkLabel("volume", s.Volume, true); err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
		if s.Path != "" {
			if err := checkPath("path", s.Path); err != nil {
				return fmt.Errorf("%s: %w", where, err)
			}
		}
	}
	return nil
}

// validate checks one writer of a Backup Components Document.
func (w *WriterComponents) validate() error {
	if w.WriterID == uuid.Nil {
		return errors.New("writer ID is zero")
	}
	if w.InstanceID == uuid.Nil {
		return errors.New("instance ID is zero")
	}
	if err := checkName("writer name", w.Name, false); err != nil {
		return err
	}
	if len(w.Components) > MaxComponents {
		return fmt.Errorf("%d components, more than %d", len(w.Components), MaxComponents)
	}
	seen := make(map[[2]string]bool, len(w.Components))
	for i := range w.Components {
		c := &w.Components[i]
		if err := c.validate(); err != nil {
			return fmt.Errorf("%s: %w", componentWhere(c.LogicalPath, c.Name, i), err)
		}
		key := [2]string{c.LogicalPath, c.Name}
		if seen[key] {
			return fmt.Errorf("%s: duplicate component (same logical path and name)", componentWhere(c.LogicalPath, c.Name, i))
		}
		seen[key] = true
	}
	return nil
}

// validate checks one component of a Backup Components Document.
func (c *ComponentState) validate() error {
	if err := checkLabel("name", c.Name, true); err != nil {
		return err
	}
	if err := checkLabel("logical path", c.LogicalPath, false); err != nil {
		return err
	}
	if c.Type != ComponentDatabase && c.Type != ComponentFileGroup {
		return fmt.Errorf("type %s is not database or filegroup", c.Type)
	}
	for _, t := range []struct{ field, s string }{
		{"backup stamp", c.BackupStamp},
		{"previous backup stamp", c.PreviousBackupStamp},
		{"private metadata", c.PrivateMetadata},
		{"restore name", c.RestoreName},
		{"failure", c.Failure},
	} {
		if err := checkText(t.field, t.s); err != nil {
			return err
		}
	}
	for i, p := range c.PartialFiles {
		if err := p.validate(); err != nil {
			return fmt.Errorf("partial file %d: %w", i+1, err)
		}
	}
	for i, d := range c.DifferencedFiles {
		if err := checkFileSpec(d.Path, d.Filespec, ""); err != nil {
			return fmt.Errorf("differenced file %d: %w", i+1, err)
		}
		if d.LastModify != "" {
			if _, err := time.Parse(time.RFC3339, d.LastModify); err != nil {
				return fmt.Errorf("differenced file %d: file %s: last modify time %s is not RFC 3339", i+1, quote(d.Path), quote(d.LastModify))
			}
		}
	}
	for i, t := range c.NewTargets {
		if err := checkFileSpec(t.Path, t.Filespec, ""); err != nil {
			return fmt.Errorf("new target %d: %w", i+1, err)
		}
		if t.AlternatePath == "" {
			return fmt.Errorf("new target %d: file %s: alternate path is empty", i+1, quote(t.Path))
		}
		if err := checkPath("alternate path", t.AlternatePath); err != nil {
			return fmt.Errorf("new target %d: file %s: %w", i+1, quote(t.Path), err)
		}
	}
	return nil
}

// validate checks a partial file.
func (p *PartialFile) validate() error {
	if err := checkPath("file path", p.Path); err != nil {
		return err
	}
	if err := checkFileName("file name", p.Filename); err != nil {
		return fmt.Errorf("file %s: %w", quote(p.Path), err)
	}
	if err := checkText("metadata", p.Metadata); err != nil {
		return fmt.Errorf("file %s: %w", quote(path.Join(p.Path, p.Filename)), err)
	}
	if strings.HasPrefix(p.Ranges, "/") {
		// A file listing the ranges.
		if err := checkPath("ranges file", p.Ranges); err != nil {
			return fmt.Errorf("file %s: %w", quote(path.Join(p.Path, p.Filename)), err)
		}
		return nil
	}
	if _, err := ParseRanges(p.Ranges); err != nil {
		return fmt.Errorf("file %s: %w", quote(path.Join(p.Path, p.Filename)), err)
	}
	return nil
}

// ParseRanges parses the byte ranges of a partial file:
// "offset:length[,offset:length…]" with non-negative decimal integers, as
// VSS writes them. The empty string gives no ranges.
func ParseRanges(s string) ([][2]int64, error) {
	if s == "" {
		return nil, nil
	}
	parts := strings.Split(s, ",")
	out := make([][2]int64, 0, len(parts))
	for i, part := range parts {
		off, length, ok := strings.Cut(part, ":")
		if !ok {
			return nil, fmt.Errorf("range %d %s is not offset:length", i+1, quote(part))
		}
		o, err := parseNonNegative(off)
		if err != nil {
			return nil, fmt.Errorf("range %d %s: offset %w", i+1, quote(part), err)
		}
		l, err := parseNonNegative(length)
		if err != nil {
			return nil, fmt.Errorf("range %d %s: length %w", i+1, quote(part), err)
		}
		if o > (1<<63-1)-l {
			return nil, fmt.Errorf("range %d %s: offset plus length overflows", i+1, quote(part))
		}
		out = append(out, [2]int64{o, l})
	}
	return out, nil
}

// parseNonNegative parses a non-negative decimal integer: digits only.
func parseNonNegative(s string) (int64, error) {
	if s == "" {
		return 0, errors.New("is empty")
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("%s is not a non-negative integer", quote(s))
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s is too large", quote(s))
	}
	return n, nil
}

// FormatRanges writes byte ranges as ParseRanges reads them:
// "offset:length,offset:length"; no ranges give "".
func FormatRanges(ranges [][2]int64) string {
	var sb strings.Builder
	for i, r := range ranges {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(strconv.FormatInt(r[0], 10))
		sb.WriteByte(':')
		sb.WriteString(strconv.FormatInt(r[1], 10))
	}
	return sb.String()
}
