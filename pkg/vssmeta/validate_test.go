package vssmeta

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/uuid"
)

func TestValidateWriterMetadata(t *testing.T) {
	tooMany := make([]Component, MaxComponents+1)
	for i := range tooMany {
		tooMany[i] = Component{Type: ComponentFileGroup, Name: "c" + strings.Repeat("x", i%7) + string(rune('a'+i%26)) + uuid.NewString()}
	}
	tests := []struct {
		name   string
		change func(m *WriterMetadata)
		want   string
	}{
		{"zero writer ID", func(m *WriterMetadata) { m.WriterID = uuid.Nil }, "writer ID is zero"},
		{"zero instance ID", func(m *WriterMetadata) { m.InstanceID = uuid.Nil }, "instance ID is zero"},
		{"empty name", func(m *WriterMetadata) { m.Name = "" }, "writer name is empty"},
		{"long name", func(m *WriterMetadata) { m.Name = strings.Repeat("n", 257) }, "writer name is 257 bytes long, more than 256"},
		{"control in name", func(m *WriterMetadata) { m.Name = "a\tb" }, `writer name "a\tb" contains the control character U+0009`},
		{"newline in name", func(m *WriterMetadata) { m.Name = "a\nb" }, "contains the control character U+000A"},
		{"C1 control in name", func(m *WriterMetadata) { m.Name = "a\u0085b" }, "contains the control character U+0085"},
		{"invalid UTF-8 in name", func(m *WriterMetadata) { m.Name = "a\xffb" }, "writer name is not valid UTF-8"},
		{"control in instance name", func(m *WriterMetadata) { m.InstanceName = "x\n" }, "instance name \"x\\n\" contains the control character U+000A"},
		{"non-XML in instance name", func(m *WriterMetadata) { m.InstanceName = "x\x1b" }, "instance name contains U+001B, which XML cannot carry"},
		{"long instance name", func(m *WriterMetadata) { m.InstanceName = strings.Repeat("i", 300) }, "instance name is 300 bytes long"},
		{"usage out of range", func(m *WriterMetadata) { m.Usage = 5 }, "usage 5 is out of range (want UNDEFINED, BOOTABLE_SYSTEM_STATE, SYSTEM_SERVICE, USER_DATA or OTHER)"},
		{"negative usage", func(m *WriterMetadata) { m.Usage = -1 }, "usage -1 is out of range"},
		{"source out of range", func(m *WriterMetadata) { m.Source = 4 }, "data source 4 is out of range"},
		{"schema unknown bit", func(m *WriterMetadata) { m.Schema |= 0x10000 }, "backup schema 0x10113 has unknown bits 0x10000"},
		{"restore method out of range", func(m *WriterMetadata) { m.Restore.Method = 9 }, "restore method 9 is out of range"},
		{"writer restore out of range", func(m *WriterMetadata) { m.Restore.WriterRestore = 4 }, "writer restore 4 is out of range (want undefined, never, ifReplaceFails or always)"},
		{"service with control", func(m *WriterMetadata) { m.Restore.Service = "a\nb" }, "restore service \"a\\nb\" contains the control character"},
		{"too many components", func(m *WriterMetadata) { m.Components = tooMany }, "10001 components, more than 10000"},
		{"unnamed component", func(m *WriterMetadata) { m.Components[1].Name = "" }, "component 2: name is empty"},
		{"control in component name", func(m *WriterMetadata) { m.Components[1].Name = "a\tb" }, "name \"a\\tb\" contains the control character U+0009"},
		{"control in logical path", func(m *WriterMetadata) { m.Components[1].LogicalPath = "a\x7f" }, "logical path \"a\\x7f\" contains the control character U+007F"},
		{"NUL in caption", func(m *WriterMetadata) { m.Components[1].Caption = "a\x00" }, `component "Clusters\16\config": caption contains NUL`},
		{"non-XML caption", func(m *WriterMetadata) { m.Components[1].Caption = "a\uFFFE" }, "caption contains U+FFFE, which XML cannot carry"},
		{"duplicate component", func(m *WriterMetadata) { m.Components[1].Name = "main" }, `component "Clusters\16\main": duplicate component (same logical path and name)`},
		{"undefined component type", func(m *WriterMetadata) { m.Components[0].Type = ComponentUndefined }, `component "Clusters\16\main": type undefined is not database or filegroup`},
		{"component type out of range", func(m *WriterMetadata) { m.Components[0].Type = 3 }, "type ComponentType(3) is not database or filegroup"},
		{"unknown flag", func(m *WriterMetadata) { m.Components[0].Flags = 0x9 }, "component flags 0x9 has unknown bits 0x8"},
		{"relative path", func(m *WriterMetadata) {
			m.Components = []Component{{Type: ComponentFileGroup, Name: "db1", Files: []File{{Path: "rel/x", Filespec: "*"}}}}
		}, `component "db1": file path "rel/x" is not absolute`},
		{"empty path", func(m *WriterMetadata) { m.Components[0].Files[0].Path = "" }, `file path "" is not absolute`},
		{"dot-dot path", func(m *WriterMetadata) { m.Components[0].Files[0].Path = "/var/../etc" }, `file path "/var/../etc" is not clean (want "/etc")`},
		{"trailing slash", func(m *WriterMetadata) { m.Components[0].Files[0].Path = "/var/lib/" }, `file path "/var/lib/" is not clean (want "/var/lib")`},
		{"double slash", func(m *WriterMetadata) { m.Components[0].Files[0].Path = "//var" }, `file path "//var" is not clean (want "/var")`},
		{"NUL in path", func(m *WriterMetadata) { m.Components[0].Files[0].Path = "/a\x00b" }, `file path contains NUL`},
		{"empty filespec", func(m *WriterMetadata) { m.Components[0].Files[0].Filespec = "" }, `file "/var/lib/postgresql/16/main": filespec is empty`},
		{"slash in filespec", func(m *WriterMetadata) { m.Components[0].Files[0].Filespec = "a/*" }, `filespec "a/*" contains "/"`},
		{"NUL in filespec", func(m *WriterMetadata) { m.Components[0].Files[0].Filespec = "a\x00" }, `filespec contains NUL`},
		{"bad pattern", func(m *WriterMetadata) { m.Components[0].Files[0].Filespec = "[a" }, `filespec "[a" is not a valid pattern`},
		{"relative alternate", func(m *WriterMetadata) { m.Components[0].Files[0].AlternatePath = "restore" }, `file "/var/lib/postgresql/16/main": alternate path "restore" is not absolute`},
		{"unclean alternate", func(m *WriterMetadata) { m.Components[0].Files[0].AlternatePath = "/srv/./x" }, `alternate path "/srv/./x" is not clean (want "/srv/x")`},
		{"log in file group", func(m *WriterMetadata) { m.Components[1].Files[0].Log = true }, `component "Clusters\16\config": file "/etc/postgresql-common": a file group has no log files`},
		{"relative exclude", func(m *WriterMetadata) { m.Excludes[1].Path = "tmp" }, `exclude 2: file path "tmp" is not absolute`},
		{"exclude filespec", func(m *WriterMetadata) { m.Excludes[0].Filespec = "" }, `exclude 1: file "/var/lib/postgresql/16/main": filespec is empty`},
		{"exclude alternate", func(m *WriterMetadata) { m.Excludes[0].AlternatePath = "/x" }, `exclude 1: file "/var/lib/postgresql/16/main": an exclude has no alternate path`},
		{"exclude log", func(m *WriterMetadata) { m.Excludes[0].Log = true }, `exclude 1: file "/var/lib/postgresql/16/main": an exclude is not a log file`},
	}
	if err := fullWriterMetadata().Validate(); err != nil {
		t.Fatalf("the full document is invalid: %v", err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := fullWriterMetadata()
			tt.change(m)
			err := m.Validate()
			if err == nil {
				t.Fatal("Validate succeeded")
			}
			if !errors.Is(err, ErrInvalidDocument) {
				t.Errorf("error %v does not match ErrInvalidDocument", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q lacks %q", err, tt.want)
			}
			// XML refuses what Validate refuses.
			if _, xerr := m.XML(); xerr == nil || xerr.Error() != err.Error() {
				t.Errorf("XML error %v, want %v", xerr, err)
			}
		})
	}
}

