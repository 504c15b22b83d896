package vssmeta

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/google/uuid"
)

// The XML name spaces and versions of the documents.
const (
	writerMetadataNamespace   = "x-schema:#VssWriterMetadataInfo"
	writerMetadataVersion     = "1.1"
	backupComponentsNamespace = "x-schema:#VssComponentMetadata"
	backupComponentsVersion   = "1.2"
)

// Element names.
const (
	elemWriterMetadata   = "WRITER_METADATA"
	elemDatabase         = "DATABASE"
	elemFileGroup        = "FILE_GROUP"
	elemDatabaseFiles    = "DATABASE_FILES"
	elemDatabaseLogFiles = "DATABASE_LOGFILES"
	elemFileList         = "FILE_LIST"
	elemBackupComponents = "BACKUP_COMPONENTS"
)

// xmlUnknown catches elements a container does not know, to refuse them.
type xmlUnknown struct {
	XMLName xml.Name
}

type xmlWriterMetadata struct {
	XMLName        xml.Name
	Version        string              `xml:"version,attr"`
	Identification []xmlIdentification `xml:"IDENTIFICATION"`
	Schema         []xmlSchema         `xml:"BACKUP_SCHEMA"`
	Restore        []xmlRestoreMethod  `xml:"RESTORE_METHOD"`
	Excludes       []xmlExclude        `xml:"EXCLUDE_FILES"`
	Locations      []xmlLocations      `xml:"BACKUP_LOCATIONS"`
	Unknown        []xmlUnknown        `xml:",any"`
}

type xmlIdentification struct {
	WriterID     string `xml:"writerId,attr"`
	InstanceID   string `xml:"instanceId,attr"`
	FriendlyName string `xml:"friendlyName,attr"`
	InstanceName string `xml:"instanceName,attr,omitempty"`
	Usage        string `xml:"usage,attr"`
	DataSource   string `xml:"dataSource,attr"`
}

type xmlSchema struct {
	Value string `xml:"value,attr"`
}

type xmlRestoreMethod struct {
	Method         string `xml:"method,attr"`
	Service        string `xml:"service,attr,omitempty"`
	WriterRestore  string `xml:"writerRestore,attr"`
	RebootRequired string `xml:"rebootRequired,attr"`
}

type xmlLocations struct {
	Components []xmlComponent `xml:",any"`
}

type xmlComponent struct {
	XMLName                xml.Name
	LogicalPath            string    `xml:"logicalPath,attr,omitempty"`
	ComponentName          string    `xml:"componentName,attr"`
	Caption                string    `xml:"caption,attr,omitempty"`
	ComponentFlags         string    `xml:"componentFlags,attr"`
	Selectable             string    `xml:"selectable,attr"`
	SelectableForRestore   string    `xml:"selectableForRestore,attr"`
	NotifyOnBackupComplete string    `xml:"notifyOnBackupComplete,attr"`
	Files                  []xmlFile `xml:",any"`
}

type xmlFile struct {
	XMLName       xml.Name
	Path          string `xml:"path,attr"`
	Filespec      string `xml:"filespec,attr"`
	Recursive     string `xml:"recursive,attr"`
	AlternatePath string `xml:"alternatePath,attr,omitempty"`
}

// xmlExclude is an xmlFile without XMLName: encoding/xml would give an
// element with an empty XMLName xmlns="" under the root.
type xmlExclude struct {
	Path          string `xml:"path,attr"`
	Filespec      string `xml:"filespec,attr"`
	Recursive     string `xml:"recursive,attr"`
	AlternatePath string `xml:"alternatePath,attr,omitempty"`
}

type xmlBackupComponents struct {
	XMLName            xml.Name
	Version            string                `xml:"version,attr"`
	SnapshotSetID      string                `xml:"snapshotSetId,attr"`
	BackupType         string                `xml:"backupType,attr"`
	SelectComponents   string                `xml:"selectComponents,attr"`
	PartialFileSupport string                `xml:"partialFileSupport,attr"`
	Context            string                `xml:"context,attr"`
	Writers            []xmlWriterComponents `xml:"WRITER_COMPONENTS"`
	SnapshotSet        []xmlSnapshotSet      `xml:"SNAPSHOT_SET_DESCRIPTION"`
	Unknown            []xmlUnknown          `xml:",any"`
}

