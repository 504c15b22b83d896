package wbadmin_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/linuxvss/vss/internal/catalog"
	"github.com/linuxvss/vss/internal/cli/wbadmin"
	"github.com/linuxvss/vss/internal/config"
	"github.com/linuxvss/vss/internal/fsutil"
	"github.com/linuxvss/vss/internal/service"
	"github.com/linuxvss/vss/internal/testutil"
)

type result struct {
	code        int
	out, errOut string
}

func run(t *testing.T, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	code := wbadmin.Main(context.Background(), wbadmin.Env{Args: args, Stdout: &out, Stderr: &errOut})
	return result{code, out.String(), errOut.String()}
}

func (r result) must(t *testing.T) result {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.out, r.errOut)
	}
	return r
}

func state(t *testing.T, dir string) fsutil.TreeState {
	t.Helper()
	s, err := fsutil.StateOf(context.Background(), dir, fsutil.WalkOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestBackupRecoverVerify: two backups of a tree on a btrfs volume (a full
// copy backup, then an incremental one after changes), read from shadow
// copies; get versions lists both; a recovery of the first version to
// another directory gives back the tree as it was; verify passes, and
// names the file once a stored byte is damaged; no shadow copy is left.
func TestBackupRecoverVerify(t *testing.T) {
	testutil.RequireRoot(t)
	fs := testutil.NewFS(t, "btrfs", 0)
	data := filepath.Join(fs.Dir, "data")
	if err := os.Mkdir(data, 0o755); err != nil {
		t.Fatal(err)
	}
	testutil.Populate(t, data, true)
	before := state(t, data)
	target := filepath.Join(t.TempDir(), "backups")
	stateDir := t.TempDir()
	g := []string{"--embedded", "--state-dir", stateDir, "-quiet"}

	run(t, append([]string{"start", "backup", "-backupTarget:" + target, "-include:" + data}, g...)...).must(t)
	testutil.Mutate(t, data, true)
	after := state(t, data)
	run(t, append([]string{"start", "backup", "-backupTarget:" + target, "-include:" + data}, g...)...).must(t)

	r := run(t, "get", "versions", "-backupTarget:"+target).must(t)
	ids := regexp.MustCompile(`Version identifier: (\S+)`).FindAllStringSubmatch(r.out, -1)
	if len(ids) != 2 || !strings.Contains(r.out, "Kind: copy") || !strings.Contains(r.out, "Kind: incremental") || !strings.Contains(r.out, "Can recover: File(s)") {
		t.Fatalf("get versions:\n%s", r.out)
	}
	v1, v2 := ids[0][1], ids[1][1]

	for _, tc := range []struct {
		version string
		want    fsutil.TreeState
	}{{v1, before}, {v2, after}} {
		dst := filepath.Join(t.TempDir(), "restored")
		run(t, "start", "recovery", "-version:"+tc.version, "-backupTarget:"+target, "-itemType:File", "-items:"+data, "-recoveryTarget:"+dst, "-quiet").must(t)
		if d := fsutil.Diff(tc.want, state(t, filepath.Join(dst, data))); len(d) > 0 {
			t.Errorf("version %s restored differs:\n%s", tc.version, strings.Join(d, "\n"))
		}
	}
	run(t, "verify", "-version:"+v2, "-backupTarget:"+target).must(t)

	// Damage one stored byte of the first version.
	stored := filepath.Join(target, v1, "data", strings.TrimPrefix(data, "/"), "hello.txt")
	b, err := os.ReadFile(stored)
	if err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if err := os.WriteFile(stored, b, 0o644); err != nil {
		t.Fatal(err)
	}
	r = run(t, "verify", "-version:"+v1, "-backupTarget:"+target)
	if r.code != 1 || !strings.Contains(r.out, "hello.txt") || !strings.Contains(r.errOut, "E_FILE_CORRUPT") {
		t.Errorf("verify of a damaged version: exit %d\n%s\n%s", r.code, r.out, r.errOut)
	}

	// The backup sessions released their shadow copies.
	cfg := config.Default()
	cfg.StateDir = stateDir
	s, err := service.Open(context.Background(), service.Options{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var left []catalog.Shadow
	if left, err = s.ListShadows(context.Background(), service.Selection{}); err != nil || len(left) != 0 {
		t.Errorf("%d shadow copies left, %v", len(left), err)
	}
}

// TestUsageErrors: a command line that does not parse exits 2 and says why.
func TestUsageErrors(t *testing.T) {
	r := run(t, "start", "backup", "-include:/srv")
	if r.code != 2 || !strings.Contains(r.errOut, "-backupTarget") {
		t.Errorf("exit %d: %s", r.code, r.errOut)
	}
	if r := run(t); r.code != 2 || !strings.Contains(r.errOut, "no command given") || !strings.Contains(r.errOut, "wbadmin start recovery") {
		t.Errorf("no command: exit %d: %s", r.code, r.errOut)
	}
	if r := run(t, "/?"); r.code != 0 || !strings.Contains(r.out, `-component:WRITER\COMPONENT`) {
		t.Errorf("/?: exit %d: %s", r.code, r.out)
	}
}

// TestJSONProgress: with --format json a backup writes progress events,
// the last one complete, then its result.
func TestJSONProgress(t *testing.T) {
	testutil.RequireRoot(t)
	fs := testutil.NewFS(t, "btrfs", 0)
	testutil.WriteFile(t, fs.Dir, "data/big", testutil.RandomBytes(1, 8<<20))
	target := filepath.Join(t.TempDir(), "backups")
	r := run(t, "start", "backup", "-backupTarget:"+target, "-include:"+filepath.Join(fs.Dir, "data"), "--format", "json", "--embedded", "--state-dir", t.TempDir()).must(t)
	var events []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(r.out), "\n") {
		var e map[string]any
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("not a JSON line: %q", line)
		}
		events = append(events, e)
	}
	if len(events) < 2 {
		t.Fatalf("events: %v", events)
	}
	last, done := events[len(events)-2], events[len(events)-1]
	if last["event"] != "progress" || last["bytes_done"] != last["bytes_total"] || last["bytes_total"].(float64) < 8<<20 {
		t.Errorf("last progress event: %v", last)
	}
	if done["event"] != "done" || done["version"] == "" {
		t.Errorf("result: %v", done)
	}
}
