package diskshadow_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	ds "github.com/linuxvss/vss/internal/cli/diskshadow"
)

const id1 = "{8356e764-5b4e-4a2c-9d3f-0123456789ab}"
const id2 = "e4c28c5f-1111-4222-8333-444455556666"

func TestParseLine(t *testing.T) {
	tests := []struct {
		line string
		want ds.Command
	}{
		{"", nil},
		{"   \t ", nil},
		{"# a comment", nil},
		{"   #indented comment", nil},
		{"help", ds.Help{}},
		{"?", ds.Help{}},
		{"HELP set context", ds.Help{Topic: "set context"}},
		{"set", ds.SetShow{}},
		{"set context volatile", ds.SetContext{Context: "volatile"}},
		{"SET CONTEXT Persistent NoWriters", ds.SetContext{Context: "persistent", NoWriters: true}},
		{"set context clientaccessible", ds.SetContext{Context: "clientaccessible"}},
		{"set context clientaccessible nowriters", ds.SetContext{Context: "clientaccessible", NoWriters: true}},
		{"set option differential", ds.SetOption{Options: []string{"differential"}}},
		{"set option plex rollbackrecover txfrecover", ds.SetOption{Options: []string{"plex", "rollbackrecover", "txfrecover"}}},
		{"set option noautorecover Differential noautorecovery", ds.SetOption{Options: []string{"noautorecovery", "differential"}}},
		{"set option transportable", ds.SetOption{Options: []string{"transportable"}}},
		{"set verbose on", ds.SetVerbose{On: true}},
		{"set verbose OFF", ds.SetVerbose{}},
		{`set metadata "/tmp/my backup.xml"`, ds.SetMetadata{File: "/tmp/my backup.xml"}},
		{"load metadata %META%", ds.LoadMetadata{File: "%META%"}},
		{"writer verify SQLite Writer", ds.Writer{Name: "SQLite Writer"}},
		{`writer exclude "SQLite Writer:\SQLite\app"`, ds.Writer{Exclude: true, Name: `SQLite Writer:\SQLite\app`}},
		{"writer exclude " + id1, ds.Writer{Exclude: true, Name: id1}},
		{"add", ds.AddShow{}},
		{"add volume /srv/data", ds.AddVolume{Path: "/srv/data"}},
		{"add volume /srv/data alias data", ds.AddVolume{Path: "/srv/data", Alias: "data"}},
		{"ADD VOLUME /srv/Data PROVIDER btrfs ALIAS Data_1", ds.AddVolume{Path: "/srv/Data", Alias: "Data_1", Provider: "btrfs"}},
		{`add volume "/srv/with space" provider {b5946137-7b9f-4925-af80-51abd60b20d5}`, ds.AddVolume{Path: "/srv/with space", Provider: "{b5946137-7b9f-4925-af80-51abd60b20d5}"}},
		{"add alias target /mnt/x", ds.AddAlias{Name: "target", Value: "/mnt/x"}},
		{"add exclude SQLite Writer", ds.Writer{Exclude: true, Name: "SQLite Writer"}},
		{"create", ds.Create{}},
		{"exec /usr/local/bin/backup.sh", ds.Exec{Program: "/usr/local/bin/backup.sh", Args: []string{}}},
		{`exec backup.sh %VSS_SHADOW_1% "two words" ""`, ds.Exec{Program: "backup.sh", Args: []string{"%VSS_SHADOW_1%", "two words", ""}}},
		{"begin backup", ds.Begin{}},
		{"Begin Restore", ds.Begin{Restore: true}},
		{"end backup", ds.End{}},
		{"end restore", ds.End{Restore: true}},
		{"expose %data% /mnt/shadow", ds.Expose{Shadow: "%data%", Path: "/mnt/shadow"}},
		{"expose " + id2 + " /mnt/shadow", ds.Expose{Shadow: id2, Path: "/mnt/shadow"}},
		{"unexpose /mnt/shadow", ds.Unexpose{Path: "/mnt/shadow"}},
		{"mask " + id1, ds.Mask{Set: id1}},
		{"break " + id1, ds.Break{Set: id1}},
		{"break readonly %VSS_SHADOW_SET%", ds.Break{Set: "%VSS_SHADOW_SET%"}},
		{"break WRITABLE " + id1, ds.Break{Writable: true, Set: id1}},
		{"revert " + id2, ds.Revert{Shadow: id2}},
		{"import", ds.Import{}},
		{"list writers", ds.ListWriters{Mode: "metadata"}},
		{"list writers detailed", ds.ListWriters{Mode: "detailed"}},
		{"List Writers STATUS", ds.ListWriters{Mode: "status"}},
		{"list shadows all", ds.ListShadows{Which: "all"}},
		{"list shadows set " + id1, ds.ListShadows{Which: "set", ID: id1}},
		{"list shadows id %VSS_SHADOW_1%", ds.ListShadows{Which: "id", ID: "%VSS_SHADOW_1%"}},
		{"list providers", ds.ListProviders{}},
		{"delete shadows all", ds.DeleteShadows{Which: "all"}},
		{"delete shadows volume /srv/data", ds.DeleteShadows{Which: "volume", Arg: "/srv/data"}},
		{"delete shadows oldest /srv/data", ds.DeleteShadows{Which: "oldest", Arg: "/srv/data"}},
		{"delete shadows set %VSS_SHADOW_SET%", ds.DeleteShadows{Which: "set", Arg: "%VSS_SHADOW_SET%"}},
		{"delete shadows id " + id2, ds.DeleteShadows{Which: "id", Arg: id2}},
		{"delete shadows exposed /mnt/shadow", ds.DeleteShadows{Which: "exposed", Arg: "/mnt/shadow"}},
		{"reset", ds.Reset{}},
		{"resync", ds.Resync{}},
		{"resync /dev/sdb", ds.Resync{Dest: "/dev/sdb"}},
		{"exit", ds.ExitCmd{}},
		{"create # with a comment", ds.Create{}},
		{`add volume /srv/a#b`, ds.AddVolume{Path: "/srv/a#b"}},
		{`add volume "#hash"`, ds.AddVolume{Path: "#hash"}},
		{`add alias q "say ""hi"""`, ds.AddAlias{Name: "q", Value: `say "hi"`}},
		{"exit\r", ds.ExitCmd{}},
	}
	for _, tt := range tests {
		t.Run(tt.line, func(t *testing.T) {
			got, err := ds.ParseLine(tt.line)
			if err != nil {
				t.Fatalf("ParseLine(%q): %v", tt.line, err)
			}
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("ParseLine(%q) (-want +got):\n%s", tt.line, d)
			}
			if got == nil {
				return
			}
			again, err := ds.ParseLine(got.String())
			if err != nil {
				t.Fatalf("ParseLine(%q) (printed back): %v", got.String(), err)
			}
			if d := cmp.Diff(got, again); d != "" {
				t.Errorf("printed back as %q, parsed again (-first +again):\n%s", got.String(), d)
			}
		})
	}
}