type xmlWriterComponents struct {
	WriterID   string              `xml:"writerId,attr"`
	InstanceID string              `xml:"instanceId,attr"`
	Name       string              `xml:"name,attr,omitempty"`
	Components []xmlComponentState `xml:"COMPONENT"`
	Unknown    []xmlUnknown        `xml:",any"`
}

type xmlComponentState struct {
	LogicalPath         string               `xml:"logicalPath,attr,omitempty"`
	ComponentName       string               `xml:"componentName,attr"`
	ComponentType       string               `xml:"componentType,attr"`
	BackupSucceeded     string               `xml:"backupSucceeded,attr"`
	BackupStamp         string               `xml:"backupStamp,attr,omitempty"`
	PreviousBackupStamp string               `xml:"previousBackupStamp,attr,omitempty"`
	RestoreName         string               `xml:"restoreName,attr,omitempty"`
	SelectedForRestore  string               `xml:"selectedForRestore,attr"`
	Failure             string               `xml:"failure,attr,omitempty"`
	PrivateMetadata     []string             `xml:"PRIVATE_METADATA"`
	PartialFiles        []xmlPartialFile     `xml:"PARTIAL_FILE"`
	DifferencedFiles    []xmlDifferencedFile `xml:"DIFFERENCED_FILE"`
	NewTargets          []xmlNewTarget       `xml:"NEW_TARGET"`
	Unknown             []xmlUnknown         `xml:",any"`
}

type xmlPartialFile struct {
	Path     string `xml:"path,attr"`
	Filename string `xml:"filename,attr"`
	Ranges   string `xml:"ranges,attr"`
	Metadata string `xml:"metadata,attr,omitempty"`
}

type xmlDifferencedFile struct {
	Path       string `xml:"path,attr"`
	Filespec   string `xml:"filespec,attr"`
	Recursive  string `xml:"recursive,attr"`
	LastModify string `xml:"lastModify,attr,omitempty"`
}

type xmlNewTarget struct {
	Path          string `xml:"path,attr"`
	Filespec      string `xml:"filespec,attr"`
	Recursive     string `xml:"recursive,attr"`
	AlternatePath string `xml:"alternatePath,attr"`
}

type xmlSnapshotSet struct {
	Snapshots []xmlSnapshot `xml:"SNAPSHOT"`
	Unknown   []xmlUnknown  `xml:",any"`
}

type xmlSnapshot struct {
	ID     string `xml:"id,attr"`
	Volume string `xml:"volume,attr"`
	Path   string `xml:"path,attr,omitempty"`
}

// --- writing ---------------------------------------------------------------

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func hex(v uint32) string { return "0x" + strconv.FormatUint(uint64(v), 16) }

// encode writes v as an indented document with an XML declaration.
func encode(doc string, v any) ([]byte, error) {
	body, err := xml.MarshalIndent(v, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("%s: encode XML: %w", doc, err)
	}
	out := make([]byte, 0, len(xml.Header)+len(body)+1)
	out = append(out, xml.Header...)
	out = append(out, body...)
	out = append(out, '\n')
	if len(out) > MaxDocumentSize {
		return nil, invalid(doc, fmt.Errorf("document is %d bytes once written, more than the limit of %d", len(out), MaxDocumentSize))
	}
	return out, nil
}

// XML returns the document as XML in the layout VSS writes (vs_wmxml),
// indented, after an XML declaration:
//
//	<WRITER_METADATA xmlns="x-schema:#VssWriterMetadataInfo" version="1.1">
//	  <IDENTIFICATION writerId="…" instanceId="…" friendlyName="…"
//	      instanceName="…" usage="USER_DATA" dataSource="TRANSACTION_DB"/>
//	  <BACKUP_SCHEMA value="0x3"/>
//	  <RESTORE_METHOD method="RESTORE_IF_CAN_BE_REPLACED" service="…"
//	      writerRestore="never" rebootRequired="no"/>
//	  <EXCLUDE_FILES path="…" filespec="…" recursive="no"/>
//	  <BACKUP_LOCATIONS>
//	    <DATABASE logicalPath="…" componentName="…" caption="…"
//	        componentFlags="0x1" selectable="yes" selectableForRestore="yes"
//	        notifyOnBackupComplete="no">
//	      <DATABASE_FILES path="…" filespec="…" recursive="no"/>
//	      <DATABASE_LOGFILES path="…" filespec="…" recursive="no"/>
//	    </DATABASE>
//	    <FILE_GROUP …>
//	      <FILE_LIST path="…" filespec="…" recursive="yes" alternatePath="…"/>
//	    </FILE_GROUP>
//	  </BACKUP_LOCATIONS>
//	</WRITER_METADATA>
//
// The backup schema is the value attribute of its own BACKUP_SCHEMA
// element. The enumerations are written with their String words, GUIDs in
// lower-case canonical form, booleans as "yes" or "no", flags in
// hexadecimal; optional attributes that are empty are left out (encoding/xml
// writes empty elements as <X …></X>). XML validates the document first,
// so that what it writes ParseWriterMetadata reads back.
func (m *WriterMetadata) XML() ([]byte, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return m.encode()
}

