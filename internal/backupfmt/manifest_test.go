package backupfmt

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

const sumA = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"

// validManifest is a small manifest with every kind of entry.
func validManifest() string {
	return `{"format":1,"version":"2026-11-25T19-50-00.000Z","kind":"incremental","base":"2026-11-24T10-00-00.000Z",
"created":"2026-11-25T19:50:00Z","set_id":"s","chunk_size":4096,
"metadata":[{"name":"bcd.xml","size":3,"sha256":"` + sumA + `"}],
"files":[
{"path":".","type":"dir","mode":"755","uid":0,"gid":0,"mtime_ns":1},
{"path":"a","type":"file","mode":"4755","uid":1,"gid":2,"mtime_ns":3,"size":5000,"xattrs":[{"name":"user.x","value":"AAE="}],
 "runs":[{"off":0,"len":4096,"at":0,"sha256":["` + sumA + `"]},{"off":4096,"len":904,"version":"2026-11-24T10-00-00.000Z","file":"data/old","at":4096,"sha256":["` + sumA + `"]}]},
{"path":"b","type":"hardlink","mode":"4755","uid":1,"gid":2,"mtime_ns":3,"link":"a"},
{"path":"l","type":"symlink","mode":"777","uid":0,"gid":0,"mtime_ns":3,"target":"/etc"},
{"path":"s","type":"file","mode":"644","uid":0,"gid":0,"mtime_ns":3,"size":100000,"extents":[[8192,100]],
 "runs":[{"off":8192,"len":4096,"at":0,"sha256":["` + sumA + `"]}]}
]}`
}

func TestParseManifest(t *testing.T) {
	if _, err := ParseManifest([]byte(validManifest())); err != nil {
		t.Fatalf("valid manifest: %v", err)
	}
	for _, c := range []struct {
		name, from, to, wantErr string
	}{
		{"format", `"format":1`, `"format":2`, "format 2"},
		{"kind", `"kind":"incremental"`, `"kind":"weekly"`, "unknown kind"},
		{"base newer", `"base":"2026-11-24T10-00-00.000Z"`, `"base":"2027-01-01T00-00-00.000Z"`, "not older"},
		{"bad id", `"version":"2026-11-25T19-50-00.000Z"`, `"version":"../x"`, "not a version id"},
		{"escape path", `"path":"s"`, `"path":"../s"`, "bad path"},
		{"absolute path", `"path":"s"`, `"path":"/s"`, "bad path"},
		{"below symlink", `"path":"s"`, `"path":"l/s"`, "below \"l\""},
		{"dup", `"path":"s"`, `"path":"a"`, "listed twice"},
		{"mode", `"mode":"644"`, `"mode":"99"`, "bad mode"},
		{"unaligned run", `"off":8192,"len":4096`, `"off":8000,"len":4096`, "unaligned"},
		{"run past size", `"size":100000`, `"size":9000`, "outside the size"},
		{"sum count", `"len":4096,"at":0,"sha256":["` + sumA + `"]},{`, `"len":2048,"at":0,"sha256":["` + sumA + `"]},{`, "sums"},
		{"bad sum", `"file":"data/old","at":4096,"sha256":["` + sumA, `"file":"data/old","at":4096,"sha256":["` + strings.ToUpper(sumA), "bad sha256"},
		{"ref newer", `"version":"2026-11-24T10-00-00.000Z","file"`, `"version":"2026-11-26T10-00-00.000Z","file"`, "not older"},
		{"ref file escapes", `"file":"data/old"`, `"file":"data/../../etc/passwd"`, "bad data file"},
		{"ref file outside data", `"file":"data/old"`, `"file":"manifest.json"`, "bad data file"},
		{"link to nothing", `"link":"a"`, `"link":"zz"`, "hard link"},
		{"metadata name", `"name":"bcd.xml"`, `"name":"../bcd.xml"`, "bad or repeated"},
		{"unknown field", `"set_id":"s"`, `"set_id":"s","extra":1`, "unknown field"},
		{"negative at", `"file":"data/old","at":4096`, `"file":"data/old","at":-1`, "outside the size"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := strings.Replace(validManifest(), c.from, c.to, 1)
			if s == validManifest() {
				t.Fatalf("test case changes nothing")
			}
			_, err := ParseManifest([]byte(s))
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("got %v, want an error with %q", err, c.wantErr)
			}
		})
	}
}

func TestRunsRoundTrip(t *testing.T) {
	const own, old = "2026-11-25T19-50-00.000Z", "2026-11-24T10-00-00.000Z"
	bs := []block{
		{off: 0, len: 10, sum: "1", version: own, file: "data/p", at: 0},
		{off: 10, len: 10, sum: "2", version: own, file: "data/p", at: 10},
		{off: 20, len: 10, sum: "3", version: old, file: "data/p", at: 20},
		{off: 30, len: 10, sum: "4", version: old, file: "data/q", at: 0},
		{off: 50, len: 5, sum: "5", version: own, file: "data/p", at: 20},
	}
	runs := runsOf(bs, "p", own)
	want := []Run{
		{Off: 0, Len: 20, At: 0, SHA256: []string{"1", "2"}},
		{Off: 20, Len: 10, Version: old, At: 20, SHA256: []string{"3"}},
		{Off: 30, Len: 10, Version: old, File: "data/q", At: 0, SHA256: []string{"4"}},
		{Off: 50, Len: 5, At: 20, SHA256: []string{"5"}},
	}
	if d := cmp.Diff(want, runs); d != "" {
		t.Errorf("runs (-want +got):\n%s", d)
	}
	f := File{Path: "p", Runs: runs}
	if d := cmp.Diff(bs, f.blocks(10, own), cmp.AllowUnexported(block{})); d != "" {
		t.Errorf("blocks (-want +got):\n%s", d)
	}
}

// FuzzManifest: the parser never panics, and what it accepts encodes and
// parses back to the same manifest.
func FuzzManifest(f *testing.F) {
	f.Add([]byte(validManifest()))
	f.Add([]byte(`{"format":1,"version":"2026-11-25T19-50-00.000Z","kind":"full","created":"2026-11-25T19:50:00Z","chunk_size":65536,"files":[]}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseManifest(b)
		if err != nil {
			return
		}
		enc, err := m.encode()
		if err != nil {
			t.Fatalf("encode of a parsed manifest: %v", err)
		}
		m2, err := ParseManifest(enc)
		if err != nil {
			t.Fatalf("re-parse of an encoded manifest: %v\n%s", err, enc)
		}
		if d := cmp.Diff(m, m2, cmpopts.EquateEmpty()); d != "" {
			t.Fatalf("round trip (-first +second):\n%s", d)
		}
		for i := range m.Files {
			m.Files[i].blocks(m.ChunkSize, m.Version) // must not panic
		}
	})
}