func TestParseLineErrors(t *testing.T) {
	tests := []struct {
		line string
		want string // in the message
	}{
		{"frobnicate", `unknown command "frobnicate"`},
		{`add volume "/srv/data`, "not closed"},
		{"set context", "needs"},
		{"set context forever", `"forever"`},
		{"set context volatile nowriters extra", `unexpected "extra"`},
		{"set option", "at least one"},
		{"set option fast", `"fast"`},
		{"set option differential plex", "exclude each other"},
		{"set option noautorecovery txfrecover", "excludes"},
		{"set verbose maybe", `"maybe"`},
		{"set metadata", "needs a FILE"},
		{"set colour blue", `"colour"`},
		{"load", "load what"},
		{"load metadata", "needs a FILE"},
		{"writer", "verify or exclude"},
		{"writer ignore x", `"ignore"`},
		{"writer verify", "needs a writer"},
		{"add volume", "needs a PATH"},
		{"add volume /srv alias", "needs a NAME"},
		{"add volume /srv alias 1bad", "not a valid alias name"},
		{"add volume /srv alias a-b", "not a valid alias name"},
		{"add volume /srv alias a alias b", "twice"},
		{"add volume /srv fast", `unexpected "fast"`},
		{"add alias x", "NAME and a VALUE"},
		{"add alias x y z", `unexpected "z"`},
		{"add exclude", "needs a writer"},
		{"add disk /dev/sda", `"disk"`},
		{"create now", `unexpected "now"`},
		{"exec", "needs a PROGRAM"},
		{"begin", "backup or"},
		{"begin shopping", `"shopping"`},
		{"end backup now", `unexpected "now"`},
		{"expose " + id1, "needs a SHADOW-ID and a PATH"},
		{"expose 1234 /mnt/x", "not a shadow copy ID"},
		{"expose {8356e764-5b4e-4a2c-9d3f-0123456789ab /mnt/x", "not a shadow copy ID"},
		{"unexpose", "needs the PATH"},
		{"mask", "needs a SET-ID"},
		{"mask nope", "not a shadow copy set ID"},
		{"break", "needs a SET-ID"},
		{"break writable", "needs a SET-ID"},
		{"break writable nope", "not a shadow copy set ID"},
		{"revert", "needs a SHADOW-ID"},
		{"revert %%", "not a shadow copy ID"},
		{"import now", `unexpected "now"`},
		{"list", "list what"},
		{"list volumes", `"volumes"`},
		{"list writers all", `"all"`},
		{"list writers status now", `unexpected "now"`},
		{"list shadows", "needs all"},
		{"list shadows set", "needs an ID"},
		{"list shadows id x", "not a shadow copy ID"},
		{"list shadows everything", `"everything"`},
		{"delete", "delete what"},
		{"delete shadows", "needs all"},
		{"delete shadows volume", "needs an argument"},
		{"delete shadows set nope", "not a shadow copy set ID"},
		{"delete shadows newest /srv", `"newest"`},
		{"delete shadows all now", `unexpected "now"`},
		{"reset all", `unexpected "all"`},
		{"resync a b", `unexpected "b"`},
		{"exit 0", `unexpected "0"`},
	}
	for _, tt := range tests {
		t.Run(tt.line, func(t *testing.T) {
			got, err := ds.ParseLine(tt.line)
			var se *ds.SyntaxError
			if !errors.As(err, &se) {
				t.Fatalf("ParseLine(%q) = %v, %v; want a *SyntaxError", tt.line, got, err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("ParseLine(%q): %q does not say %q", tt.line, err, tt.want)
			}
		})
	}
}

func TestParseScript(t *testing.T) {
	script := "\uFEFF#Diskshadow script file\r\n" +
		"set context persistent nowriters\r\n" +
		"set metadata /tmp/example.xml\r\n" +
		"\r\n" +
		"set verbose on\n" +
		"begin backup\n" +
		"add volume /srv/a alias systemvolumeshadow\n" +
		"add volume /srv/b alias datavolumeshadow\n" +
		"create\n" +
		"expose %systemvolumeshadow% /mnt/p\n" +
		"exec /srv/backupscript.cmd\n" +
		"end backup\n" +
		"#End of script"
	lines, err := ds.ParseScript(strings.NewReader(script))
	if err != nil {
		t.Fatal(err)
	}
	type got struct {
		N    int
		Text string
		Cmd  ds.Command
	}
	var gots []got
	for _, l := range lines {
		gots = append(gots, got{l.N, l.Text, l.Cmd})
	}
	want := []got{
		{2, "set context persistent nowriters", ds.SetContext{Context: "persistent", NoWriters: true}},
		{3, "set metadata /tmp/example.xml", ds.SetMetadata{File: "/tmp/example.xml"}},
		{5, "set verbose on", ds.SetVerbose{On: true}},
		{6, "begin backup", ds.Begin{}},
		{7, "add volume /srv/a alias systemvolumeshadow", ds.AddVolume{Path: "/srv/a", Alias: "systemvolumeshadow"}},
		{8, "add volume /srv/b alias datavolumeshadow", ds.AddVolume{Path: "/srv/b", Alias: "datavolumeshadow"}},
		{9, "create", ds.Create{}},
		{10, "expose %systemvolumeshadow% /mnt/p", ds.Expose{Shadow: "%systemvolumeshadow%", Path: "/mnt/p"}},
		{11, "exec /srv/backupscript.cmd", ds.Exec{Program: "/srv/backupscript.cmd", Args: []string{}}},
		{12, "end backup", ds.End{}},
	}
	if d := cmp.Diff(want, gots); d != "" {
		t.Errorf("ParseScript (-want +got):\n%s", d)
	}
}

func TestParseScriptErrors(t *testing.T) {
	tests := []struct {
		name   string
		script string
		want   []string // every line that must be reported
	}{
		{"line 3", "set context persistent\nadd volume /srv\nadd volum /srv\ncreate\n", []string{`line 3: add "volum"`}},
		{"two errors", "create\nbogus\nset verbose\nexit\n", []string{`line 2: unknown command "bogus"`, "line 3: set verbose needs on or off"}},
		{"unclosed quote", "# x\n\nexec \"/bin/true\n", []string{"line 3: a quotation mark"}},
		{"too long", "create\n" + strings.Repeat("x", ds.MaxLineLength+1) + "\n", []string{"line 2: the line is longer"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lines, err := ds.ParseScript(strings.NewReader(tt.script))
			if err == nil {
				t.Fatalf("ParseScript: no error, %d lines", len(lines))
			}
			if lines != nil {
				t.Errorf("ParseScript returned %d lines with an error", len(lines))
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

// The syntax check of a line does not depend on the values of its aliases:
// an alias whose value has spaces or keywords stays one argument.
func TestAliasesDoNotChangeParsing(t *testing.T) {
	c, err := ds.ParseLine("expose %x% /mnt/%y%")
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(ds.Expose{Shadow: "%x%", Path: "/mnt/%y%"}, c); d != "" {
		t.Error(d)
	}
}

func FuzzParseLine(f *testing.F) {
	for _, s := range []string{
		"set context persistent nowriters", "add volume /srv/data alias data provider btrfs", `exec "a b" "" "q""uote"`,
		"expose %data% /mnt/x", "delete shadows set " + id1, "list writers status", "writer exclude SQLite Writer",
		"# comment", `add alias x "#y"`, "help set option", "break writable %VSS_SHADOW_SET%", "ſet verbose on",
		"add volume \"\xff\x00\" alias a", "set option noautorecover plex",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		c, err := ds.ParseLine(line)
		if err != nil || c == nil {
			return
		}
		printed := c.String()
		again, err := ds.ParseLine(printed)
		if err != nil {
			t.Fatalf("ParseLine(%q) = %#v, printed %q, which does not parse: %v", line, c, printed, err)
		}
		if !reflect.DeepEqual(c, again) {
			t.Fatalf("ParseLine(%q) printed as %q parses differently (-first +again):\n%s", line, printed, cmp.Diff(c, again))
		}
	})
}

func FuzzParseScript(f *testing.F) {
	f.Add("set context persistent\nadd volume /srv alias a\ncreate\nexpose %a% /mnt/x\nexit\n")
	f.Add("\uFEFF# c\r\nbogus\r\nlist shadows all\r\n")
	f.Add("exec \"x\n\"\n")
	f.Fuzz(func(t *testing.T, script string) {
		lines, err := ds.ParseScript(strings.NewReader(script))
		if err != nil {
			if lines != nil {
				t.Fatalf("lines and an error: %v", err)
			}
			if !strings.Contains(err.Error(), "line ") {
				t.Fatalf("the error does not name a line: %v", err)
			}
			return
		}
		prev := 0
		for _, l := range lines {
			if l.N <= prev || l.Cmd == nil {
				t.Fatalf("line %+v after line %d", l, prev)
			}
			prev = l.N
			again, err := ds.ParseLine(l.Cmd.String())
			if err != nil {
				t.Fatalf("line %d %q printed as %q: %v", l.N, l.Text, l.Cmd.String(), err)
			}
			if !reflect.DeepEqual(l.Cmd, again) {
				t.Fatalf("line %d printed as %q (-first +again):\n%s", l.N, l.Cmd.String(), cmp.Diff(l.Cmd, again))
			}
		}
	})
}