// encode writes a valid document.
func (m *WriterMetadata) encode() ([]byte, error) {
	x := xmlWriterMetadata{
		XMLName: xml.Name{Space: writerMetadataNamespace, Local: elemWriterMetadata},
		Version: writerMetadataVersion,
		Identification: []xmlIdentification{{
			WriterID:     m.WriterID.String(),
			InstanceID:   m.InstanceID.String(),
			FriendlyName: m.Name,
			InstanceName: m.InstanceName,
			Usage:        m.Usage.String(),
			DataSource:   m.Source.String(),
		}},
		Schema: []xmlSchema{{Value: hex(uint32(m.Schema))}},
		Restore: []xmlRestoreMethod{{
			Method:         m.Restore.Method.String(),
			Service:        m.Restore.Service,
			WriterRestore:  m.Restore.WriterRestore.String(),
			RebootRequired: yesNo(m.Restore.RebootRequired),
		}},
	}
	for _, f := range m.Excludes {
		x.Excludes = append(x.Excludes, xmlExclude{
			Path:      f.Path,
			Filespec:  f.Filespec,
			Recursive: yesNo(f.Recursive),
		})
	}
	if len(m.Components) > 0 {
		var loc xmlLocations
		for _, c := range m.Components {
			xc := xmlComponent{
				XMLName:                xml.Name{Local: elemFileGroup},
				LogicalPath:            c.LogicalPath,
				ComponentName:          c.Name,
				Caption:                c.Caption,
				ComponentFlags:         hex(uint32(c.Flags)),
				Selectable:             yesNo(c.Selectable),
				SelectableForRestore:   yesNo(c.SelectableForRestore),
				NotifyOnBackupComplete: yesNo(c.NotifyOnBackupComplete),
			}
			if c.Type == ComponentDatabase {
				xc.XMLName.Local = elemDatabase
			}
			for _, f := range c.Files {
				name := elemFileList
				if c.Type == ComponentDatabase {
					name = elemDatabaseFiles
					if f.Log {
						name = elemDatabaseLogFiles
					}
				}
				xc.Files = append(xc.Files, xmlFile{
					XMLName:       xml.Name{Local: name},
					Path:          f.Path,
					Filespec:      f.Filespec,
					Recursive:     yesNo(f.Recursive),
					AlternatePath: f.AlternatePath,
				})
			}
			loc.Components = append(loc.Components, xc)
		}
		x.Locations = []xmlLocations{loc}
	}
	return encode(docWriterMetadata, &x)
}

// XML returns the document as XML in the layout VSS writes (vs_cmxml),
// indented, after an XML declaration:
//
//	<BACKUP_COMPONENTS xmlns="x-schema:#VssComponentMetadata" version="1.2"
//	    snapshotSetId="…" backupType="FULL" selectComponents="yes"
//	    partialFileSupport="no" context="0x0">
//	  <WRITER_COMPONENTS writerId="…" instanceId="…" name="…">
//	    <COMPONENT logicalPath="…" componentName="…" componentType="database"
//	        backupSucceeded="yes" backupStamp="…" previousBackupStamp="…"
//	        restoreName="…" selectedForRestore="no" failure="…">
//	      <PRIVATE_METADATA>…</PRIVATE_METADATA>
//	      <PARTIAL_FILE path="…" filename="…" ranges="0:4096" metadata="…"/>
//	      <DIFFERENCED_FILE path="…" filespec="…" recursive="no" lastModify="…"/>
//	      <NEW_TARGET path="…" filespec="…" recursive="no" alternatePath="…"/>
//	    </COMPONENT>
//	  </WRITER_COMPONENTS>
//	  <SNAPSHOT_SET_DESCRIPTION>
//	    <SNAPSHOT id="…" volume="…" path="…"/>
//	  </SNAPSHOT_SET_DESCRIPTION>
//	</BACKUP_COMPONENTS>
//
// The words, GUIDs, booleans and numbers are written as by
// WriterMetadata.XML; SNAPSHOT_SET_DESCRIPTION is left out when there are
// no snapshots. XML validates the document first, so that what it writes
// ParseBackupComponents reads back.
func (b *BackupComponents) XML() ([]byte, error) {
	if err := b.Validate(); err != nil {
		return nil, err
	}
	return b.encode()
}

