package diskshadow_test

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	ds "github.com/linuxvss/vss/internal/cli/diskshadow"
	"github.com/linuxvss/vss/internal/testutil"
)

func TestParseArgs(t *testing.T) {
	tests := []struct {
		args []string
		want ds.Options
		err  string
	}{
		{nil, ds.Options{}, ""},
		{[]string{"-s", "x.dsh"}, ds.Options{Script: "x.dsh"}, ""},
		{[]string{"/S", "x.dsh", "/L", "out.txt", "/t"}, ds.Options{Script: "x.dsh", LogFile: "out.txt", Tolerant: true}, ""},
		{[]string{"-l", "log", "-T", "-s", "-"}, ds.Options{Script: "-", LogFile: "log", Tolerant: true}, ""},
		{[]string{"--state-dir", "/st", "--socket=/s.sock", "--config", "/c.toml", "--embedded", "--verbose"},
			ds.Options{Globals: ds.Globals{StateDir: "/st", Socket: "/s.sock", Config: "/c.toml", Embedded: true, Verbose: true}}, ""},
		{[]string{"--script=a", "--log", "b", "--tolerant"}, ds.Options{Script: "a", LogFile: "b", Tolerant: true}, ""},
		{[]string{"/?"}, ds.Options{Help: true}, ""},
		{[]string{"-h"}, ds.Options{Help: true}, ""},
		{[]string{"-s"}, ds.Options{}, "-s needs a value"},
		{[]string{"script.dsh"}, ds.Options{}, `unexpected argument "script.dsh"`},
		{[]string{"-x"}, ds.Options{}, `unknown option "-x"`},
		{[]string{"--embedded=yes"}, ds.Options{}, "--embedded takes no value"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			got, err := ds.ParseArgs(tt.args)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("ParseArgs(%q) = %+v, %v; want an error with %q", tt.args, got, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tt.want, *got); d != "" {
				t.Errorf("ParseArgs(%q) (-want +got):\n%s", tt.args, d)
			}
		})
	}
}

// TestInteractivePlain: commands read from a pipe; errors are printed and
// the session goes on to the end of the input.
func TestInteractivePlain(t *testing.T) {
	testutil.RequireRoot(t)
	e := newEnv(t, "")
	r := e.main(t, "bogus\nset verbose maybe\nhelp set context\nhelp nothing\nset context clientaccessible nowriters\nset option plex txfrecover\nset\n\n# comment\nadd\nlist providers\n")
	if r.code != 0 {
		t.Errorf("exit %d", r.code)
	}
	mustContain(t, "stderr", r.stderr,
		`Error: unknown command "bogus": type HELP for the list of commands`,
		`Error: set verbose "maybe": expected on or off`, "  Usage: set verbose {on | off}",
		`Error: no help for "nothing"`)
	mustContain(t, "stdout", r.stdout,
		"DISKSHADOW> ", "SET CONTEXT - Choose the lifetime", "Usage: set context {clientaccessible | persistent | volatile} [nowriters]",
		"Context: clientaccessible nowriters (ClientAccessible; persistent: its shadow copies stay after exit; no writers)",
		"Options: plex txfrecover", "Backup type: copy", "No volumes added.",
		"Short name: btrfs", "Short name: copy", "3 providers registered.")
	if n := strings.Count(r.stdout, "DISKSHADOW> "); n != 12 {
		t.Errorf("%d prompts, want 12 (11 lines and the end of input)", n)
	}
}

func TestHelp(t *testing.T) {
	testutil.RequireRoot(t)
	e := newEnv(t, "")
	r := e.main(t, "", "--help")
	if r.code != 0 || !strings.Contains(r.stdout, "-t, /t") {
		t.Errorf("--help: exit %d\n%s", r.code, r.stdout)
	}
	r = e.main(t, "help\nhelp add exclude\nhelp SET METADATA\n")
	mustContain(t, "stdout", r.stdout, "  ADD VOLUME       Add a volume to the shadow copy set.", "  EXIT ",
		"not a Windows DiskShadow command", `<DiskShadowMetadata xmlns="urn:linuxvss:diskshadow:metadata" version="1">`)
	r = e.main(t, "", "-q")
	if r.code != ds.ExitUsage || !strings.Contains(r.stderr, `unknown option "-q"`) {
		t.Errorf("-q: exit %d\n%s", r.code, r.stderr)
	}
}
