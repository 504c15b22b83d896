package vssmeta

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata")

var (
	testWriterID   = uuid.MustParse("e1a4a1c5-7b7d-4f4b-9c38-8b6f0d6b6a01")
	testInstanceID = uuid.MustParse("5d0f7a2e-3c1b-4e8a-a3b5-0c9e2d7f4b02")
	testSetID      = uuid.MustParse("9b2c4d6e-8f0a-4b1c-9d3e-5f7a9b1c3d03")
	testShadowID   = uuid.MustParse("1f3e5d7c-9b0a-4c2e-8f4d-6b8a0c2e4f04")
	testShadowID2  = uuid.MustParse("2a4c6e80-1b3d-4f5a-9c7e-0d2f4a6c8e05")
)

// fullWriterMetadata is a Writer Metadata Document with every field set.
func fullWriterMetadata() *WriterMetadata {
	return &WriterMetadata{
		WriterID:     testWriterID,
		InstanceID:   testInstanceID,
		Name:         "PostgreSQL Writer",
		InstanceName: "16/main",
		Usage:        UsageUserData,
		Source:       SourceTransactedDB,
		Schema:       SchemaDifferential | SchemaIncremental | SchemaCopy | SchemaWriterSupportsNewTarget,
		Restore: RestoreMethodInfo{
			Method:         RestoreStopStartService,
			Service:        "postgresql@16-main.service",
			WriterRestore:  WriterRestoreIfReplaceFails,
			RebootRequired: true,
		},
		Components: []Component{
			{
				Type:                   ComponentDatabase,
				LogicalPath:            `Clusters\16`,
				Name:                   "main",
				Caption:                `Cluster "16/main" <port 5432> & friends`,
				Flags:                  FlagBackupRecovery | FlagAppRollbackRecovery,
				Selectable:             true,
				SelectableForRestore:   true,
				NotifyOnBackupComplete: true,
				Files: []File{
					{Path: "/var/lib/postgresql/16/main", Filespec: "*", Recursive: true, AlternatePath: "/srv/restore/main"},
					{Path: "/var/lib/postgresql/16/main/pg_wal", Filespec: "0000*", Log: true},
					{Path: "/etc/postgresql/16/main", Filespec: "*.conf"},
				},
			},
			{
				Type:        ComponentFileGroup,
				LogicalPath: `Clusters\16`,
				Name:        "config",
				Caption:     "Configuration",
				Flags:       FlagNotSystemState,
				Selectable:  true,
				Files: []File{
					{Path: "/etc/postgresql-common", Filespec: "*", Recursive: true, AlternatePath: "/srv/restore/common"},
				},
			},
			{
				Type: ComponentFileGroup,
				Name: "empty",
			},
		},
		Excludes: []File{
			{Path: "/var/lib/postgresql/16/main", Filespec: "postmaster.pid"},
			{Path: "/var/lib/postgresql/16/main/pg_stat_tmp", Filespec: "*", Recursive: true},
		},
	}
}

