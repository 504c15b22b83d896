package hook_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"

	"github.com/linuxvss/vss/internal/writers"
	"github.com/linuxvss/vss/internal/writers/hook"
	"github.com/linuxvss/vss/pkg/vssmeta"
)

const fullFile = `# A complete hook writer.
name = "nginx-cache"
class_id = "{1c9b6a2e-54f3-4d8a-b1e7-0f2a3c4d5e6f}"
instance_name = "main"
usage = "system-service"
source = "non-transacted-db"
on_error = "crash-consistent"
user = "www-data"
timeout = "45s"

[[component]]
name = "cache"
logical_path = "web\\nginx"
caption = "nginx cache"
files = [ { path = "/srv/cache/", filespec = "*.bin", recursive = true },
          { path = "/srv/cache2" } ]

[[component]]
name = "index"
type = "database"
files = [ { path = "/var/lib/idx", filespec = "index.db*" } ]

[events]
prepare-snapshot = { command = ["/usr/local/bin/flush-cache", "--all"], timeout = "20s" }
freeze = { command = ["/bin/sh", "-c", "kill -STOP $(cat /run/app.pid)"], timeout = "5s" }
Thaw   = { command = ["/bin/sh", "-c", "kill -CONT $(cat /run/app.pid)"] }
post_snapshot = { command = ["/bin/true"], timeout = "1h" }
`

const minimalFile = `name = "tiny"`