// encode writes a valid document.
func (b *BackupComponents) encode() ([]byte, error) {
	x := xmlBackupComponents{
		XMLName:            xml.Name{Space: backupComponentsNamespace, Local: elemBackupComponents},
		Version:            backupComponentsVersion,
		SnapshotSetID:      b.SetID.String(),
		BackupType:         b.BackupType.String(),
		SelectComponents:   yesNo(b.SelectComponents),
		PartialFileSupport: yesNo(b.PartialFileSupport),
		Context:            hex(b.Context),
	}
	for _, w := range b.Writers {
		xw := xmlWriterComponents{
			WriterID:   w.WriterID.String(),
			InstanceID: w.InstanceID.String(),
			Name:       w.Name,
		}
		for _, c := range w.Components {
			xc := xmlComponentState{
				LogicalPath:         c.LogicalPath,
				ComponentName:       c.Name,
				ComponentType:       c.Type.String(),
				BackupSucceeded:     yesNo(c.BackupSucceeded),
				BackupStamp:         c.BackupStamp,
				PreviousBackupStamp: c.PreviousBackupStamp,
				RestoreName:         c.RestoreName,
				SelectedForRestore:  yesNo(c.SelectedForRestore),
				Failure:             c.Failure,
			}
			if c.PrivateMetadata != "" {
				xc.PrivateMetadata = []string{c.PrivateMetadata}
			}
			for _, p := range c.PartialFiles {
				xc.PartialFiles = append(xc.PartialFiles, xmlPartialFile(p))
			}
			for _, d := range c.DifferencedFiles {
				xc.DifferencedFiles = append(xc.DifferencedFiles, xmlDifferencedFile{
					Path:       d.Path,
					Filespec:   d.Filespec,
					Recursive:  yesNo(d.Recursive),
					LastModify: d.LastModify,
				})
			}
			for _, t := range c.NewTargets {
				xc.NewTargets = append(xc.NewTargets, xmlNewTarget{
					Path:          t.Path,
					Filespec:      t.Filespec,
					Recursive:     yesNo(t.Recursive),
					AlternatePath: t.AlternatePath,
				})
			}
			xw.Components = append(xw.Components, xc)
		}
		x.Writers = append(x.Writers, xw)
	}
	if len(b.Snapshots) > 0 {
		var set xmlSnapshotSet
		for _, s := range b.Snapshots {
			set.Snapshots = append(set.Snapshots, xmlSnapshot{
				ID:     s.ID.String(),
				Volume: s.Volume,
				Path:   s.Path,
			})
		}
		x.SnapshotSet = []xmlSnapshotSet{set}
	}
	return encode(docBackupComponents, &x)
}

// --- reading ---------------------------------------------------------------

// directiveFilter passes the raw tokens of d on, refusing DOCTYPE and the
// other <!…> directives (so no entity is ever declared).
type directiveFilter struct{ d *xml.Decoder }

func (f directiveFilter) Token() (xml.Token, error) {
	t, err := f.d.RawToken()
	if d, ok := t.(xml.Directive); ok {
		word := d
		for i, c := range d {
			if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z') || i == 20 {
				word = d[:i]
				break
			}
		}
		if strings.EqualFold(string(word), "DOCTYPE") {
			return nil, errors.New("DOCTYPE declarations are not allowed (no DTD, no entities)")
		}
		return nil, fmt.Errorf("XML directive <!%s…> is not allowed", word)
	}
	return t, err
}

// bom is the UTF-8 byte order mark, which a document may start with.
var bom = []byte{0xEF, 0xBB, 0xBF}