func TestValidateWriterMetadataNil(t *testing.T) {
	var m *WriterMetadata
	if err := m.Validate(); !errors.Is(err, ErrInvalidDocument) {
		t.Errorf("Validate(nil) = %v", err)
	}
	if _, err := m.XML(); err == nil {
		t.Error("XML(nil) succeeded")
	}
}

func TestValidateBackupComponents(t *testing.T) {
	comp := func(b *BackupComponents) *ComponentState { return &b.Writers[0].Components[0] }
	tests := []struct {
		name   string
		change func(b *BackupComponents)
		want   string
	}{
		{"backup type out of range", func(b *BackupComponents) { b.BackupType = 7 }, "backup type 7 is out of range (want UNDEFINED, FULL, INCREMENTAL, DIFFERENTIAL, LOG, COPY or OTHER)"},
		{"zero writer ID", func(b *BackupComponents) { b.Writers[1].WriterID = uuid.Nil }, "writer instance 8d0f2b4c-6e8a-4b0c-9d2e-4f6a8b0c2d07: writer ID is zero"},
		{"zero instance ID", func(b *BackupComponents) { b.Writers[0].InstanceID = uuid.Nil }, `writer "PostgreSQL Writer": instance ID is zero`},
		{"unnamed writer without IDs", func(b *BackupComponents) { b.Writers[1].InstanceID = uuid.Nil }, `writer 2: instance ID is zero`},
		{"duplicate instance", func(b *BackupComponents) { b.Writers[1].InstanceID = testInstanceID }, "duplicate instance ID 5d0f7a2e-3c1b-4e8a-a3b5-0c9e2d7f4b02"},
		{"control in writer name", func(b *BackupComponents) { b.Writers[1].Name = "a\x00" }, "writer name contains NUL"},
		{"too many components", func(b *BackupComponents) {
			b.Writers[1].Components = make([]ComponentState, MaxComponents+1)
		}, "10001 components, more than 10000"},
		{"unnamed component", func(b *BackupComponents) { b.Writers[0].Components[1].Name = "" }, `writer "PostgreSQL Writer": component 2: name is empty`},
		{"duplicate component", func(b *BackupComponents) {
			b.Writers[0].Components[1].Name, b.Writers[0].Components[1].LogicalPath = "main", `Clusters\16`
		}, `component "Clusters\16\main": duplicate component`},
		{"undefined type", func(b *BackupComponents) { comp(b).Type = ComponentUndefined }, `component "Clusters\16\main": type undefined is not database or filegroup`},
		{"control in logical path", func(b *BackupComponents) { comp(b).LogicalPath = "\r" }, `logical path "\r" contains the control character U+000D`},
		{"bad backup stamp", func(b *BackupComponents) { comp(b).BackupStamp = "\x00" }, "backup stamp contains NUL"},
		{"bad previous stamp", func(b *BackupComponents) { comp(b).PreviousBackupStamp = "\xff" }, "previous backup stamp is not valid UTF-8"},
		{"bad private metadata", func(b *BackupComponents) { comp(b).PrivateMetadata = "\x01" }, "private metadata contains U+0001, which XML cannot carry"},
		{"bad restore name", func(b *BackupComponents) { comp(b).RestoreName = "\x00" }, "restore name contains NUL"},
		{"bad failure", func(b *BackupComponents) { comp(b).Failure = "\x00" }, "failure contains NUL"},
		{"relative partial file", func(b *BackupComponents) { comp(b).PartialFiles[0].Path = "base" }, `partial file 1: file path "base" is not absolute`},
		{"empty partial file name", func(b *BackupComponents) { comp(b).PartialFiles[0].Filename = "" }, `partial file 1: file "/var/lib/postgresql/16/main/base/5": file name is empty`},
		{"partial file name with slash", func(b *BackupComponents) { comp(b).PartialFiles[0].Filename = "a/b" }, `file name "a/b" is not a file name`},
		{"partial file name dot-dot", func(b *BackupComponents) { comp(b).PartialFiles[0].Filename = ".." }, `file name ".." is not a file name`},
		{"ranges without colon", func(b *BackupComponents) { comp(b).PartialFiles[0].Ranges = "0-10" }, `partial file 1: file "/var/lib/postgresql/16/main/base/5/16384": range 1 "0-10" is not offset:length`},
		{"negative offset", func(b *BackupComponents) { comp(b).PartialFiles[0].Ranges = "0:1,-5:10" }, `range 2 "-5:10": offset "-5" is not a non-negative integer`},
		{"empty length", func(b *BackupComponents) { comp(b).PartialFiles[0].Ranges = "5:" }, `range 1 "5:": length is empty`},
		{"trailing comma", func(b *BackupComponents) { comp(b).PartialFiles[0].Ranges = "5:1," }, `range 2 "" is not offset:length`},
		{"relative ranges file", func(b *BackupComponents) { comp(b).PartialFiles[1].Ranges = "/var/../ranges" }, `ranges file "/var/../ranges" is not clean`},
		{"bad partial metadata", func(b *BackupComponents) { comp(b).PartialFiles[0].Metadata = "\x00" }, `metadata contains NUL`},
		{"relative differenced file", func(b *BackupComponents) { comp(b).DifferencedFiles[0].Path = "pg_wal" }, `differenced file 1: file path "pg_wal" is not absolute`},
		{"differenced filespec", func(b *BackupComponents) { comp(b).DifferencedFiles[1].Filespec = "" }, `differenced file 2: file "/var/lib/postgresql/16/main": filespec is empty`},
		{"bad last modify", func(b *BackupComponents) { comp(b).DifferencedFiles[0].LastModify = "2024-05-01 10:00" }, `differenced file 1: file "/var/lib/postgresql/16/main/pg_wal": last modify time "2024-05-01 10:00" is not RFC 3339`},
		{"relative new target", func(b *BackupComponents) { comp(b).NewTargets[0].Path = "main" }, `new target 1: file path "main" is not absolute`},
		{"new target filespec", func(b *BackupComponents) { comp(b).NewTargets[0].Filespec = "x/y" }, `new target 1: file "/var/lib/postgresql/16/main": filespec "x/y" contains "/"`},
		{"relative new target alternate", func(b *BackupComponents) { comp(b).NewTargets[0].AlternatePath = "restored" }, `new target 1: file "/var/lib/postgresql/16/main": alternate path "restored" is not absolute`},
		{"empty new target alternate", func(b *BackupComponents) { comp(b).NewTargets[0].AlternatePath = "" }, `new target 1: file "/var/lib/postgresql/16/main": alternate path is empty`},
		{"zero snapshot ID", func(b *BackupComponents) { b.Snapshots[1].ID = uuid.Nil }, "snapshot 2: ID is zero"},
		{"duplicate snapshot", func(b *BackupComponents) { b.Snapshots[1].ID = testShadowID }, "snapshot 1f3e5d7c-9b0a-4c2e-8f4d-6b8a0c2e4f04: duplicate snapshot ID"},
		{"empty volume", func(b *BackupComponents) { b.Snapshots[0].Volume = "" }, "snapshot 1f3e5d7c-9b0a-4c2e-8f4d-6b8a0c2e4f04: volume is empty"},
		{"relative snapshot path", func(b *BackupComponents) { b.Snapshots[0].Path = "shadows/1" }, `snapshot 1f3e5d7c-9b0a-4c2e-8f4d-6b8a0c2e4f04: path "shadows/1" is not absolute`},
	}
	if err := fullBackupComponents().Validate(); err != nil {
		t.Fatalf("the full document is invalid: %v", err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := fullBackupComponents()
			tt.change(b)
			err := b.Validate()
			if err == nil {
				t.Fatal("Validate succeeded")
			}
			if !errors.Is(err, ErrInvalidDocument) {
				t.Errorf("error %v does not match ErrInvalidDocument", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q lacks %q", err, tt.want)
			}
			if _, xerr := b.XML(); xerr == nil || xerr.Error() != err.Error() {
				t.Errorf("XML error %v, want %v", xerr, err)
			}
		})
	}
	var nilDoc *BackupComponents
	if err := nilDoc.Validate(); !errors.Is(err, ErrInvalidDocument) {
		t.Errorf("Validate(nil) = %v", err)
	}
}