func TestParse(t *testing.T) {
	class := uuid.MustParse("1c9b6a2e-54f3-4d8a-b1e7-0f2a3c4d5e6f")
	tinyClass := uuid.NewSHA1(hook.Namespace, []byte("tiny"))
	for _, c := range []struct {
		name string
		in   string
		want *hook.Config
	}{
		{"full", fullFile, &hook.Config{
			File: "t.toml", Name: "nginx-cache", ClassID: class,
			InstanceID:   uuid.NewSHA1(class, []byte("nginx-cache\x00main")),
			InstanceName: "main", Usage: vssmeta.UsageSystemService, Source: vssmeta.SourceNonTransactedDB,
			OnError: hook.OnErrorCrashConsistent, User: "www-data", Timeout: 45 * time.Second,
			Components: []vssmeta.Component{
				{Type: vssmeta.ComponentFileGroup, LogicalPath: `web\nginx`, Name: "cache", Caption: "nginx cache",
					Selectable: true, SelectableForRestore: true, Files: []vssmeta.File{
						{Path: "/srv/cache", Filespec: "*.bin", Recursive: true},
						{Path: "/srv/cache2", Filespec: "*"},
					}},
				{Type: vssmeta.ComponentDatabase, Name: "index", Selectable: true, SelectableForRestore: true,
					Files: []vssmeta.File{{Path: "/var/lib/idx", Filespec: "index.db*"}}},
			},
			Events: map[writers.Event]hook.Command{
				writers.PrepareSnapshot: {Argv: []string{"/usr/local/bin/flush-cache", "--all"}, Timeout: 20 * time.Second},
				writers.Freeze:          {Argv: []string{"/bin/sh", "-c", "kill -STOP $(cat /run/app.pid)"}, Timeout: 5 * time.Second},
				writers.Thaw:            {Argv: []string{"/bin/sh", "-c", "kill -CONT $(cat /run/app.pid)"}, Timeout: 45 * time.Second},
				writers.PostSnapshot:    {Argv: []string{"/bin/true"}, Timeout: time.Hour},
			},
		}},
		{"minimal", minimalFile, &hook.Config{
			File: "t.toml", Name: "tiny", ClassID: tinyClass, InstanceID: uuid.NewSHA1(tinyClass, []byte("tiny\x00")),
			Usage: vssmeta.UsageUserData, Source: vssmeta.SourceOther, OnError: hook.OnErrorFail,
			Timeout: hook.DefaultTimeout, Events: map[writers.Event]hook.Command{},
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := hook.Parse("t.toml", []byte(c.in))
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(c.want, got); d != "" {
				t.Errorf("Parse (-want +got):\n%s", d)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	for _, c := range []struct {
		name string
		in   string
		line int    // 0: any
		want string // in the message
	}{
		{"syntax", "name = \"x\"\nfreeze = [", 2, ""},
		{"unknown top key", "name = \"x\"\n\nnmae = \"y\"", 3, "unknown key nmae"},
		{"unknown event key", "name = \"x\"\n[events]\nfreeze = { comand = [\"/bin/true\"] }", 3, "unknown key events.comand"}, // go-toml leaves out the map key
		{"unknown component key", "name = \"x\"\n[[component]]\nname = \"c\"\nfile = []", 4, "unknown key component.file"},
		{"wrong type", "name = 3", 1, ""},
		{"no name", "usage = \"other\"", 0, "name: a writer name is required"},
		{"bad class id", "name = \"x\"\nclass_id = \"nope\"", 2, "class_id: not a GUID"},
		{"nil class id", "name = \"x\"\nclass_id = \"00000000-0000-0000-0000-000000000000\"", 2, "nil GUID"},
		{"bad usage", "name = \"x\"\nusage = \"data\"", 2, "unknown usage \"data\""},
		{"bad source", "name = \"x\"\nsource = \"db\"", 2, "unknown source"},
		{"bad policy", "name = \"x\"\non_error = \"ignore\"", 2, "unknown policy \"ignore\""},
		{"bad user", "name = \"x\"\nuser = \"a:b\"", 2, "bad user name"},
		{"bad duration", "name = \"x\"\ntimeout = \"30\"", 2, "bad duration \"30\""},
		{"zero duration", "name = \"x\"\ntimeout = \"0s\"", 2, "out of range"},
		{"negative duration", "name = \"x\"\ntimeout = \"-1s\"", 2, "out of range"},
		{"too long", "name = \"x\"\n[events]\nfreeze = { command = [\"/bin/true\"], timeout = \"61m\" }", 3, "events.freeze.timeout: duration 61m out of range"},
		{"unknown event", "name = \"x\"\n[events]\nfreez = { command = [\"/bin/true\"] }", 3, "unknown writer event \"freez\""},
		{"identify event", "name = \"x\"\n[events]\nidentify = { command = [\"/bin/true\"] }", 3, "Identify runs no command"},
		{"event twice", "name = \"x\"\n[events]\nfreeze = { command = [\"/bin/true\"] }\nFreeze = { command = [\"/bin/true\"] }", 0, "given twice"},
		{"empty command", "name = \"x\"\n[events]\nthaw = { command = [] }", 3, "events.thaw.command: a command is required"},
		{"no command", "name = \"x\"\n[events]\nthaw = { timeout = \"1s\" }", 3, "a command is required"},
		{"relative program", "name = \"x\"\n[events]\nthaw = { command = [\"kill\", \"-CONT\"] }", 3, "program \"kill\" is not an absolute path"},
		{"NUL in argument", "name = \"x\"\n[events]\nthaw = { command = [\"/bin/echo\", \"a\\u0000b\"] }", 3, "NUL"},
		{"no component name", "name = \"x\"\n[[component]]\nfiles = [{path = \"/a\"}]", 2, "component.0.name: a component name is required"},
		{"duplicate component", "name = \"x\"\n[[component]]\nname = \"c\"\nfiles = [{path = \"/a\"}]\n[[component]]\nname = \"c\"\nfiles = [{path = \"/b\"}]", 6, "component.1.name: component \"c\" appears twice"},
		{"no files", "name = \"x\"\n[[component]]\nname = \"c\"", 2, "has no files"},
		{"relative file path", "name = \"x\"\n[[component]]\nname = \"c\"\nfiles = [{path = \"srv\"}]", 4, "path \"srv\" is not absolute"},
		{"filespec with slash", "name = \"x\"\n[[component]]\nname = \"c\"\nfiles = [{path = \"/srv\", filespec = \"a/*\"}]", 4, "names a directory"},
		{"bad component type", "name = \"x\"\n[[component]]\nname = \"c\"\ntype = \"table\"\nfiles = [{path = \"/a\"}]", 4, "unknown component type"},
		{"control character", "name = \"x\\u0007\"", 1, "control character"},
		{"not UTF-8", "name = \"\xff\"", 0, "not UTF-8"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := hook.Parse("bad.toml", []byte(c.in))
			if err == nil {
				t.Fatal("Parse accepted it")
			}
			var pe *hook.ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("error %T %v is not a *ParseError", err, err)
			}
			if pe.File != "bad.toml" || !strings.HasPrefix(err.Error(), "bad.toml:") {
				t.Errorf("error %q does not name the file", err)
			}
			if c.line != 0 && pe.Line != c.line {
				t.Errorf("error %q: line %d, want %d", err, pe.Line, c.line)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not say %q", err, c.want)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"10-first.toml":  "name = \"first\"\n[events]\nfreeze = { command = [\"/bin/true\"] }",
		"20-broken.toml": "name = \"broken\"\n\ntimeout = \"soon\"",
		"30-same.toml":   "name = \"first\"",
		"40-second.toml": "name = \"second\"",
		"README.txt":     "not a writer",
		".hidden.toml":   "garbage",
	}
	for n, s := range files {
		if err := os.WriteFile(filepath.Join(dir, n), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "sub.toml"), 0o755); err != nil {
		t.Fatal(err)
	}
	ws, errs := hook.Load(dir)
	var names []string
	for _, w := range ws {
		names = append(names, w.Name())
	}
	if d := cmp.Diff([]string{"first", "second"}, names); d != "" {
		t.Errorf("writers (-want +got):\n%s", d)
	}
	var msgs []string
	for _, e := range errs {
		msgs = append(msgs, strings.TrimPrefix(e.Error(), dir+"/"))
	}
	want := []string{
		`20-broken.toml:3: timeout: bad duration "soon" (write it like "30s" or "2m")`,
		`30-same.toml: writer name "first" is already used by ` + filepath.Join(dir, "10-first.toml"),
	}
	if d := cmp.Diff(want, msgs); d != "" {
		t.Errorf("errors (-want +got):\n%s", d)
	}
	if ws, errs := hook.Load(filepath.Join(dir, "missing")); len(ws) != 0 || len(errs) != 0 {
		t.Errorf("Load of a missing directory: %v, %v", ws, errs)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{fullFile, minimalFile, hookFile("/bin/true", "/bin/true"),
		"name = \"x\"\n[[component]]\nname = \"c\"\nfiles = [{path = \"/a\"}]\n[events]\nabort = { command = [\"/bin/true\"] }",
		"name = \"x\"\nevents.freeze.command = [\"/bin/true\"]\nevents.freeze.timeout = \"1s\"",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		cfg, err := hook.Parse("fuzz.toml", b)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz.toml") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		if cfg.Name == "" || cfg.ClassID == uuid.Nil || cfg.Timeout <= 0 || cfg.Timeout > hook.MaxTimeout {
			t.Fatalf("accepted a bad config: %+v", cfg)
		}
		for ev, c := range cfg.Events {
			if ev == writers.Identify || len(c.Argv) == 0 || !filepath.IsAbs(c.Argv[0]) || c.Timeout <= 0 || c.Timeout > hook.MaxTimeout {
				t.Fatalf("accepted a bad command for %v: %+v", ev, c)
			}
		}
		seen := map[string]bool{}
		for _, c := range cfg.Components {
			if c.Name == "" || seen[c.Name] || len(c.Files) == 0 {
				t.Fatalf("accepted a bad component: %+v", c)
			}
			seen[c.Name] = true
			for _, fl := range c.Files {
				if !filepath.IsAbs(fl.Path) {
					t.Fatalf("accepted a relative path: %+v", fl)
				}
			}
		}
	})
}