// decode reads a document whose root element is root (in name space ns or
// none) into v, refusing directives and content after the root.
func decode(b []byte, root, ns, version string, v any) error {
	if len(b) > MaxDocumentSize {
		return fmt.Errorf("document is %d bytes, more than the limit of %d", len(b), MaxDocumentSize)
	}
	b = bytes.TrimPrefix(b, bom)
	d := xml.NewTokenDecoder(directiveFilter{xml.NewDecoder(bytes.NewReader(b))})
	seen := false
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("malformed XML: %w", err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if seen {
				return fmt.Errorf("element <%s> after the root element", elemName(t.Name.Local))
			}
			seen = true
			if t.Name.Local != root {
				return fmt.Errorf("root element is <%s>, want <%s>", elemName(t.Name.Local), root)
			}
			if t.Name.Space != "" && t.Name.Space != ns {
				return fmt.Errorf("root element is in name space %s, want %s", quote(t.Name.Space), quote(ns))
			}
			for _, a := range t.Attr {
				if a.Name.Space == "" && a.Name.Local == "version" {
					if err := checkVersion(a.Value, version); err != nil {
						return err
					}
				}
			}
			if err := d.DecodeElement(v, &t); err != nil {
				return fmt.Errorf("malformed XML: %w", err)
			}
		case xml.CharData:
			if len(bytes.TrimSpace(t)) > 0 {
				return errors.New("text outside the root element")
			}
		}
	}
	if !seen {
		return fmt.Errorf("no <%s> element", root)
	}
	return nil
}

// checkVersion accepts the versions of our major version.
func checkVersion(have, want string) error {
	major, _, _ := strings.Cut(want, ".")
	if have != major && !strings.HasPrefix(have, major+".") {
		return fmt.Errorf("version %s is not supported (want %s)", quote(have), want)
	}
	return nil
}

// parseBool reads "yes" or "no"; a missing attribute is false.
func parseBool(attr, s string) (bool, error) {
	switch {
	case s == "" || strings.EqualFold(s, "no"):
		return false, nil
	case strings.EqualFold(s, "yes"):
		return true, nil
	}
	return false, fmt.Errorf("%s %s is not yes or no", attr, quote(s))
}

// parseNumber reads a hexadecimal ("0x…") or decimal uint32; a missing
// attribute is 0.
func parseNumber(attr, s string) (uint32, error) {
	if s == "" {
		return 0, nil
	}
	digits, base := s, 10
	if len(s) > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X') {
		digits, base = s[2:], 16
	}
	n, err := strconv.ParseUint(digits, base, 32)
	if err != nil {
		return 0, fmt.Errorf("%s %s is not a 32-bit number", attr, quote(s))
	}
	return uint32(n), nil
}

// parseWord reads the word of an enumeration (any case).
func parseWord[T ~int](attr string, words []string, s string) (T, error) {
	if v, ok := lookup[T](words, s); ok {
		return v, nil
	}
	if s == "" {
		return 0, fmt.Errorf("%s is missing (want %s)", attr, allowed(words))
	}
	return 0, fmt.Errorf("unknown %s %s (want %s)", attr, quote(s), allowed(words))
}

// parseID reads a GUID; required says it must be there.
func parseID(attr, s string, required bool) (uuid.UUID, error) {
	if s == "" {
		if required {
			return uuid.Nil, fmt.Errorf("%s is missing", attr)
		}
		return uuid.Nil, nil
	}
	id, err := uuid.Parse(s)
	if err != nil {
		return uuid.Nil, fmt.Errorf("%s %s is not a GUID", attr, quote(s))
	}
	return id, nil
}

// one returns the only element of xs, or an error when there are more; ok
// is false when there is none.
func one[T any](name string, xs []T) (x T, ok bool, err error) {
	switch len(xs) {
	case 0:
		return x, false, nil
	case 1:
		return xs[0], true, nil
	}
	return x, false, fmt.Errorf("%d <%s> elements, want one", len(xs), name)
}

// elemName shortens an element name from a document for an error message.
func elemName(s string) string {
	q := quote(s)
	if q == `"`+s+`"` {
		return s
	}
	return q
}

// unknownElement refuses the first element of unknown inside container.
func unknownElement(container string, unknown []xmlUnknown, want string) error {
	if len(unknown) == 0 {
		return nil
	}
	return fmt.Errorf("unknown element <%s> in <%s> (want %s)", elemName(unknown[0].XMLName.Local), container, want)
}

