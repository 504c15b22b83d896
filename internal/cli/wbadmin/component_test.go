package wbadmin

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/linuxvss/vss/pkg/vssmeta"
)

// TestSelectionRoots: the roots of a selection are its top-most
// directories, each once, also when a sibling's name extends another's.
func TestSelectionRoots(t *testing.T) {
	s := &selection{
		trees: []string{"/a/b", "/a/b-c"},
		specs: []vssmeta.File{{Path: "/a/b/c", Filespec: "*"}, {Path: "/x", Filespec: "*.db"}, {Path: "/x/", Filespec: "*"}},
	}
	if d := cmp.Diff([]string{"/a/b", "/a/b-c", "/x"}, s.roots()); d != "" {
		t.Errorf("roots (-want +got):\n%s", d)
	}
}

// TestSelectionKeep: what a component backup keeps of a tree.
func TestSelectionKeep(t *testing.T) {
	s := &selection{
		specs:    []vssmeta.File{{Path: "/srv/pg/main", Filespec: "*", Recursive: true}, {Path: "/srv/app", Filespec: "app.db*"}},
		excludes: []vssmeta.File{{Path: "/srv/pg/main", Filespec: "postmaster.pid"}},
	}
	for _, c := range []struct {
		path string
		dir  bool
		want bool
	}{
		{"/srv", true, true},              // leads to the component's files
		{"/srv/pg/main/base", true, true}, // in a whole tree
		{"/srv/pg/main/base/1", false, true},
		{"/srv/pg/main/postmaster.pid", false, false}, // excluded
		{"/srv/pg/other", true, false},
		{"/srv/app/app.db-wal", false, true},
		{"/srv/app/notes.txt", false, false},
		{"/srv/app/sub", true, false}, // not recursive
	} {
		if got := s.keep(c.path, c.dir); got != c.want {
			t.Errorf("keep(%s, dir=%v) = %v, want %v", c.path, c.dir, got, c.want)
		}
	}
}

// TestRenamer: a component restored under a new name.
func TestRenamer(t *testing.T) {
	comp := &vssmeta.Component{Name: "app.db", Files: []vssmeta.File{
		{Path: "/srv/pg/main", Filespec: "*", Recursive: true},
		{Path: "/srv/wal/main", Filespec: "*", Recursive: true},
		{Path: "/srv/app", Filespec: "app.db*"},
	}}
	r := renamer(comp, "copy")
	for in, want := range map[string]string{
		"srv/pg/main":         "srv/pg/copy",
		"srv/pg/main/base/1":  "srv/pg/copy/base/1",
		"srv/wal/main/000001": "srv/wal/copy-main/000001",
		"srv/app/app.db-wal":  "srv/app/copy-wal",
		"srv/app/other.db":    "srv/app/other.db",
		"srv/pg/mainly":       "srv/pg/mainly",
	} {
		if got := r(in); got != want {
			t.Errorf("rename %s = %s, want %s", in, got, want)
		}
	}
}