// fullBackupComponents is a Backup Components Document with every field set.
func fullBackupComponents() *BackupComponents {
	return &BackupComponents{
		SetID:              testSetID,
		BackupType:         BackupDifferential,
		SelectComponents:   true,
		PartialFileSupport: true,
		Context:            0x1d,
		Writers: []WriterComponents{
			{
				WriterID:   testWriterID,
				InstanceID: testInstanceID,
				Name:       "PostgreSQL Writer",
				Components: []ComponentState{
					{
						LogicalPath:         `Clusters\16`,
						Name:                "main",
						Type:                ComponentDatabase,
						BackupSucceeded:     true,
						BackupStamp:         "0/3000060",
						PreviousBackupStamp: "0/2000028",
						PrivateMetadata:     "  label: base\nstart wal: 000000010000000000000003\r\n]]> <&> \"quoted\"\t",
						PartialFiles: []PartialFile{
							{Path: "/var/lib/postgresql/16/main/base/5", Filename: "16384", Ranges: "0:8192,65536:8192", Metadata: "changed pages"},
							{Path: "/var/lib/postgresql/16/main/base/5", Filename: "16385", Ranges: "/var/lib/vss/ranges/16385"},
							{Path: "/var/lib/postgresql/16/main/base/5", Filename: "16386"},
						},
						DifferencedFiles: []DifferencedFile{
							{Path: "/var/lib/postgresql/16/main/pg_wal", Filespec: "0000*", Recursive: true, LastModify: "2024-05-01T10:00:00Z"},
							{Path: "/var/lib/postgresql/16/main", Filespec: "*.conf"},
						},
						NewTargets: []NewTarget{
							{Path: "/var/lib/postgresql/16/main", Filespec: "*", Recursive: true, AlternatePath: "/srv/pg/restored"},
						},
						RestoreName:        "main_restored",
						SelectedForRestore: true,
						Failure:            "pg_backup_stop: WAL archiving is not enabled",
					},
					{
						Name: "config",
						Type: ComponentFileGroup,
					},
				},
			},
			{
				WriterID:   uuid.MustParse("7c9e1a3b-5d7f-4a9b-8c1d-3e5f7a9b1c06"),
				InstanceID: uuid.MustParse("8d0f2b4c-6e8a-4b0c-9d2e-4f6a8b0c2d07"),
			},
		},
		Snapshots: []SnapshotInfo{
			{ID: testShadowID, Volume: "/", Path: "/var/lib/vss/shadows/1f3e5d7c"},
			{ID: testShadowID2, Volume: "/srv/data"},
		},
	}
}

// minimalWriterMetadata is the smallest valid Writer Metadata Document.
func minimalWriterMetadata() *WriterMetadata {
	return &WriterMetadata{WriterID: testWriterID, InstanceID: testInstanceID, Name: "w"}
}

func TestWriterMetadataRoundTrip(t *testing.T) {
	for name, m := range map[string]*WriterMetadata{
		"full":    fullWriterMetadata(),
		"minimal": minimalWriterMetadata(),
	} {
		t.Run(name, func(t *testing.T) {
			b, err := m.XML()
			if err != nil {
				t.Fatalf("XML: %v", err)
			}
			got, err := ParseWriterMetadata(b)
			if err != nil {
				t.Fatalf("ParseWriterMetadata: %v\n%s", err, b)
			}
			if diff := cmp.Diff(m, got); diff != "" {
				t.Errorf("round trip (-want +got):\n%s", diff)
			}
			b2, err := got.XML()
			if err != nil {
				t.Fatalf("XML again: %v", err)
			}
			if !bytes.Equal(b, b2) {
				t.Errorf("XML is not stable:\n%s\n---\n%s", b, b2)
			}
		})
	}
}

func TestBackupComponentsRoundTrip(t *testing.T) {
	for name, bc := range map[string]*BackupComponents{
		"full":  fullBackupComponents(),
		"empty": {},
	} {
		t.Run(name, func(t *testing.T) {
			b, err := bc.XML()
			if err != nil {
				t.Fatalf("XML: %v", err)
			}
			got, err := ParseBackupComponents(b)
			if err != nil {
				t.Fatalf("ParseBackupComponents: %v\n%s", err, b)
			}
			if diff := cmp.Diff(bc, got); diff != "" {
				t.Errorf("round trip (-want +got):\n%s", diff)
			}
			b2, err := got.XML()
			if err != nil {
				t.Fatalf("XML again: %v", err)
			}
			if !bytes.Equal(b, b2) {
				t.Errorf("XML is not stable:\n%s\n---\n%s", b, b2)
			}
		})
	}
}

// golden compares b with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name string, b []byte) {
	t.Helper()
	file := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(file, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), string(b)); diff != "" {
		t.Errorf("%s differs (-golden +got):\n%s", file, diff)
	}
}

// wantFragments checks that doc holds every fragment.
func wantFragments(t *testing.T, doc []byte, fragments []string) {
	t.Helper()
	for _, f := range fragments {
		if !bytes.Contains(doc, []byte(f)) {
			t.Errorf("XML lacks %s", f)
		}
	}
}