// ParseWriterMetadata reads a Writer Metadata Document in the layout of
// WriterMetadata.XML and validates it (see Validate). It reads GUIDs in any
// form uuid.Parse accepts ("{E1A4…}" too), words and "yes"/"no" in any
// case, numbers in hexadecimal ("0x…") or decimal; a missing boolean is
// "no", a missing number 0. Documents above MaxDocumentSize (as read, or
// once written again by XML, which escapes and indents), DOCTYPE and
// other <!…> directives (so no entity is ever declared), another root
// element or name space, a version other than 1.x, unknown words, unknown
// elements inside the document's elements and content after the root are
// errors; unknown attributes are ignored. Every error matches
// ErrInvalidDocument and says what is wrong and where.
func ParseWriterMetadata(b []byte) (*WriterMetadata, error) {
	var x xmlWriterMetadata
	if err := decode(b, elemWriterMetadata, writerMetadataNamespace, writerMetadataVersion, &x); err != nil {
		return nil, invalid(docWriterMetadata, err)
	}
	m, err := x.convert()
	if err != nil {
		return nil, invalid(docWriterMetadata, err)
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	// What we read we must be able to write: XML escapes and indents, so
	// a document near the limit may not fit once written.
	if _, err := m.encode(); err != nil {
		return nil, err
	}
	return m, nil
}

func (x *xmlWriterMetadata) convert() (*WriterMetadata, error) {
	if err := unknownElement(elemWriterMetadata, x.Unknown, "IDENTIFICATION, BACKUP_SCHEMA, RESTORE_METHOD, EXCLUDE_FILES or BACKUP_LOCATIONS"); err != nil {
		return nil, err
	}
	m := new(WriterMetadata)
	id, ok, err := one("IDENTIFICATION", x.Identification)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, errors.New("no <IDENTIFICATION> element")
	}
	if err := id.convert(m); err != nil {
		return nil, fmt.Errorf("IDENTIFICATION: %w", err)
	}

	schema, ok, err := one("BACKUP_SCHEMA", x.Schema)
	if err != nil {
		return nil, err
	}
	if ok {
		v, err := parseNumber("value", schema.Value)
		if err != nil {
			return nil, fmt.Errorf("BACKUP_SCHEMA: %w", err)
		}
		m.Schema = BackupSchema(v)
	}

	restore, ok, err := one("RESTORE_METHOD", x.Restore)
	if err != nil {
		return nil, err
	}
	if ok {
		if m.Restore, err = restore.convert(); err != nil {
			return nil, fmt.Errorf("RESTORE_METHOD: %w", err)
		}
	}

	for i, xe := range x.Excludes {
		xf := xmlFile{Path: xe.Path, Filespec: xe.Filespec, Recursive: xe.Recursive, AlternatePath: xe.AlternatePath}
		f, err := xf.convert()
		if err != nil {
			return nil, fmt.Errorf("exclude %d: %w", i+1, err)
		}
		m.Excludes = append(m.Excludes, f)
	}

	loc, _, err := one("BACKUP_LOCATIONS", x.Locations)
	if err != nil {
		return nil, err
	}
	if len(loc.Components) > MaxComponents {
		return nil, fmt.Errorf("%d components, more than %d", len(loc.Components), MaxComponents)
	}
	for i, xc := range loc.Components {
		c, err := xc.convert()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", componentWhere(xc.LogicalPath, xc.ComponentName, i), err)
		}
		m.Components = append(m.Components, c)
	}
	return m, nil
}

func (x *xmlIdentification) convert(m *WriterMetadata) error {
	var err error
	if m.WriterID, err = parseID("writerId", x.WriterID, true); err != nil {
		return err
	}
	if m.InstanceID, err = parseID("instanceId", x.InstanceID, true); err != nil {
		return err
	}
	m.Name = x.FriendlyName
	m.InstanceName = x.InstanceName
	if m.Usage, err = parseWord[UsageType]("usage", usageWords, x.Usage); err != nil {
		return err
	}
	if m.Source, err = parseWord[SourceType]("dataSource", sourceWords, x.DataSource); err != nil {
		return err
	}
	return nil
}

