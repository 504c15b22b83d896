package vssmeta

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// mustXML encodes a seed document.
func mustXML(f *testing.F, doc interface{ XML() ([]byte, error) }) []byte {
	f.Helper()
	b, err := doc.XML()
	if err != nil {
		f.Fatal(err)
	}
	return b
}

func FuzzParseWriterMetadata(f *testing.F) {
	f.Add(mustXML(f, fullWriterMetadata()))
	f.Add(mustXML(f, minimalWriterMetadata()))
	f.Add([]byte(vssStyleWMD))
	f.Add([]byte(`<!DOCTYPE WRITER_METADATA [<!ENTITY x "y">]><WRITER_METADATA/>`))
	f.Add([]byte(`<WRITER_METADATA><IDENTIFICATION writerId="1"/></WRITER_METADATA>`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseWriterMetadata(b)
		if err != nil {
			if !errors.Is(err, ErrInvalidDocument) {
				t.Fatalf("error %v does not match ErrInvalidDocument", err)
			}
			return
		}
		out, err := m.XML()
		if err != nil {
			t.Fatalf("XML of a parsed document: %v", err)
		}
		again, err := ParseWriterMetadata(out)
		if err != nil {
			t.Fatalf("parse of XML: %v\n%s", err, out)
		}
		if diff := cmp.Diff(m, again); diff != "" {
			t.Fatalf("round trip (-parsed +reparsed):\n%s\n%s", diff, out)
		}
	})
}

func FuzzParseBackupComponents(f *testing.F) {
	f.Add(mustXML(f, fullBackupComponents()))
	f.Add(mustXML(f, &BackupComponents{}))
	f.Add([]byte(`<BACKUP_COMPONENTS backupType="full" context="29"><WRITER_COMPONENTS writerId="{E1A4A1C5-7B7D-4F4B-9C38-8B6F0D6B6A01}" instanceId="5d0f7a2e3c1b4e8aa3b50c9e2d7f4b02"><COMPONENT componentName="db1" componentType="database"><PRIVATE_METADATA><![CDATA[<raw>]]></PRIVATE_METADATA><PARTIAL_FILE path="/a" filename="b" ranges="0:1"/></COMPONENT></WRITER_COMPONENTS></BACKUP_COMPONENTS>`))
	f.Add([]byte(`<!DOCTYPE BACKUP_COMPONENTS SYSTEM "file:///etc/passwd"><BACKUP_COMPONENTS/>`))
	f.Fuzz(func(t *testing.T, b []byte) {
		bc, err := ParseBackupComponents(b)
		if err != nil {
			if !errors.Is(err, ErrInvalidDocument) {
				t.Fatalf("error %v does not match ErrInvalidDocument", err)
			}
			return
		}
		out, err := bc.XML()
		if err != nil {
			t.Fatalf("XML of a parsed document: %v", err)
		}
		again, err := ParseBackupComponents(out)
		if err != nil {
			t.Fatalf("parse of XML: %v\n%s", err, out)
		}
		if diff := cmp.Diff(bc, again); diff != "" {
			t.Fatalf("round trip (-parsed +reparsed):\n%s\n%s", diff, out)
		}
	})
}
