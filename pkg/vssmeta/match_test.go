package vssmeta

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
)

func TestFileMatches(t *testing.T) {
	tests := []struct {
		file File
		path string
		want bool
	}{
		// Non-recursive: only names directly in Path.
		{File{Path: "/data", Filespec: "*.db"}, "/data/a.db", true},
		{File{Path: "/data", Filespec: "*.db"}, "/data/a.txt", false},
		{File{Path: "/data", Filespec: "*.db"}, "/data/sub/a.db", false},
		{File{Path: "/data", Filespec: "*"}, "/data/x", true},
		{File{Path: "/data", Filespec: "*"}, "/data", false},
		{File{Path: "/data", Filespec: "*"}, "/database/x", false},
		{File{Path: "/data", Filespec: "*"}, "/other/x", false},
		{File{Path: "/data", Filespec: "a?c"}, "/data/abc", true},
		{File{Path: "/data", Filespec: "[ab]*"}, "/data/bz", true},
		{File{Path: "/data", Filespec: "exact.db"}, "/data/exact.db", true},
		{File{Path: "/data", Filespec: "exact.db"}, "/data/exact.db2", false},
		// Recursive: names anywhere below Path.
		{File{Path: "/data", Filespec: "*.db", Recursive: true}, "/data/a.db", true},
		{File{Path: "/data", Filespec: "*.db", Recursive: true}, "/data/x/y/z.db", true},
		{File{Path: "/data", Filespec: "*.db", Recursive: true}, "/data/x.db/y", false},
		{File{Path: "/data", Filespec: "*.db", Recursive: true}, "/database/a.db", false},
		{File{Path: "/data", Filespec: "*", Recursive: true}, "/data/x/y/z", true},
		{File{Path: "/data", Filespec: "*", Recursive: true}, "/data/.hidden/x", true},
		{File{Path: "/data", Filespec: "*", Recursive: true}, "/data", false},
		{File{Path: "/data", Filespec: "*", Recursive: true}, "/", false},
		// The root directory.
		{File{Path: "/", Filespec: "*", Recursive: true}, "/etc/passwd", true},
		{File{Path: "/", Filespec: "*"}, "/etc", true},
		{File{Path: "/", Filespec: "*"}, "/etc/passwd", false},
		// Paths are cleaned; relative paths and bad patterns never match.
		{File{Path: "/data", Filespec: "*"}, "/data/sub/../x", true},
		{File{Path: "/data", Filespec: "*"}, "/data//x", true},
		{File{Path: "/data", Filespec: "*"}, "/data/../etc/passwd", false},
		{File{Path: "/data", Filespec: "*"}, "data/x", false},
		{File{Path: "data", Filespec: "*"}, "/data/x", false},
		{File{Path: "/data", Filespec: "[", Recursive: true}, "/data/[", false},
		{File{Path: "/data", Filespec: ""}, "/data/x", false},
	}
	for _, tt := range tests {
		if got := tt.file.Matches(tt.path); got != tt.want {
			t.Errorf("%+v.Matches(%q) = %v, want %v", tt.file, tt.path, got, tt.want)
		}
	}
}

func TestFullPath(t *testing.T) {
	for _, tt := range []struct {
		c    Component
		want string
	}{
		{Component{Name: "db1"}, "db1"},
		{Component{LogicalPath: "Clusters", Name: "db1"}, `Clusters\db1`},
		{Component{LogicalPath: `Clusters\16`, Name: "main"}, `Clusters\16\main`},
	} {
		if got := tt.c.FullPath(); got != tt.want {
			t.Errorf("%+v.FullPath() = %q, want %q", tt.c, got, tt.want)
		}
		s := ComponentState{LogicalPath: tt.c.LogicalPath, Name: tt.c.Name}
		if got := s.FullPath(); got != tt.want {
			t.Errorf("%+v.FullPath() = %q, want %q", s, got, tt.want)
		}
	}
}

func TestWriterMetadataComponent(t *testing.T) {
	m := fullWriterMetadata()
	c := m.Component(`Clusters\16`, "config")
	if c == nil || c.Type != ComponentFileGroup {
		t.Fatalf("Component = %+v", c)
	}
	c.Caption = "changed"
	if m.Components[1].Caption != "changed" {
		t.Error("Component does not point into the document")
	}
	for _, k := range [][2]string{{"", "config"}, {`Clusters\16`, "Config"}, {"Clusters", "main"}} {
		if c := m.Component(k[0], k[1]); c != nil {
			t.Errorf("Component(%q, %q) = %+v, want nil", k[0], k[1], c)
		}
	}
	if c := (*WriterMetadata)(nil).Component("", "x"); c != nil {
		t.Error("nil document has a component")
	}
}