func (x *xmlRestoreMethod) convert() (RestoreMethodInfo, error) {
	r := RestoreMethodInfo{Service: x.Service}
	var err error
	if r.Method, err = parseWord[RestoreMethod]("method", restoreMethodWords, x.Method); err != nil {
		return r, err
	}
	if r.WriterRestore, err = parseWord[WriterRestore]("writerRestore", writerRestoreWords, x.WriterRestore); err != nil {
		return r, err
	}
	if r.RebootRequired, err = parseBool("rebootRequired", x.RebootRequired); err != nil {
		return r, err
	}
	return r, nil
}

func (x *xmlFile) convert() (File, error) {
	rec, err := parseBool("recursive", x.Recursive)
	if err != nil {
		return File{}, fmt.Errorf("file %s: %w", quote(x.Path), err)
	}
	return File{Path: x.Path, Filespec: x.Filespec, Recursive: rec, AlternatePath: x.AlternatePath}, nil
}

func (x *xmlComponent) convert() (Component, error) {
	var c Component
	var want string
	switch x.XMLName.Local {
	case elemDatabase:
		c.Type = ComponentDatabase
		want = elemDatabaseFiles + " or " + elemDatabaseLogFiles
	case elemFileGroup:
		c.Type = ComponentFileGroup
		want = elemFileList
	default:
		return c, fmt.Errorf("unknown element <%s> in <BACKUP_LOCATIONS> (want %s or %s)", elemName(x.XMLName.Local), elemDatabase, elemFileGroup)
	}
	c.LogicalPath = x.LogicalPath
	c.Name = x.ComponentName
	c.Caption = x.Caption
	flags, err := parseNumber("componentFlags", x.ComponentFlags)
	if err != nil {
		return c, err
	}
	c.Flags = ComponentFlags(flags)
	if c.Selectable, err = parseBool("selectable", x.Selectable); err != nil {
		return c, err
	}
	if c.SelectableForRestore, err = parseBool("selectableForRestore", x.SelectableForRestore); err != nil {
		return c, err
	}
	if c.NotifyOnBackupComplete, err = parseBool("notifyOnBackupComplete", x.NotifyOnBackupComplete); err != nil {
		return c, err
	}
	for _, xf := range x.Files {
		var log bool
		switch name := xf.XMLName.Local; {
		case c.Type == ComponentDatabase && name == elemDatabaseFiles:
		case c.Type == ComponentDatabase && name == elemDatabaseLogFiles:
			log = true
		case c.Type == ComponentFileGroup && name == elemFileList:
		default:
			return c, fmt.Errorf("unknown element <%s> in <%s> (want %s)", elemName(name), x.XMLName.Local, want)
		}
		f, err := xf.convert()
		if err != nil {
			return c, err
		}
		f.Log = log
		c.Files = append(c.Files, f)
	}
	return c, nil
}

// ParseBackupComponents reads a Backup Components Document in the layout
// of BackupComponents.XML and validates it (see Validate), with the rules
// of ParseWriterMetadata. Every error matches ErrInvalidDocument and says
// what is wrong and where.
func ParseBackupComponents(b []byte) (*BackupComponents, error) {
	var x xmlBackupComponents
	if err := decode(b, elemBackupComponents, backupComponentsNamespace, backupComponentsVersion, &x); err != nil {
		return nil, invalid(docBackupComponents, err)
	}
	bc, err := x.convert()
	if err != nil {
		return nil, invalid(docBackupComponents, err)
	}
	if err := bc.Validate(); err != nil {
		return nil, err
	}
	// What we read we must be able to write (see ParseWriterMetadata).
	if _, err := bc.encode(); err != nil {
		return nil, err
	}
	return bc, nil
}