func TestWriterMetadataXMLNames(t *testing.T) {
	b, err := fullWriterMetadata().XML()
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "writer_metadata.xml", b)
	wantFragments(t, b, []string{
		"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<WRITER_METADATA ",
		`<WRITER_METADATA xmlns="x-schema:#VssWriterMetadataInfo" version="1.1">`,
		`<IDENTIFICATION writerId="e1a4a1c5-7b7d-4f4b-9c38-8b6f0d6b6a01" instanceId="5d0f7a2e-3c1b-4e8a-a3b5-0c9e2d7f4b02" friendlyName="PostgreSQL Writer" instanceName="16/main" usage="USER_DATA" dataSource="TRANSACTION_DB">`,
		`<BACKUP_SCHEMA value="0x113">`,
		`<RESTORE_METHOD method="RESTORE_STOP_START" service="postgresql@16-main.service" writerRestore="ifReplaceFails" rebootRequired="yes">`,
		`<EXCLUDE_FILES path="/var/lib/postgresql/16/main" filespec="postmaster.pid" recursive="no">`,
		`<BACKUP_LOCATIONS>`,
		`<DATABASE logicalPath="Clusters\16" componentName="main" caption="Cluster &#34;16/main&#34; &lt;port 5432&gt; &amp; friends" componentFlags="0x3" selectable="yes" selectableForRestore="yes" notifyOnBackupComplete="yes">`,
		`<DATABASE_FILES path="/var/lib/postgresql/16/main" filespec="*" recursive="yes" alternatePath="/srv/restore/main">`,
		`<DATABASE_LOGFILES path="/var/lib/postgresql/16/main/pg_wal" filespec="0000*" recursive="no">`,
		`<FILE_GROUP logicalPath="Clusters\16" componentName="config" caption="Configuration" componentFlags="0x4" selectable="yes" selectableForRestore="no" notifyOnBackupComplete="no">`,
		`<FILE_LIST path="/etc/postgresql-common" filespec="*" recursive="yes" alternatePath="/srv/restore/common">`,
		"  <IDENTIFICATION ", // indented
	})
}

func TestBackupComponentsXMLNames(t *testing.T) {
	b, err := fullBackupComponents().XML()
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "backup_components.xml", b)
	wantFragments(t, b, []string{
		"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<BACKUP_COMPONENTS ",
		`<BACKUP_COMPONENTS xmlns="x-schema:#VssComponentMetadata" version="1.2" snapshotSetId="9b2c4d6e-8f0a-4b1c-9d3e-5f7a9b1c3d03" backupType="DIFFERENTIAL" selectComponents="yes" partialFileSupport="yes" context="0x1d">`,
		`<WRITER_COMPONENTS writerId="e1a4a1c5-7b7d-4f4b-9c38-8b6f0d6b6a01" instanceId="5d0f7a2e-3c1b-4e8a-a3b5-0c9e2d7f4b02" name="PostgreSQL Writer">`,
		`<COMPONENT logicalPath="Clusters\16" componentName="main" componentType="database" backupSucceeded="yes" backupStamp="0/3000060" previousBackupStamp="0/2000028" restoreName="main_restored" selectedForRestore="yes" failure="pg_backup_stop: WAL archiving is not enabled">`,
		`<PRIVATE_METADATA>  label: base`,
		`<PARTIAL_FILE path="/var/lib/postgresql/16/main/base/5" filename="16384" ranges="0:8192,65536:8192" metadata="changed pages">`,
		`<DIFFERENCED_FILE path="/var/lib/postgresql/16/main/pg_wal" filespec="0000*" recursive="yes" lastModify="2024-05-01T10:00:00Z">`,
		`<NEW_TARGET path="/var/lib/postgresql/16/main" filespec="*" recursive="yes" alternatePath="/srv/pg/restored">`,
		`<COMPONENT componentName="config" componentType="filegroup" backupSucceeded="no" selectedForRestore="no">`,
		`<SNAPSHOT_SET_DESCRIPTION>`,
		`<SNAPSHOT id="1f3e5d7c-9b0a-4c2e-8f4d-6b8a0c2e4f04" volume="/" path="/var/lib/vss/shadows/1f3e5d7c">`,
	})
}