func TestRoots(t *testing.T) {
	want := []string{
		"/etc/postgresql-common",
		"/etc/postgresql/16/main",
		"/var/lib/postgresql/16/main",
		"/var/lib/postgresql/16/main/pg_wal",
	}
	if diff := cmp.Diff(want, fullWriterMetadata().Roots()); diff != "" {
		t.Errorf("Roots (-want +got):\n%s", diff)
	}
	if got := minimalWriterMetadata().Roots(); len(got) != 0 {
		t.Errorf("Roots of no components = %v", got)
	}
}

func TestBackupComponentsLookup(t *testing.T) {
	b := fullBackupComponents()
	w := b.Writer(testInstanceID)
	if w == nil || w.Name != "PostgreSQL Writer" {
		t.Fatalf("Writer = %+v", w)
	}
	if b.Writer(testWriterID) != nil {
		t.Error("Writer found a writer by its class ID")
	}
	c := w.Component(`Clusters\16`, "main")
	if c == nil || c.BackupStamp != "0/3000060" {
		t.Fatalf("Component = %+v", c)
	}
	c.BackupSucceeded = false
	if b.Writers[0].Components[0].BackupSucceeded {
		t.Error("Component does not point into the document")
	}
	if w.Component("", "main") != nil {
		t.Error("Component ignores the logical path")
	}
	if (*WriterComponents)(nil).Component("", "x") != nil || (*BackupComponents)(nil).Writer(testInstanceID) != nil {
		t.Error("nil documents have content")
	}
}

func TestAddComponent(t *testing.T) {
	m := fullWriterMetadata()
	b := &BackupComponents{BackupType: BackupFull, SelectComponents: true}
	if err := b.AddComponent(m, `Clusters\16`, "main"); err != nil {
		t.Fatal(err)
	}
	if err := b.AddComponent(m, `Clusters\16`, "config"); err != nil {
		t.Fatal(err)
	}
	if err := b.AddComponent(m, `Clusters\16`, "main"); err != nil {
		t.Fatalf("second add: %v", err)
	}
	want := []WriterComponents{{
		WriterID:   testWriterID,
		InstanceID: testInstanceID,
		Name:       "PostgreSQL Writer",
		Components: []ComponentState{
			{LogicalPath: `Clusters\16`, Name: "main", Type: ComponentDatabase},
			{LogicalPath: `Clusters\16`, Name: "config", Type: ComponentFileGroup},
		},
	}}
	if diff := cmp.Diff(want, b.Writers); diff != "" {
		t.Errorf("Writers (-want +got):\n%s", diff)
	}
	if err := b.Validate(); err != nil {
		t.Errorf("the document AddComponent built is invalid: %v", err)
	}

	// A second instance of the same class is a second writer.
	m2 := fullWriterMetadata()
	m2.InstanceID = uuid.MustParse("0e1d2c3b-4a59-4687-9786-a5b4c3d2e1f0")
	if err := b.AddComponent(m2, `Clusters\16`, "main"); err != nil {
		t.Fatal(err)
	}
	if len(b.Writers) != 2 {
		t.Errorf("%d writers, want 2", len(b.Writers))
	}

	for _, tt := range []struct {
		name            string
		w               *WriterMetadata
		logicalPath, cn string
		want            string
	}{
		{"missing", m, "", "main", `writer "PostgreSQL Writer" has no component "main"`},
		{"not selectable", m, "", "empty", `component "empty" of writer "PostgreSQL Writer" is not selectable`},
		{"nil writer", nil, "", "main", "no writer metadata"},
		{"class mismatch", func() *WriterMetadata {
			x := fullWriterMetadata()
			x.WriterID = uuid.MustParse("11111111-2222-4333-8444-555555555555")
			return x
		}(), `Clusters\16`, "main", "belongs to writer class e1a4a1c5-7b7d-4f4b-9c38-8b6f0d6b6a01"},
	} {
		err := b.AddComponent(tt.w, tt.logicalPath, tt.cn)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: AddComponent = %v, want an error with %q", tt.name, err, tt.want)
		}
	}
	if err := (*BackupComponents)(nil).AddComponent(m, "", "main"); err == nil {
		t.Error("AddComponent on a nil document succeeded")
	}
}
