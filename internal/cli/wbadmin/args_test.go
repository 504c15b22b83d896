package wbadmin

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		args string
		want Command
	}{
		{"start backup -backupTarget:/b -include:/srv/a,/srv/b -vssFull -quiet",
			Command{Verb: VerbStartBackup, BackupTarget: "/b", Include: []string{"/srv/a", "/srv/b"}, VSSFull: true, Quiet: true, Format: "text"}},
		{"START BACKUP --backup-target /b --include /srv/a --include=/srv/c --vss-copy --differential --format json",
			Command{Verb: VerbStartBackup, BackupTarget: "/b", Include: []string{"/srv/a", "/srv/c"}, Kind: KindDifferential, Format: "json"}},
		{`start backup /backupTarget:/b -component:PostgreSQL\main -full`,
			Command{Verb: VerbStartBackup, BackupTarget: "/b", Components: []string{`PostgreSQL\main`}, Kind: KindFull, Format: "text"}},
		{"get versions -backupTarget:/b", Command{Verb: VerbGetVersions, BackupTarget: "/b", Format: "text"}},
		{"get versions", Command{Verb: VerbGetVersions, Format: "text"}},
		{"get items -version:2026-11-25T19-50-00Z -backupTarget:/b", Command{Verb: VerbGetItems, Version: "2026-11-25T19-50-00Z", BackupTarget: "/b", Format: "text"}},
		{"start recovery -version:V -itemType:File -items:/srv/a/x,/srv/a/y -recoveryTarget:/r -overwrite:CreateCopy",
			Command{Verb: VerbStartRecovery, Version: "V", ItemType: "File", Items: []string{"/srv/a/x", "/srv/a/y"}, RecoveryTarget: "/r", Overwrite: "CreateCopy", Format: "text"}},
		{`start recovery -version:V -itemType:App -items:PostgreSQL\main -newName:copy`,
			Command{Verb: VerbStartRecovery, Version: "V", ItemType: "Component", Items: []string{`PostgreSQL\main`}, NewName: "copy", Overwrite: "Overwrite", Format: "text"}},
		{"verify -version:V --state-dir /s --embedded", Command{Verb: VerbVerify, Version: "V", StateDir: "/s", Embedded: true, Format: "text"}},
	} {
		got, err := Parse(strings.Fields(tc.args))
		if err != nil {
			t.Errorf("%s: %v", tc.args, err)
			continue
		}
		if d := cmp.Diff(tc.want, *got); d != "" {
			t.Errorf("%s (-want +got):\n%s", tc.args, d)
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ args, want string }{
		{"", "no command"},
		{"start", "unknown command"},
		{"delete backup", "unknown command"},
		{"start backup -include:/a", "needs -backupTarget"},
		{"start backup -backupTarget:/b", "needs -include"},
		{"start backup -backupTarget:/b -include:/a -vssFull -vssCopy", "exclude each other"},
		{"start backup -backupTarget:/b -include:/a -full -differential", "exclude each other"},
		{"start backup -backupTarget:/srv/a/b -include:/srv/a", "inside the included path"},
		{"start backup -backupTarget:/b -include:/a -version:V", "does not apply"},
		{"start backup -backupTarget:/b -include:/a -quiet:yes", "takes no value"},
		{"start backup -backupTarget", "needs a value"},
		{"start backup -backupTarget:/b -backupTarget:/c -include:/a", "twice"},
		{"start backup -backupTarget:/b -component:nobackslash", `WRITER\COMPONENT`},
		{"start backup -backupTarget:/b -include:/a stray", "unexpected argument"},
		{"start backup -frobnicate", "unknown option"},
		{"get items", "needs -version"},
		{"start recovery -version:V -itemType:File", "needs -items"},
		{"start recovery -version:V -itemType:Volume -items:x", "File or Component"},
		{"start recovery -version:V -itemType:File -items:x -overwrite:Maybe", "Overwrite, CreateCopy or Skip"},
		{"start recovery -version:V -itemType:File -items:x -newName:y", "applies to -itemType:Component"},
		{"start recovery -version:V -itemType:Component -items:x -newName:a/b", "not a plain name"},
		{"get versions --format xml", "text or json"},
	} {
		_, err := Parse(strings.Fields(tc.args))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want it to say %q", tc.args, err, tc.want)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"start backup -backupTarget:/b -include:/srv/a,/srv/b -vssFull -quiet",
		"start recovery -version:V -itemType:File -items:/a -recoveryTarget:/r",
		"get versions --backup-target /b --format json",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := Parse(strings.Fields(s))
		if err != nil {
			return
		}
		if c.Verb == "" {
			t.Fatalf("%q parsed without a verb", s)
		}
		if c.Verb == VerbStartBackup && c.BackupTarget == "" {
			t.Fatalf("%q: start backup without a target", s)
		}
	})
}
