package config

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/linuxvss/vss/internal/vsserr"
)

func TestParseMaxSize(t *testing.T) {
	for _, c := range []struct {
		in   string
		want MaxSize
		err  bool
	}{
		{"UNBOUNDED", MaxSize{Unbounded: true}, false},
		{"unbounded", MaxSize{Unbounded: true}, false},
		{"20%", MaxSize{Percent: 20}, false},
		{" 12.5 % ", MaxSize{Percent: 12.5}, false},
		{"300MB", MaxSize{Bytes: 300 << 20}, false},
		{"300mb", MaxSize{Bytes: 300 << 20}, false},
		{"1.5GB", MaxSize{Bytes: 3 << 29}, false},
		{"2G", MaxSize{Bytes: 2 << 30}, false},
		{"1TB", MaxSize{Bytes: 1 << 40}, false},
		{"1048576", MaxSize{Bytes: 1 << 20}, false},
		{"1048576B", MaxSize{Bytes: 1 << 20}, false},
		{"1024KB", MaxSize{Bytes: 1 << 20}, false},
		{"", MaxSize{}, true},
		{"0%", MaxSize{}, true},
		{"101%", MaxSize{}, true},
		{"-5MB", MaxSize{}, true},
		{"10", MaxSize{}, true}, // below the 1 MB minimum
		{"abc", MaxSize{}, true},
		{"1e400", MaxSize{}, true},
		{"NaN", MaxSize{}, true},
		{"0x10MB", MaxSize{}, true},
		{"99999999EB", MaxSize{}, true},
		{"5 XB", MaxSize{}, true},
	} {
		got, err := ParseMaxSize(c.in)
		if (err != nil) != c.err {
			t.Errorf("ParseMaxSize(%q) error = %v, want error %v", c.in, err, c.err)
			continue
		}
		if err != nil {
			if vsserr.CodeOf(err) != vsserr.E_INVALIDARG || !strings.Contains(err.Error(), c.in) {
				t.Errorf("ParseMaxSize(%q) error %v does not name the input with E_INVALIDARG", c.in, err)
			}
			continue
		}
		if d := cmp.Diff(c.want, got); d != "" {
			t.Errorf("ParseMaxSize(%q) (-want +got):\n%s", c.in, d)
		}
	}
}

func FuzzParseMaxSize(f *testing.F) {
	for _, s := range []string{"UNBOUNDED", "20%", "300MB", "1.5GB", "1048576", "", "-1", "1e308GB"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := ParseMaxSize(s)
		if err != nil {
			return
		}
		switch {
		case m.Unbounded:
		case m.Percent > 0:
			if m.Percent > 100 {
				t.Fatalf("%q: percent %v", s, m.Percent)
			}
		default:
			if m.Bytes < MinMaxSize {
				t.Fatalf("%q: %d bytes below the minimum", s, m.Bytes)
			}
		}
		// What we print parses back to about the same value.
		if back, err := ParseMaxSize(m.String()); err != nil {
			t.Fatalf("%q → %q does not parse: %v", s, m.String(), err)
		} else if m.Unbounded != back.Unbounded {
			t.Fatalf("%q → %q changed meaning", s, m.String())
		}
	})
}

func TestParseConfig(t *testing.T) {
	c := Default()
	err := Parse([]byte("state_dir = \"/srv/vss\"\nfreeze_timeout = \"20s\"\nmax_shadow_copies = 512\n"), &c)
	if err != nil {
		t.Fatal(err)
	}
	if c.StateDir != "/srv/vss" || c.FreezeTimeout.Duration != 20*time.Second || c.MaxShadowCopies != 512 || c.CommitTimeout.Duration != 10*time.Second {
		t.Fatalf("got %+v", c)
	}
	for _, bad := range []string{
		"max_shadow_copies = 513",
		"max_shadow_copies = 0",
		"state_dir = \"relative\"",
		"freeze_timeout = \"forever\"",
		"commit_timeout = \"-1s\"",
		"no_such_setting = 1",
		"log_level = \"loud\"",
		"state_dir = ",
		"[access]\nlist = [\"bad name\"]",
		"[access]\ncreate = [\"@\"]",
		"[access]\nwho = [\"x\"]",
		"[writers.timeouts]\nfreeze = \"10s\"\nwhenever = \"1s\"",
		"[writers.timeouts]\nthaw = \"2h\"",
		"[[writers.sqlite]]\nname = \"a\"\npaths = [\"rel.db\"]",
		"[[writers.sqlite]]\nname = \"a\"\npaths = []",
		"[[writers.sqlite]]\npaths = [\"/a.db\"]",
		"[[writers.sqlite]]\nname = \"a\"\npaths = [\"/a.db\"]\n[[writers.sqlite]]\nname = \"a\"\npaths = [\"/b.db\"]",
		"[[writers.postgresql]]\nname = \"m\"",
		"[[writers.postgresql]]\nname = \"m\"\ndsn = \"x\"\non_error = \"sometimes\"",
		"[[writers.postgresql]]\nname = \"m\"\ndsn = \"x\"\nbackup_mode = \"never\"",
		"[[writers.mariadb]]\nname = \"m\"\ndsn = \"x\"\nbackup_mode = \"always\"",
		"[[writers.mariadb]]\nname = \"m\"\ndsn = \"x\"\ndata_dir = \"rel\"",
	} {
		c := Default()
		if err := Parse([]byte(bad), &c); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestParseAccessAndWriters(t *testing.T) {
	c := Default()
	err := Parse([]byte(`
[access]
list = ["alice", "@backup"]
create = ["1001"]
writers = ["postgres"]

[writers]
hooks_dir = "/etc/vss/hooks"
[writers.timeouts]
prepare-snapshot = "2m"

[[writers.sqlite]]
name = "app"
paths = ["/srv/app/app.db"]

[[writers.postgresql]]
name = "main"
dsn = "host=/run/postgresql"
backup_mode = "always"
on_error = "continue"
`), &c)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Access.List) != 2 || c.Access.Create[0] != "1001" || c.Writers.HooksDir != "/etc/vss/hooks" ||
		c.Writers.Timeouts["prepare-snapshot"].Duration != 2*time.Minute || c.Writers.SQLite[0].Paths[0] != "/srv/app/app.db" ||
		c.Writers.PostgreSQL[0].BackupMode != "always" || c.Writers.PostgreSQL[0].OnError != "continue" {
		t.Errorf("got %+v", c)
	}
}

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte("[access]\nlist = [\"@backup\"]\n[[writers.sqlite]]\nname = \"a\"\npaths = [\"/a.db\"]\n"))
	f.Add([]byte("state_dir = \"/srv/vss\"\nfreeze_timeout = \"20s\"\n"))
	f.Add([]byte("max_shadow_copies = 64\nlog_level = \"debug\"\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c := Default()
		if err := Parse(b, &c); err != nil {
			return
		}
		if err := c.Check(); err != nil {
			t.Fatalf("Parse accepted a configuration Check refuses: %v", err)
		}
	})
}