func TestQuote(t *testing.T) {
	for in, want := range map[string]string{
		`a\b`:                          `"a\b"`,
		`say "hi"`:                     `"say \"hi\""`,
		"tab\t":                        `"tab\t"`,
		strings.Repeat("x", 200):       `"` + strings.Repeat("x", maxQuoted) + `"…`,
		"é" + strings.Repeat("é", 100): `"` + strings.Repeat("é", maxQuoted/2) + `"…`,
	} {
		if got := quote(in); got != want {
			t.Errorf("quote(%.20q…) = %s, want %s", in, got, want)
		}
	}
}

func TestRanges(t *testing.T) {
	good := []struct {
		in   string
		want [][2]int64
	}{
		{"", nil},
		{"0:0", [][2]int64{{0, 0}}},
		{"0:8192,65536:4096", [][2]int64{{0, 8192}, {65536, 4096}}},
		{"9223372036854775806:1", [][2]int64{{1<<63 - 2, 1}}},
	}
	for _, tt := range good {
		got, err := ParseRanges(tt.in)
		if err != nil {
			t.Errorf("ParseRanges(%q): %v", tt.in, err)
			continue
		}
		if len(got) != len(tt.want) {
			t.Errorf("ParseRanges(%q) = %v, want %v", tt.in, got, tt.want)
			continue
		}
		for i := range got {
			if got[i] != tt.want[i] {
				t.Errorf("ParseRanges(%q) = %v, want %v", tt.in, got, tt.want)
			}
		}
		if s := FormatRanges(got); s != tt.in {
			t.Errorf("FormatRanges(%v) = %q, want %q", got, s, tt.in)
		}
	}
	bad := map[string]string{
		"1":                      `range 1 "1" is not offset:length`,
		"1:2:3":                  `length "2:3" is not a non-negative integer`,
		":5":                     `offset is empty`,
		"+1:5":                   `offset "+1" is not a non-negative integer`,
		"1: 5":                   `length " 5" is not a non-negative integer`,
		"0x10:5":                 `offset "0x10" is not a non-negative integer`,
		"99999999999999999999:1": `offset "99999999999999999999" is too large`,
		"9223372036854775807:1":  `offset plus length overflows`,
		"0:1,,2:3":               `range 2 "" is not offset:length`,
		"0:1;2:3":                `length "1;2:3" is not a non-negative integer`,
	}
	for in, want := range bad {
		_, err := ParseRanges(in)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseRanges(%q) = %v, want an error with %q", in, err, want)
		}
	}
}