// vssStyleWMD is written the way VSS writes: self-closing elements, GUIDs
// in braces and upper case, lower-case words, no XML declaration.
const vssStyleWMD = `<WRITER_METADATA xmlns="x-schema:#VssWriterMetadataInfo" version="1.1">
<IDENTIFICATION writerId="{E1A4A1C5-7B7D-4F4B-9C38-8B6F0D6B6A01}" instanceId="{5D0F7A2E-3C1B-4E8A-A3B5-0C9E2D7F4B02}" friendlyName="PostgreSQL Writer" usage="user_data" dataSource="TRANSACTION_DB"/>
<RESTORE_METHOD method="RESTORE_IF_CAN_BE_REPLACED" writerRestore="never" rebootRequired="no"/>
<BACKUP_LOCATIONS>
<DATABASE componentName="main" selectable="yes"><DATABASE_FILES path="/var/lib/postgresql/16/main" filespec="*" recursive="yes"/><DATABASE_LOGFILES path="/var/lib/postgresql/16/main/pg_wal" filespec="*"/></DATABASE>
</BACKUP_LOCATIONS>
</WRITER_METADATA>`

func TestParseVSSStyle(t *testing.T) {
	got, err := ParseWriterMetadata([]byte(vssStyleWMD))
	if err != nil {
		t.Fatal(err)
	}
	want := &WriterMetadata{
		WriterID:   testWriterID,
		InstanceID: testInstanceID,
		Name:       "PostgreSQL Writer",
		Usage:      UsageUserData,
		Source:     SourceTransactedDB,
		Restore:    RestoreMethodInfo{Method: RestoreIfCanReplace, WriterRestore: WriterRestoreNever},
		Components: []Component{{
			Type:       ComponentDatabase,
			Name:       "main",
			Selectable: true,
			Files: []File{
				{Path: "/var/lib/postgresql/16/main", Filespec: "*", Recursive: true},
				{Path: "/var/lib/postgresql/16/main/pg_wal", Filespec: "*", Log: true},
			},
		}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestParseWriterMetadataErrors(t *testing.T) {
	const ids = `writerId="e1a4a1c5-7b7d-4f4b-9c38-8b6f0d6b6a01" instanceId="5d0f7a2e-3c1b-4e8a-a3b5-0c9e2d7f4b02"`
	ident := `<IDENTIFICATION ` + ids + ` friendlyName="w" usage="OTHER" dataSource="OTHER"/>`
	wrap := func(body string) string {
		return `<WRITER_METADATA xmlns="x-schema:#VssWriterMetadataInfo" version="1.1">` + body + `</WRITER_METADATA>`
	}
	tests := []struct {
		name, doc, want string
	}{
		{"empty", "", "no <WRITER_METADATA> element"},
		{"too big", strings.Repeat(" ", MaxDocumentSize+1), "more than the limit of 4194304"},
		{"too big once written", wrap(ident + `<BACKUP_LOCATIONS><FILE_GROUP componentName="c" caption='` + strings.Repeat(`"`, MaxDocumentSize-400) + `'/></BACKUP_LOCATIONS>`), "bytes once written, more than the limit of 4194304"},
		{"not XML", "<WRITER_METADATA", "malformed XML"},
		{"unclosed", wrap(ident + "<BACKUP_LOCATIONS>"), "malformed XML"},
		{"doctype", `<?xml version="1.0"?><!DOCTYPE WRITER_METADATA [<!ENTITY x "y">]>` + wrap(ident), "DOCTYPE declarations are not allowed"},
		{"doctype inside", wrap(ident + `<!DOCTYPE x>`), "DOCTYPE declarations are not allowed"},
		{"entity", `<!ENTITY x "y">` + wrap(ident), "XML directive <!ENTITY…> is not allowed"},
		{"undeclared entity", wrap(`<IDENTIFICATION ` + ids + ` friendlyName="&x;" usage="OTHER" dataSource="OTHER"/>`), "malformed XML"},
		{"other encoding", `<?xml version="1.0" encoding="ISO-8859-1"?>` + wrap(ident), "malformed XML"},
		{"wrong root", `<BACKUP_COMPONENTS/>`, "root element is <BACKUP_COMPONENTS>, want <WRITER_METADATA>"},
		{"wrong name space", `<WRITER_METADATA xmlns="urn:other">` + ident + `</WRITER_METADATA>`, `root element is in name space "urn:other"`},
		{"bad version", `<WRITER_METADATA version="2.0">` + ident + `</WRITER_METADATA>`, `version "2.0" is not supported (want 1.1)`},
		{"trailing element", wrap(ident) + "<WRITER_METADATA/>", "element <WRITER_METADATA> after the root element"},
		{"trailing text", wrap(ident) + "junk", "text outside the root element"},
		{"leading text", "junk" + wrap(ident), "text outside the root element"},
		{"no identification", wrap(""), "no <IDENTIFICATION> element"},
		{"two identifications", wrap(ident + ident), "2 <IDENTIFICATION> elements, want one"},
		{"unknown element", wrap(ident + "<EXCLUDE_FILE/>"), "unknown element <EXCLUDE_FILE> in <WRITER_METADATA>"},
		{"missing writer ID", wrap(`<IDENTIFICATION friendlyName="w"/>`), "IDENTIFICATION: writerId is missing"},
		{"bad writer ID", wrap(`<IDENTIFICATION writerId="nope" instanceId="x"/>`), `IDENTIFICATION: writerId "nope" is not a GUID`},
		{"zero writer ID", wrap(`<IDENTIFICATION writerId="00000000-0000-0000-0000-000000000000" instanceId="5d0f7a2e-3c1b-4e8a-a3b5-0c9e2d7f4b02" friendlyName="w" usage="OTHER" dataSource="OTHER"/>`), "writer ID is zero"},
		{"unknown usage", wrap(`<IDENTIFICATION ` + ids + ` friendlyName="w" usage="USERDATA" dataSource="OTHER"/>`), `IDENTIFICATION: unknown usage "USERDATA" (want UNDEFINED, BOOTABLE_SYSTEM_STATE, SYSTEM_SERVICE, USER_DATA or OTHER)`},
		{"missing usage", wrap(`<IDENTIFICATION ` + ids + ` friendlyName="w" dataSource="OTHER"/>`), `IDENTIFICATION: usage is missing`},
		{"unknown source", wrap(`<IDENTIFICATION ` + ids + ` friendlyName="w" usage="OTHER" dataSource="SQL"/>`), `IDENTIFICATION: unknown dataSource "SQL" (want UNDEFINED, TRANSACTION_DB, NONTRANSACTIONAL_DB or OTHER)`},
		{"bad schema", wrap(ident + `<BACKUP_SCHEMA value="lots"/>`), `BACKUP_SCHEMA: value "lots" is not a 32-bit number`},
		{"schema too big", wrap(ident + `<BACKUP_SCHEMA value="0x100000000"/>`), `BACKUP_SCHEMA: value "0x100000000" is not a 32-bit number`},
		{"unknown schema bit", wrap(ident + `<BACKUP_SCHEMA value="0x800"/>`), `backup schema 0x800 has unknown bits 0x800`},
		{"two schemas", wrap(ident + `<BACKUP_SCHEMA value="1"/><BACKUP_SCHEMA value="2"/>`), `2 <BACKUP_SCHEMA> elements, want one`},
		{"unknown method", wrap(ident + `<RESTORE_METHOD method="RESTORE_IF_NOT_THERE" writerRestore="never"/>`), `RESTORE_METHOD: unknown method "RESTORE_IF_NOT_THERE" (want UNDEFINED, RESTORE_IF_NONE_THERE,`},
		{"unknown writer restore", wrap(ident + `<RESTORE_METHOD method="CUSTOM" writerRestore="sometimes"/>`), `RESTORE_METHOD: unknown writerRestore "sometimes" (want undefined, never, ifReplaceFails or always)`},
		{"bad reboot", wrap(ident + `<RESTORE_METHOD method="CUSTOM" writerRestore="never" rebootRequired="true"/>`), `RESTORE_METHOD: rebootRequired "true" is not yes or no`},
		{"bad exclude recursive", wrap(ident + `<EXCLUDE_FILES path="/a" filespec="*" recursive="1"/>`), `exclude 1: file "/a": recursive "1" is not yes or no`},
		{"exclude alternate", wrap(ident + `<EXCLUDE_FILES path="/a" filespec="*" alternatePath="/b"/>`), `exclude 1: file "/a": an exclude has no alternate path`},
		{"unknown component element", wrap(ident + `<BACKUP_LOCATIONS><TABLE componentName="t"/></BACKUP_LOCATIONS>`), `component "t": unknown element <TABLE> in <BACKUP_LOCATIONS> (want DATABASE or FILE_GROUP)`},
		{"file list in database", wrap(ident + `<BACKUP_LOCATIONS><DATABASE componentName="db1"><FILE_LIST path="/a" filespec="*"/></DATABASE></BACKUP_LOCATIONS>`), `component "db1": unknown element <FILE_LIST> in <DATABASE> (want DATABASE_FILES or DATABASE_LOGFILES)`},
		{"log files in file group", wrap(ident + `<BACKUP_LOCATIONS><FILE_GROUP componentName="fg"><DATABASE_LOGFILES path="/a" filespec="*"/></FILE_GROUP></BACKUP_LOCATIONS>`), `component "fg": unknown element <DATABASE_LOGFILES> in <FILE_GROUP> (want FILE_LIST)`},
		{"bad flags", wrap(ident + `<BACKUP_LOCATIONS><DATABASE componentName="db1" componentFlags="-1"/></BACKUP_LOCATIONS>`), `component "db1": componentFlags "-1" is not a 32-bit number`},
		{"bad selectable", wrap(ident + `<BACKUP_LOCATIONS><DATABASE componentName="db1" selectable="maybe"/></BACKUP_LOCATIONS>`), `component "db1": selectable "maybe" is not yes or no`},
		{"bad selectable for restore", wrap(ident + `<BACKUP_LOCATIONS><DATABASE componentName="db1" selectableForRestore="maybe"/></BACKUP_LOCATIONS>`), `component "db1": selectableForRestore "maybe" is not yes or no`},
		{"bad notify", wrap(ident + `<BACKUP_LOCATIONS><DATABASE componentName="db1" notifyOnBackupComplete="maybe"/></BACKUP_LOCATIONS>`), `component "db1": notifyOnBackupComplete "maybe" is not yes or no`},
		{"relative file", wrap(ident + `<BACKUP_LOCATIONS><FILE_GROUP componentName="db1"><FILE_LIST path="rel/x" filespec="*"/></FILE_GROUP></BACKUP_LOCATIONS>`), `component "db1": file path "rel/x" is not absolute`},
		{"unnamed component", wrap(ident + `<BACKUP_LOCATIONS><FILE_GROUP/><FILE_GROUP/></BACKUP_LOCATIONS>`), `component 1: name is empty`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := ParseWriterMetadata([]byte(tt.doc))
			if err == nil {
				t.Fatalf("ParseWriterMetadata succeeded: %+v", m)
			}
			if !errors.Is(err, ErrInvalidDocument) {
				t.Errorf("error %v does not match ErrInvalidDocument", err)
			}
			if !strings.HasPrefix(err.Error(), "writer metadata: ") {
				t.Errorf("error %q does not name the document", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q lacks %q", err, tt.want)
			}
		})
	}
}

func TestParseBackupComponentsErrors(t *testing.T) {
	const ids = `writerId="e1a4a1c5-7b7d-4f4b-9c38-8b6f0d6b6a01" instanceId="5d0f7a2e-3c1b-4e8a-a3b5-0c9e2d7f4b02"`
	wrap := func(body string) string {
		return `<BACKUP_COMPONENTS xmlns="x-schema:#VssComponentMetadata" version="1.2">` + body + `</BACKUP_COMPONENTS>`
	}
	comp := func(attrs, body string) string {
		return wrap(`<WRITER_COMPONENTS ` + ids + ` name="pg"><COMPONENT componentName="db1" componentType="database" ` + attrs + `>` + body + `</COMPONENT></WRITER_COMPONENTS>`)
	}
	tests := []struct {
		name, doc, want string
	}{
		{"empty", "", "no <BACKUP_COMPONENTS> element"},
		{"too big", strings.Repeat(" ", MaxDocumentSize+1), "more than the limit of 4194304"},
		{"too big once written", wrap(`<WRITER_COMPONENTS ` + ids + `><COMPONENT componentName="c" componentType="database" failure='` + strings.Repeat(`"`, MaxDocumentSize-400) + `'/></WRITER_COMPONENTS>`), "bytes once written, more than the limit of 4194304"},
		{"doctype", `<!DOCTYPE BACKUP_COMPONENTS SYSTEM "file:///etc/passwd">` + wrap(""), "DOCTYPE declarations are not allowed"},
		{"wrong root", `<WRITER_METADATA/>`, "root element is <WRITER_METADATA>, want <BACKUP_COMPONENTS>"},
		{"wrong name space", `<BACKUP_COMPONENTS xmlns="x-schema:#VssWriterMetadataInfo"/>`, `root element is in name space "x-schema:#VssWriterMetadataInfo", want "x-schema:#VssComponentMetadata"`},
		{"bad version", `<BACKUP_COMPONENTS version="12"/>`, `version "12" is not supported`},
		{"unknown element", wrap(`<WRITER/>`), `unknown element <WRITER> in <BACKUP_COMPONENTS>`},
		{"bad set ID", `<BACKUP_COMPONENTS snapshotSetId="x"/>`, `snapshotSetId "x" is not a GUID`},
		{"unknown backup type", `<BACKUP_COMPONENTS backupType="FULLEST"/>`, `unknown backupType "FULLEST" (want UNDEFINED, FULL, INCREMENTAL, DIFFERENTIAL, LOG, COPY or OTHER)`},
		{"bad select", `<BACKUP_COMPONENTS selectComponents="y"/>`, `selectComponents "y" is not yes or no`},
		{"bad partial", `<BACKUP_COMPONENTS partialFileSupport="n"/>`, `partialFileSupport "n" is not yes or no`},
		{"bad context", `<BACKUP_COMPONENTS context="0xZ"/>`, `context "0xZ" is not a 32-bit number`},
		{"missing writer ID", wrap(`<WRITER_COMPONENTS name="pg"/>`), `writer "pg": writerId is missing`},
		{"missing instance ID", wrap(`<WRITER_COMPONENTS writerId="e1a4a1c5-7b7d-4f4b-9c38-8b6f0d6b6a01"/>`), `writer 1: instanceId is missing`},
		{"zero writer ID", wrap(`<WRITER_COMPONENTS writerId="00000000-0000-0000-0000-000000000000" instanceId="5d0f7a2e-3c1b-4e8a-a3b5-0c9e2d7f4b02" name="pg"/>`), `writer "pg": writer ID is zero`},
		{"duplicate writer", wrap(`<WRITER_COMPONENTS ` + ids + `/><WRITER_COMPONENTS ` + ids + `/>`), `writer instance 5d0f7a2e-3c1b-4e8a-a3b5-0c9e2d7f4b02: duplicate instance ID`},
		{"unknown writer element", wrap(`<WRITER_COMPONENTS ` + ids + ` name="pg"><COMPONENTS/></WRITER_COMPONENTS>`), `writer "pg": unknown element <COMPONENTS> in <WRITER_COMPONENTS> (want COMPONENT)`},
		{"unknown component type", comp(`componentType="table"`, ""), `writer "pg": component "db1": unknown componentType "table" (want undefined, database or filegroup)`},
		{"undefined component type", wrap(`<WRITER_COMPONENTS ` + ids + ` name="pg"><COMPONENT componentName="db1" componentType="undefined"/></WRITER_COMPONENTS>`), `writer "pg": component "db1": type undefined is not database or filegroup`},
		{"bad succeeded", comp(`backupSucceeded="ok"`, ""), `component "db1": backupSucceeded "ok" is not yes or no`},
		{"bad selected", comp(`selectedForRestore="ok"`, ""), `component "db1": selectedForRestore "ok" is not yes or no`},
		{"two private metadata", comp("", `<PRIVATE_METADATA>a</PRIVATE_METADATA><PRIVATE_METADATA>b</PRIVATE_METADATA>`), `component "db1": 2 <PRIVATE_METADATA> elements, want one`},
		{"unknown component element", comp("", `<PARTIAL_FILES/>`), `component "db1": unknown element <PARTIAL_FILES> in <COMPONENT>`},
		{"bad differenced recursive", comp("", `<DIFFERENCED_FILE path="/a" filespec="*" recursive="x"/>`), `component "db1": differenced file 1: file "/a": recursive "x" is not yes or no`},
		{"bad new target recursive", comp("", `<NEW_TARGET path="/a" filespec="*" recursive="x" alternatePath="/b"/>`), `component "db1": new target 1: file "/a": recursive "x" is not yes or no`},
		{"bad ranges", comp("", `<PARTIAL_FILE path="/a" filename="b" ranges="0:-1"/>`), `writer "pg": component "db1": partial file 1: file "/a/b": range 1 "0:-1": length "-1" is not a non-negative integer`},
		{"unknown snapshot set element", wrap(`<SNAPSHOT_SET_DESCRIPTION><SNAPSHOTS/></SNAPSHOT_SET_DESCRIPTION>`), `unknown element <SNAPSHOTS> in <SNAPSHOT_SET_DESCRIPTION> (want SNAPSHOT)`},
		{"two snapshot sets", wrap(`<SNAPSHOT_SET_DESCRIPTION/><SNAPSHOT_SET_DESCRIPTION/>`), `2 <SNAPSHOT_SET_DESCRIPTION> elements, want one`},
		{"missing snapshot ID", wrap(`<SNAPSHOT_SET_DESCRIPTION><SNAPSHOT volume="/"/></SNAPSHOT_SET_DESCRIPTION>`), `snapshot 1: id is missing`},
		{"bad snapshot ID", wrap(`<SNAPSHOT_SET_DESCRIPTION><SNAPSHOT id="1" volume="/"/></SNAPSHOT_SET_DESCRIPTION>`), `snapshot 1: id "1" is not a GUID`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := ParseBackupComponents([]byte(tt.doc))
			if err == nil {
				t.Fatalf("ParseBackupComponents succeeded: %+v", b)
			}
			if !errors.Is(err, ErrInvalidDocument) {
				t.Errorf("error %v does not match ErrInvalidDocument", err)
			}
			if !strings.HasPrefix(err.Error(), "backup components: ") {
				t.Errorf("error %q does not name the document", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q lacks %q", err, tt.want)
			}
		})
	}
}

func TestParseAcceptsVariants(t *testing.T) {
	// Decimal numbers, upper-case words, a byte order mark, comments and
	// processing instructions around the root, no name space.
	doc := "\xEF\xBB\xBF<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!-- saved by a requester -->\n" +
		`<BACKUP_COMPONENTS backupType="full" selectComponents="YES" context="29">` +
		`<WRITER_COMPONENTS writerId="{E1A4A1C5-7B7D-4F4B-9C38-8B6F0D6B6A01}" instanceId="5d0f7a2e3c1b4e8aa3b50c9e2d7f4b02">` +
		`<COMPONENT componentName="db1" componentType="DATABASE"><PRIVATE_METADATA><![CDATA[<raw & text>]]></PRIVATE_METADATA></COMPONENT>` +
		`</WRITER_COMPONENTS></BACKUP_COMPONENTS>` + "\n<?trailer x?>\n"
	got, err := ParseBackupComponents([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	want := &BackupComponents{
		BackupType:       BackupFull,
		SelectComponents: true,
		Context:          29,
		Writers: []WriterComponents{{
			WriterID:   testWriterID,
			InstanceID: testInstanceID,
			Components: []ComponentState{{Name: "db1", Type: ComponentDatabase, PrivateMetadata: "<raw & text>"}},
		}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}