func (x *xmlBackupComponents) convert() (*BackupComponents, error) {
	if err := unknownElement(elemBackupComponents, x.Unknown, "WRITER_COMPONENTS or SNAPSHOT_SET_DESCRIPTION"); err != nil {
		return nil, err
	}
	b := new(BackupComponents)
	var err error
	if b.SetID, err = parseID("snapshotSetId", x.SnapshotSetID, false); err != nil {
		return nil, err
	}
	if x.BackupType == "" {
		b.BackupType = BackupUndefined
	} else if b.BackupType, err = parseWord[BackupType]("backupType", backupTypeWords, x.BackupType); err != nil {
		return nil, err
	}
	if b.SelectComponents, err = parseBool("selectComponents", x.SelectComponents); err != nil {
		return nil, err
	}
	if b.PartialFileSupport, err = parseBool("partialFileSupport", x.PartialFileSupport); err != nil {
		return nil, err
	}
	if b.Context, err = parseNumber("context", x.Context); err != nil {
		return nil, err
	}
	for i, xw := range x.Writers {
		w, err := xw.convert()
		if err != nil {
			where := fmt.Sprintf("writer %d", i+1)
			if xw.Name != "" {
				where = "writer " + quote(xw.Name)
			}
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		b.Writers = append(b.Writers, w)
	}
	set, _, err := one("SNAPSHOT_SET_DESCRIPTION", x.SnapshotSet)
	if err != nil {
		return nil, err
	}
	if err := unknownElement("SNAPSHOT_SET_DESCRIPTION", set.Unknown, "SNAPSHOT"); err != nil {
		return nil, err
	}
	for i, xs := range set.Snapshots {
		id, err := parseID("id", xs.ID, true)
		if err != nil {
			return nil, fmt.Errorf("snapshot %d: %w", i+1, err)
		}
		b.Snapshots = append(b.Snapshots, SnapshotInfo{ID: id, Volume: xs.Volume, Path: xs.Path})
	}
	return b, nil
}

func (x *xmlWriterComponents) convert() (WriterComponents, error) {
	var w WriterComponents
	if err := unknownElement("WRITER_COMPONENTS", x.Unknown, "COMPONENT"); err != nil {
		return w, err
	}
	var err error
	if w.WriterID, err = parseID("writerId", x.WriterID, true); err != nil {
		return w, err
	}
	if w.InstanceID, err = parseID("instanceId", x.InstanceID, true); err != nil {
		return w, err
	}
	w.Name = x.Name
	if len(x.Components) > MaxComponents {
		return w, fmt.Errorf("%d components, more than %d", len(x.Components), MaxComponents)
	}
	for i, xc := range x.Components {
		c, err := xc.convert()
		if err != nil {
			return w, fmt.Errorf("%s: %w", componentWhere(xc.LogicalPath, xc.ComponentName, i), err)
		}
		w.Components = append(w.Components, c)
	}
	return w, nil
}

func (x *xmlComponentState) convert() (ComponentState, error) {
	c := ComponentState{
		LogicalPath:         x.LogicalPath,
		Name:                x.ComponentName,
		BackupStamp:         x.BackupStamp,
		PreviousBackupStamp: x.PreviousBackupStamp,
		RestoreName:         x.RestoreName,
		Failure:             x.Failure,
	}
	if err := unknownElement("COMPONENT", x.Unknown, "PRIVATE_METADATA, PARTIAL_FILE, DIFFERENCED_FILE or NEW_TARGET"); err != nil {
		return c, err
	}
	var err error
	if c.Type, err = parseWord[ComponentType]("componentType", componentTypeWords, x.ComponentType); err != nil {
		return c, err
	}
	if c.BackupSucceeded, err = parseBool("backupSucceeded", x.BackupSucceeded); err != nil {
		return c, err
	}
	if c.SelectedForRestore, err = parseBool("selectedForRestore", x.SelectedForRestore); err != nil {
		return c, err
	}
	if c.PrivateMetadata, _, err = one("PRIVATE_METADATA", x.PrivateMetadata); err != nil {
		return c, err
	}
	for _, p := range x.PartialFiles {
		c.PartialFiles = append(c.PartialFiles, PartialFile(p))
	}
	for i, d := range x.DifferencedFiles {
		rec, err := parseBool("recursive", d.Recursive)
		if err != nil {
			return c, fmt.Errorf("differenced file %d: file %s: %w", i+1, quote(d.Path), err)
		}
		c.DifferencedFiles = append(c.DifferencedFiles, DifferencedFile{
			Path: d.Path, Filespec: d.Filespec, Recursive: rec, LastModify: d.LastModify,
		})
	}
	for i, t := range x.NewTargets {
		rec, err := parseBool("recursive", t.Recursive)
		if err != nil {
			return c, fmt.Errorf("new target %d: file %s: %w", i+1, quote(t.Path), err)
		}
		c.NewTargets = append(c.NewTargets, NewTarget{
			Path: t.Path, Filespec: t.Filespec, Recursive: rec, AlternatePath: t.AlternatePath,
		})
	}
	return c, nil
}
