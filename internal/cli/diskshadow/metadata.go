package diskshadow

import (
	"bytes"
	"encoding/xml"
	"os"
	"path/filepath"
	"time"

	"github.com/linuxvss/vss/internal/vsserr"
	"github.com/linuxvss/vss/pkg/vssmeta"
)

// Metadata is what "set metadata" writes and "load metadata" reads: the
// Backup Components Document of the backup and the Writer Metadata
// Documents of its writers (Windows puts them in a .cab; we keep them in
// one XML file).
type Metadata struct {
	BCD     *vssmeta.BackupComponents
	Writers []*vssmeta.WriterMetadata
}

// The metadata file:
//
//	<?xml version="1.0" encoding="UTF-8"?>
//	<DiskShadowMetadata xmlns="urn:linuxvss:diskshadow:metadata" version="1" created="RFC 3339" computer="HOST">
//	  <BackupComponentsDocument><![CDATA[<?xml …?><BACKUP_COMPONENTS …>…]]></BackupComponentsDocument>
//	  <WriterMetadataDocument name="…" writerId="…" instanceId="…"><![CDATA[<?xml …?><WRITER_METADATA …>…]]></WriterMetadataDocument>
//	  …
//	</DiskShadowMetadata>
//
// Each document is kept byte for byte as the service wrote it, in CDATA.
const metadataNS = "urn:linuxvss:diskshadow:metadata"

type xmlMetadata struct {
	XMLName  xml.Name    `xml:"urn:linuxvss:diskshadow:metadata DiskShadowMetadata"`
	Version  string      `xml:"version,attr"`
	Created  string      `xml:"created,attr,omitempty"`
	Computer string      `xml:"computer,attr,omitempty"`
	BCD      xmlDocument `xml:"BackupComponentsDocument"`
	Writers  []xmlWriter `xml:"WriterMetadataDocument"`
}

type xmlDocument struct {
	Text string `xml:",cdata"`
}

type xmlWriter struct {
	Name       string `xml:"name,attr"`
	WriterID   string `xml:"writerId,attr"`
	InstanceID string `xml:"instanceId,attr"`
	Text       string `xml:",cdata"`
}

// WriteMetadata writes m to path (atomically, mode 0600: writers' private
// metadata may be in it).
func WriteMetadata(path string, m *Metadata) error {
	bcd, err := m.BCD.XML()
	if err != nil {
		return vsserr.Wrap(vsserr.VSS_E_UNEXPECTED, err, "writing the Backup Components Document")
	}
	host, _ := os.Hostname()
	x := xmlMetadata{Version: "1", Created: time.Now().UTC().Format(time.RFC3339), Computer: host, BCD: xmlDocument{Text: string(bcd)}}
	for _, w := range m.Writers {
		doc, err := w.XML()
		if err != nil {
			return vsserr.Wrap(vsserr.VSS_E_UNEXPECTED, err, "writing the metadata document of writer '%s'", w.Name)
		}
		x.Writers = append(x.Writers, xmlWriter{Name: w.Name, WriterID: w.WriterID.String(), InstanceID: w.InstanceID.String(), Text: string(doc)})
	}
	var b bytes.Buffer
	b.WriteString(xml.Header)
	enc := xml.NewEncoder(&b)
	enc.Indent("", "  ")
	if err := enc.Encode(x); err != nil {
		return vsserr.Wrap(vsserr.VSS_E_UNEXPECTED, err, "encoding the metadata file")
	}
	b.WriteByte('\n')
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return vsserr.Wrap(vsserr.E_INVALIDARG, err, "writing the metadata file %s", path)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b.Bytes()); err != nil {
		tmp.Close()
		return vsserr.Wrap(vsserr.E_INVALIDARG, err, "writing the metadata file %s", path)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return vsserr.Wrap(vsserr.E_INVALIDARG, err, "writing the metadata file %s", path)
	}
	if err := tmp.Close(); err != nil {
		return vsserr.Wrap(vsserr.E_INVALIDARG, err, "writing the metadata file %s", path)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return vsserr.Wrap(vsserr.E_INVALIDARG, err, "writing the metadata file %s", path)
	}
	return nil
}

// ParseMetadata reads a metadata file's content and checks every document
// in it.
func ParseMetadata(b []byte) (*Metadata, error) { return parseMetadata("the metadata file", b) }

func parseMetadata(where string, b []byte) (*Metadata, error) {
	var x xmlMetadata
	if err := xml.Unmarshal(b, &x); err != nil {
		return nil, vsserr.Wrap(vsserr.VSS_E_CORRUPT_XML_DOCUMENT, err, "%s is not a diskshadow metadata file (%s)", where, metadataNS)
	}
	if x.Version != "1" {
		return nil, vsserr.New(vsserr.VSS_E_INVALID_XML_DOCUMENT, "%s: version %q; this diskshadow reads version 1", where, x.Version)
	}
	bcd, err := vssmeta.ParseBackupComponents([]byte(x.BCD.Text))
	if err != nil {
		return nil, vsserr.Wrap(vsserr.VSS_E_INVALID_XML_DOCUMENT, err, "the Backup Components Document of %s", where)
	}
	m := &Metadata{BCD: bcd}
	for i, w := range x.Writers {
		wm, err := vssmeta.ParseWriterMetadata([]byte(w.Text))
		if err != nil {
			return nil, vsserr.Wrap(vsserr.VSS_E_INVALID_XML_DOCUMENT, err, "writer metadata document %d (%q) of %s", i+1, w.Name, where)
		}
		m.Writers = append(m.Writers, wm)
	}
	return m, nil
}

// ReadMetadata reads a metadata file.
func ReadMetadata(path string) (*Metadata, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, vsserr.Wrap(vsserr.VSS_E_OBJECT_NOT_FOUND, err, "load metadata")
	}
	return parseMetadata(path, b)
}
