package postgres

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

const seg16 = 16 << 20

func TestWALSegments(t *testing.T) {
	for _, tc := range []struct {
		first, last string
		size        int64
		want        []string
	}{
		{"000000010000000000000003", "000000010000000000000003", seg16, []string{"000000010000000000000003"}},
		{"000000010000000000000003", "000000010000000000000005", seg16,
			[]string{"000000010000000000000003", "000000010000000000000004", "000000010000000000000005"}},
		// 16 MiB segments: 256 per "log id", the middle part carries.
		{"0000000200000016000000FE", "000000020000001700000001", seg16,
			[]string{"0000000200000016000000FE", "0000000200000016000000FF", "000000020000001700000000", "000000020000001700000001"}},
		// 1 GiB segments: 4 per log id.
		{"000000010000000000000003", "000000010000000100000001", 1 << 30,
			[]string{"000000010000000000000003", "000000010000000100000000", "000000010000000100000001"}},
	} {
		got, err := walSegments(tc.first, tc.last, tc.size)
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("walSegments(%s, %s, %d) = %v, %v; want %v", tc.first, tc.last, tc.size, got, err, tc.want)
		}
	}
	for _, tc := range []struct {
		first, last string
		size        int64
	}{
		{"000000010000000000000005", "000000010000000000000003", seg16}, // backwards
		{"000000010000000000000003", "000000020000000000000004", seg16}, // timelines
		{"00000001000000000000003", "000000010000000000000004", seg16},  // short
		{"00000001000000000000000G", "000000010000000000000004", seg16}, // not hex
		{"000000010000000000000100", "000000010000000100000000", seg16}, // segment beyond 0xFF
		{"000000010000000000000003", "000000010000000000000004", 3 << 20},
	} {
		if got, err := walSegments(tc.first, tc.last, tc.size); err == nil {
			t.Errorf("walSegments(%s, %s, %d) = %v; want an error", tc.first, tc.last, tc.size, got)
		}
	}
}

// TestWALFileName checks XLogFileName against names PostgreSQL prints
// (pg_walfile_name uses the segment before an LSN on a boundary).
func TestWALFileName(t *testing.T) {
	for _, tc := range []struct {
		tli  uint32
		lsn  string
		want string
	}{
		{1, "0/3000028", "000000010000000000000003"},
		{1, "0/4000000", "000000010000000000000003"},
		{1, "16/B374D848", "0000000100000016000000B3"},
		{3, "1/0", "0000000300000000000000FF"},
	} {
		lsn, err := parseLSN(tc.lsn)
		if err != nil {
			t.Fatal(err)
		}
		if got := walFileName(tc.tli, (lsn-1)/seg16, seg16); got != tc.want {
			t.Errorf("segment of %s = %s; want %s", tc.lsn, got, tc.want)
		}
	}
	for _, bad := range []string{"", "3000028", "0/", "G/0", "0/100000000"} {
		if _, err := parseLSN(bad); err == nil {
			t.Errorf("parseLSN(%q) succeeded", bad)
		}
	}
}

func TestTablespaceMap(t *testing.T) {
	// As pg_backup_stop writes it: a path with a newline and a backslash
	// is escaped.
	in := "16385 /mnt/b/ts\n16390 /mnt/b/odd\\\nname\\\\x\n"
	entries, err := parseTablespaceMap(in)
	if err != nil {
		t.Fatal(err)
	}
	want := []mapEntry{{"16385", "/mnt/b/ts"}, {"16390", "/mnt/b/odd\nname\\x"}}
	if !reflect.DeepEqual(entries, want) {
		t.Fatalf("parse = %q; want %q", entries, want)
	}
	if got := formatTablespaceMap(entries); got != in {
		t.Fatalf("format = %q; want %q", got, in)
	}
	shadows := map[string]string{"/mnt/b": "/mnt/b/.snap/1", "/mnt": "/snap/mnt"}
	got, err := rewriteTablespaceMap(in, func(_, p string) (string, error) { return shadowOf(p, shadows) })
	if err != nil {
		t.Fatal(err)
	}
	if want := "16385 /mnt/b/.snap/1/ts\n16390 /mnt/b/.snap/1/odd\\\nname\\\\x\n"; got != want {
		t.Fatalf("rewrite = %q; want %q", got, want)
	}
	// CRLF and blank lines are tolerated, as the server does.
	if e, err := parseTablespaceMap("1 /a\r\n\n2 /b c"); err != nil || !reflect.DeepEqual(e, []mapEntry{{"1", "/a"}, {"2", "/b c"}}) {
		t.Fatalf("parse CRLF = %q, %v", e, err)
	}
	for _, bad := range []string{"x /a\n", "16385\n", "16385 \n", "1 /a\\"} {
		if e, err := parseTablespaceMap(bad); err == nil {
			t.Errorf("parseTablespaceMap(%q) = %q; want an error", bad, e)
		}
	}
	// A path on no shadowed volume fails the rewrite.
	if _, err := rewriteTablespaceMap("1 /elsewhere/ts\n", func(_, p string) (string, error) { return shadowOf(p, shadows) }); err == nil {
		t.Fatal("rewrite of a path on no volume succeeded")
	}
}

func TestPaths(t *testing.T) {
	for _, tc := range []struct {
		path, root string
		want       bool
	}{
		{"/mnt/a", "/mnt/a", true},
		{"/mnt/a/b", "/mnt/a", true},
		{"/mnt/a/b", "/mnt/a/", true},
		{"/mnt/ab", "/mnt/a", false},
		{"/mnt", "/mnt/a", false},
		{"/anything", "/", true},
	} {
		if got := within(tc.path, tc.root); got != tc.want {
			t.Errorf("within(%s, %s) = %v", tc.path, tc.root, got)
		}
	}
	if r, _, ok := coveringRoot("/mnt/a/data", []string{"/", "/mnt/a", "/mnt"}); !ok || r != "/mnt/a" {
		t.Errorf("coveringRoot = %q, %v; want the longest, /mnt/a", r, ok)
	}
	if _, _, ok := coveringRoot("/srv/data", []string{"/mnt/a"}); ok {
		t.Error("coveringRoot found a root for an uncovered path")
	}
	if p, err := shadowOf("/mnt/a/pg/data", map[string]string{"/mnt/a": "/mnt/a/shadow"}); err != nil || p != "/mnt/a/shadow/pg/data" {
		t.Errorf("shadowOf = %q, %v", p, err)
	}
	if p, err := shadowOf("/mnt/a", map[string]string{"/mnt/a": "/s"}); err != nil || p != "/s" {
		t.Errorf("shadowOf(root) = %q, %v", p, err)
	}
	// A path reached through a symbolic link maps by its real place.
	dir := t.TempDir()
	vol := filepath.Join(dir, "vol")
	if err := os.MkdirAll(filepath.Join(vol, "pg"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(vol, "pg"), filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	if p, err := shadowOf(filepath.Join(dir, "link"), map[string]string{vol: "/s"}); err != nil || p != "/s/pg" {
		t.Errorf("shadowOf(link) = %q, %v", p, err)
	}
	// … also when the link itself lies on another volume of the set.
	if p, err := shadowOf(filepath.Join(dir, "link"), map[string]string{vol: "/s", dir: "/other"}); err != nil || p != "/s/pg" {
		t.Errorf("shadowOf(link) with the link's volume in the set = %q, %v", p, err)
	}
}

func TestWriteAndRelink(t *testing.T) {
	dir := t.TempDir()
	own := owner{uid: os.Getuid(), gid: os.Getgid()}
	p := filepath.Join(dir, "backup_label")
	if err := os.WriteFile(p, []byte("old, longer content"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := writeFileSync(p, []byte("new"), own); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p)
	fi, _ := os.Stat(p)
	if err != nil || string(b) != "new" || fi.Mode().Perm() != 0o600 {
		t.Fatalf("after writeFileSync: %q %v mode %v", b, err, fi.Mode())
	}
	src := filepath.Join(dir, "seg")
	if err := os.WriteFile(src, []byte(strings.Repeat("w", 10000)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := copyFile(src, p, own); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); len(b) != 10000 {
		t.Fatalf("copyFile wrote %d bytes", len(b))
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 2 {
		t.Fatalf("temporary files left: %v", ents)
	}
	// relink replaces a link, refuses a directory.
	a, b2 := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	for _, d := range []string{a, b2} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	link := filepath.Join(dir, "pg_wal")
	if err := os.Symlink(a, link); err != nil {
		t.Fatal(err)
	}
	if err := relink(link, b2, own); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.Readlink(link); got != b2 {
		t.Fatalf("link → %s; want %s", got, b2)
	}
	if err := relink(a, b2, own); err == nil {
		t.Fatal("relink replaced a directory")
	}
	if err := removeStalePID(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "postmaster.pid"), []byte("999999999\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := removeStalePID(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "postmaster.pid")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("stale postmaster.pid still there: %v", err)
	}
}

// TestFixRestoredLayout: files restored in place from a shadow point at
// the shadows (tablespace_map, the pg_wal link); PostRestore points them
// back at the cluster's own places.
func TestFixRestoredLayout(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	for _, d := range []string{filepath.Join(data, "pg_tblspc"), filepath.Join(dir, "ts"), filepath.Join(dir, "wal"),
		filepath.Join(dir, "shadow", "ts"), filepath.Join(dir, "shadow", "wal")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(data, "PG_VERSION"), []byte("15\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := func(target, name string) {
		t.Helper()
		_ = os.Remove(name)
		if err := os.Symlink(target, name); err != nil {
			t.Fatal(err)
		}
	}
	link(filepath.Join(dir, "ts"), filepath.Join(data, "pg_tblspc", "16385"))
	link(filepath.Join(dir, "wal"), filepath.Join(data, "pg_wal"))
	prev, err := diskLayout(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(prev.tablespaces) != 1 || prev.tablespaces[0].location != filepath.Join(dir, "ts") || prev.walDir != filepath.Join(dir, "wal") {
		t.Fatalf("disk layout %+v", prev)
	}
	for _, p := range []*layout{prev, nil} {
		// What the restore put in place.
		link(filepath.Join(dir, "shadow", "wal"), filepath.Join(data, "pg_wal"))
		m := "16385 " + filepath.Join(dir, "shadow", "ts") + "\n"
		if err := os.WriteFile(filepath.Join(data, "tablespace_map"), []byte(m), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := fixRestoredLayout(data, p); err != nil {
			t.Fatal(err)
		}
		b, _ := os.ReadFile(filepath.Join(data, "tablespace_map"))
		if want := "16385 " + filepath.Join(dir, "ts") + "\n"; string(b) != want {
			t.Errorf("layout %v: tablespace_map %q; want %q", p != nil, b, want)
		}
		got, _ := os.Readlink(filepath.Join(data, "pg_wal"))
		want := filepath.Join(dir, "wal")
		if p == nil {
			want = filepath.Join(dir, "shadow", "wal") // unknown without PreRestore: left alone
		}
		if got != want {
			t.Errorf("layout %v: pg_wal → %s; want %s", p != nil, got, want)
		}
	}
}
