package diskshadow_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/linuxvss/vss/internal/apiserver"
	"github.com/linuxvss/vss/internal/catalog"
	ds "github.com/linuxvss/vss/internal/cli/diskshadow"
	"github.com/linuxvss/vss/internal/config"
	"github.com/linuxvss/vss/internal/fsutil"
	"github.com/linuxvss/vss/internal/service"
	"github.com/linuxvss/vss/internal/testutil"
	"github.com/linuxvss/vss/internal/writers/builtin"
	"github.com/linuxvss/vss/pkg/vssmeta"

	_ "modernc.org/sqlite"
)

// The diskshadow command, built once, when a test first runs it as a
// process (on a pseudo-terminal); the fuzz targets and the in-process tests
// do not need it.
var (
	buildOnce sync.Once
	binDir    string
	binPath   string
	binErr    error
)

func diskshadowBin(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		if binDir, binErr = os.MkdirTemp("", "diskshadow-test-"); binErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "diskshadow")
		out, err := exec.Command("go", "build", "-o", binPath, "github.com/linuxvss/vss/cmd/diskshadow").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("building diskshadow: %w\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// The test binary doubles as a helper that exec in a script runs:
//
//	diskshadow.test diskshadow-test-compare WANT.json|DIR DIR
//
// compares the tree at the last DIR with a state saved as JSON, or with
// another tree, and exits 1 with the differences.
//
// With resticHelperArg it leaves out what restic 0.14 (Debian's) does not
// restore: holes (restore --sparse came with 0.15) and the extended
// attributes of symbolic links.
const (
	helperArg       = "diskshadow-test-compare"
	resticHelperArg = "diskshadow-test-compare-restic"
)

func TestMain(m *testing.M) {
	if len(os.Args) == 4 && (os.Args[1] == helperArg || os.Args[1] == resticHelperArg) {
		os.Exit(compareHelper(os.Args[2], os.Args[3], os.Args[1] == resticHelperArg))
	}
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// walkOpts leaves out the shadow storage.
var walkOpts = fsutil.WalkOptions{Exclude: func(rel string) bool { return rel == ".vss" }}

func compareHelper(want, dir string, restic bool) int {
	ctx := context.Background()
	var w fsutil.TreeState
	if st, err := os.Stat(want); err == nil && st.IsDir() {
		if w, err = fsutil.StateOf(ctx, want, walkOpts); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
	} else {
		b, err := os.ReadFile(want)
		if err == nil {
			err = json.Unmarshal(b, &w)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
	}
	got, err := fsutil.StateOf(ctx, dir, walkOpts)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	if restic {
		for _, st := range []fsutil.TreeState{w, got} {
			for k, f := range st {
				f.Segments = ""
				if f.Type == syscall.S_IFLNK {
					f.Xattrs = ""
				}
				st[k] = f
			}
		}
	}
	if d := fsutil.Diff(w, got); len(d) > 0 {
		fmt.Fprintf(os.Stderr, "%s differs from %s:\n  %s\n", dir, want, strings.Join(d, "\n  "))
		return 1
	}
	fmt.Printf("compare: %s is the same as %s (%d entries)\n", dir, want, len(got))
	return 0
}

// testBin is this test binary, for the helper.
func testBin(t *testing.T) string {
	t.Helper()
	p, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// writeConfig writes a service configuration without hook writers, plus
// extra TOML.
func writeConfig(t *testing.T, extra string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "vssd.toml")
	if err := os.WriteFile(p, []byte("[writers]\nhooks_dir = \"-\"\n"+extra), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

type result struct {
	code           int
	stdout, stderr string
}

// env is one place diskshadow runs: a state directory and a configuration,
// embedded, or through a vssd when socket is set.
type env struct {
	state, config, socket string
	svc                   *service.Service // the service vssd serves
}

func newEnv(t *testing.T, extraConfig string) *env {
	return &env{state: filepath.Join(t.TempDir(), "state"), config: writeConfig(t, extraConfig)}
}

func (e *env) args() []string {
	if e.socket != "" {
		return []string{"--socket", e.socket}
	}
	return []string{"--state-dir", e.state, "--config", e.config, "--embedded"}
}

// main runs diskshadow in this process.
func (e *env) main(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	code := ds.Main(context.Background(), ds.Env{Args: append(e.args(), args...), Stdin: strings.NewReader(stdin), Stdout: &out, Stderr: &errb})
	r := result{code, out.String(), errb.String()}
	t.Logf("diskshadow %s: exit %d\n--- stdout\n%s--- stderr\n%s", strings.Join(args, " "), code, r.stdout, r.stderr)
	return r
}

// script writes a script and runs it with -s.
func (e *env) script(t *testing.T, text string, args ...string) result {
	t.Helper()
	p := filepath.Join(t.TempDir(), "script.dsh")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return e.main(t, "", append(args, "-s", p)...)
}

// open opens the service on the state directory (after diskshadow is done
// with it), closed at the end of the test.
func (e *env) open(t *testing.T) *service.Service {
	t.Helper()
	cfg, err := config.Load(e.config)
	if err != nil {
		t.Fatal(err)
	}
	cfg.StateDir = e.state
	cfg.Socket = filepath.Join(filepath.Dir(e.state), "vssd.sock")
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	s, err := service.Open(context.Background(), service.Options{Config: cfg, Log: log, LockWait: 10 * time.Second, WriterSources: builtin.Sources(log)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// serve runs a vssd (the service and its API) for the environment: later
// runs of diskshadow go through it.
func (e *env) serve(t *testing.T) {
	t.Helper()
	s := e.open(t)
	e.svc = s
	e.socket = s.Config().Socket
	l, err := apiserver.Listen(e.socket)
	if err != nil {
		t.Fatal(err)
	}
	srv := apiserver.New(s, apiserver.Options{Version: "test", Socket: e.socket, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	go srv.Serve(l)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
}

// shadows lists the shadow copies in the catalog: through the served
// service, or by opening the state directory for a moment.
func (e *env) shadows(t *testing.T) []catalog.Shadow {
	t.Helper()
	s := e.svc
	if s == nil {
		cfg, err := config.Load(e.config)
		if err != nil {
			t.Fatal(err)
		}
		cfg.StateDir = e.state
		log := slog.New(slog.NewTextHandler(io.Discard, nil))
		if s, err = service.Open(context.Background(), service.Options{Config: cfg, Log: log, LockWait: 10 * time.Second}); err != nil {
			t.Fatal(err)
		}
		defer s.Close()
	}
	shs, err := s.ListShadows(context.Background(), service.Selection{})
	if err != nil {
		t.Fatal(err)
	}
	return shs
}

func mounted(t *testing.T, dir string) bool {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && f[4] == dir {
			return true
		}
	}
	return false
}

// unmountOnCleanup makes sure a test leaves nothing mounted at dir, also
// when it fails half-way.
func unmountOnCleanup(t *testing.T, dir string) {
	t.Cleanup(func() {
		if mounted(t, dir) {
			t.Errorf("%s is still mounted", dir)
			testutil.Unmount(t, dir)
		}
	})
}

func saveState(t *testing.T, dir string) string {
	t.Helper()
	st, err := fsutil.StateOf(context.Background(), dir, walkOpts)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "state.json")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func mustContain(t *testing.T, what, s string, subs ...string) {
	t.Helper()
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			t.Errorf("%s does not contain %q", what, sub)
		}
	}
}

// TestSeedScript runs the reference script (persistent, no writers; expose;
// read through the exposed path; unexpose; delete) on a btrfs volume and on
// an ext4 volume (copy provider), embedded and through vssd.
func TestSeedScript(t *testing.T) {
	testutil.RequireRoot(t)
	for _, tc := range []struct {
		fs, mode, provider string
	}{
		{"btrfs", "embedded", "btrfs"},
		{"ext4", "embedded", "copy"},
		{"btrfs", "vssd", "btrfs"},
	} {
		t.Run(tc.fs+"-"+tc.mode, func(t *testing.T) {
			vol := testutil.NewFS(t, tc.fs, 0)
			data := filepath.Join(vol.Dir, "data")
			testutil.Populate(t, data, true)
			want := saveState(t, data)
			exposed := filepath.Join(t.TempDir(), "exposed")
			unmountOnCleanup(t, exposed)
			e := newEnv(t, "")
			if tc.mode == "vssd" {
				e.serve(t)
			}
			script := fmt.Sprintf(`#Diskshadow script file
set context persistent nowriters
add volume %s alias data
create
expose %%data%% %s
# The live volume changes; the exposed shadow copy does not.
exec /bin/sh -c "echo changed > '%s/hello.txt'; rm -rf '%s/many'"
exec %s %s %s %s
list shadows id %%data%%
unexpose %s
delete shadows all
reset
exit
`, vol.Dir, exposed, data, data, testBin(t), helperArg, want, filepath.Join(exposed, "data"), exposed)
			r := e.script(t, script)
			if r.code != 0 {
				t.Fatalf("exit %d", r.code)
			}
			mustContain(t, "stdout", r.stdout,
				"Linux DiskShadow version 1.0", "-> set context persistent nowriters", "-> create",
				"Alias data for shadow ID {", "Alias VSS_SHADOW_SET for shadow set ID {",
				"Querying all shadow copies with the shadow copy set ID {", "%data%", "%VSS_SHADOW_SET%",
				"- Attributes:  No_Auto_Release Persistent No_Writers",
				"The shadow copy was successfully exposed as "+exposed,
				"compare: "+filepath.Join(exposed, "data")+" is the same as",
				"- Exposed path: "+exposed, "Number of shadow copies listed: 1",
				"Number of shadow copies deleted: 1")
			if tc.provider == "copy" {
				mustContain(t, "stdout", r.stdout, "Plex")
			} else {
				mustContain(t, "stdout", r.stdout, "Differential")
			}
			if mounted(t, exposed) {
				t.Errorf("%s is still mounted after unexpose", exposed)
			}
			if n := len(e.shadows(t)); n != 0 {
				t.Errorf("%d shadow copies left", n)
			}
		})
	}
}

// TestVolatileReleasedAtExit: the default context is volatile: the shadow
// copies live until exit, and aliases reach exec'd programs.
func TestVolatileReleasedAtExit(t *testing.T) {
	vol := testutil.NewFS(t, "btrfs", 0)
	testutil.WriteFile(t, vol.Dir, "f.txt", []byte("x\n"))
	e := newEnv(t, "")
	seen := filepath.Join(t.TempDir(), "seen")
	r := e.script(t, fmt.Sprintf(`add volume %s
create
exec /bin/sh -c "echo $VSS_SHADOW_1 $VSS_SHADOW_SET > %s"
list shadows set %%VSS_SHADOW_SET%%
`, vol.Dir, seen))
	if r.code != 0 {
		t.Fatalf("exit %d", r.code)
	}
	mustContain(t, "stdout", r.stdout, "Alias VSS_SHADOW_1 for shadow ID {", "- Attributes:  Auto_Release Differential", "Number of shadow copies listed: 1")
	b, err := os.ReadFile(seen)
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b))
	if len(f) != 2 || !strings.Contains(r.stdout, "shadow ID "+f[0]) || !strings.Contains(r.stdout, "shadow set ID "+f[1]) {
		t.Errorf("the exec'd program saw %q", b)
	}
	if v, ok := os.LookupEnv("VSS_SHADOW_1"); ok {
		t.Errorf("VSS_SHADOW_1=%s is left in the environment", v)
	}
	if n := len(e.shadows(t)); n != 0 {
		t.Errorf("%d volatile shadow copies left after exit", n)
	}
}

// TestScriptSyntaxError: a malformed line 3 stops the script before
// anything runs: not even the service is opened.
func TestScriptSyntaxError(t *testing.T) {
	vol := testutil.NewFS(t, "btrfs", 0)
	e := newEnv(t, "")
	r := e.script(t, fmt.Sprintf("set context persistent nowriters\nadd volume %s\ncreate now\ncreate\nexec /bin/false\n", vol.Dir))
	if r.code != ds.ExitUsage {
		t.Errorf("exit %d, want %d", r.code, ds.ExitUsage)
	}
	mustContain(t, "stderr", r.stderr, "nothing was done", `line 3: unexpected "now"`, "Usage: create")
	if strings.Contains(r.stdout, "->") {
		t.Errorf("lines ran:\n%s", r.stdout)
	}
	if _, err := os.Stat(e.state); !os.IsNotExist(err) {
		t.Errorf("the state directory was made (%v): the service was opened", err)
	}
	if n := len(e.shadows(t)); n != 0 {
		t.Errorf("%d shadow copies made", n)
	}
}

// TestScriptRuntimeErrors: a failing line stops the script with its line
// number, unless -t; then the script goes on and the exit status still
// says that a line failed.
func TestScriptRuntimeErrors(t *testing.T) {
	vol := testutil.NewFS(t, "btrfs", 0)
	missing := filepath.Join(t.TempDir(), "no-such-volume")
	for _, tc := range []struct {
		name     string
		script   string
		args     []string
		stderr   []string
		shadows  int
		notInOut string
	}{
		{
			name:    "missing volume",
			script:  fmt.Sprintf("set context persistent nowriters\nadd volume %s\nadd volume %s\ncreate\n", vol.Dir, missing),
			stderr:  []string{"line 3: VSS_E_OBJECT_NOT_FOUND (0x80042308)", missing, "The script stopped at line 3"},
			shadows: 0, notInOut: "-> create",
		},
		{
			name:    "missing volume, error-tolerant",
			script:  fmt.Sprintf("set context persistent nowriters\nadd volume %s\nadd volume %s\ncreate\n", vol.Dir, missing),
			args:    []string{"-t"},
			stderr:  []string{"line 3: VSS_E_OBJECT_NOT_FOUND (0x80042308)", "1 line failed: 3."},
			shadows: 1,
		},
		{
			name:    "exec fails",
			script:  fmt.Sprintf("set context persistent nowriters\nadd volume %s\nexec /bin/sh -c \"exit 3\"\ncreate\n", vol.Dir),
			stderr:  []string{"line 3: exec /bin/sh: the program exited with status 3"},
			shadows: 0, notInOut: "-> create",
		},
		{
			name: "not on Linux, error-tolerant",
			script: fmt.Sprintf("set option transportable\nimport\nmask {8356e764-5b4e-4a2c-9d3f-0123456789ab}\nresync\n"+
				"set context volatile\nadd volume %s\ncreate\nexpose %%VSS_SHADOW_1%% /tmp/x\nbreak %%VSS_SHADOW_SET%%\n", vol.Dir),
			args: []string{"/T"},
			stderr: []string{"line 1: VSS_E_NOT_SUPPORTED (0x8004232F)", "line 2: VSS_E_NOT_SUPPORTED", "line 3: VSS_E_NOT_SUPPORTED",
				"line 4: VSS_E_NOT_SUPPORTED", "line 8: VSS_E_UNSUPPORTED_CONTEXT (0x8004231B)", "line 9: VSS_E_BAD_STATE",
				"6 lines failed: 1, 2, 3, 4, 8, 9."},
			shadows: 0,
		},
		{
			name:    "undefined alias",
			script:  "expose %nothing% /tmp/x\n",
			stderr:  []string{"line 1: E_INVALIDARG (0x80070057)", "alias %nothing% is not defined"},
			shadows: 0,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, "")
			r := e.script(t, tc.script, tc.args...)
			if r.code != ds.ExitError {
				t.Errorf("exit %d, want %d", r.code, ds.ExitError)
			}
			mustContain(t, "stderr", r.stderr, tc.stderr...)
			if tc.notInOut != "" && strings.Contains(r.stdout, tc.notInOut) {
				t.Errorf("stdout has %q: the script went on", tc.notInOut)
			}
			if n := len(e.shadows(t)); n != tc.shadows {
				t.Errorf("%d shadow copies, want %d", n, tc.shadows)
			}
			if tc.shadows > 0 {
				if r := e.script(t, "delete shadows all\n"); r.code != 0 {
					t.Errorf("delete shadows all: exit %d", r.code)
				}
			}
		})
	}
}

// TestBackupAndRestoreWithWriter: a full backup with the SQLite writer
// (begin backup … end backup) writes the metadata file; a later run loads
// it and restores the database in place between begin restore and end
// restore.
func TestBackupAndRestoreWithWriter(t *testing.T) {
	vol := testutil.NewFS(t, "btrfs", 0)
	dbPath := filepath.Join(vol.Dir, "app.db")
	db, err := sql.Open("sqlite", dbPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	exec1 := func(q string) {
		t.Helper()
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	exec1("PRAGMA journal_mode=WAL; CREATE TABLE t (x); INSERT INTO t VALUES (1), (2)")
	e := newEnv(t, fmt.Sprintf("[[writers.sqlite]]\nname = \"app\"\npaths = [%q]\n", dbPath))
	meta := filepath.Join(t.TempDir(), "backup.xml")

	// A writer to verify that is not there fails the create, leaving nothing.
	r := e.script(t, fmt.Sprintf("set context persistent\nwriter verify No Such Writer\nadd volume %s\ncreate\n", vol.Dir))
	if r.code != ds.ExitError {
		t.Errorf("exit %d", r.code)
	}
	mustContain(t, "stderr", r.stderr, "line 4: VSS_E_OBJECT_NOT_FOUND", `writer "No Such Writer" does not take part`, "'SQLite Writer'")
	// An excluded writer takes no part.
	r = e.script(t, fmt.Sprintf("writer exclude SQLite Writer\nadd volume %s\ncreate\nlist writers status\n", vol.Dir))
	if r.code != 0 {
		t.Errorf("exit %d", r.code)
	}
	mustContain(t, "stdout", r.stdout, "0 writers listed.")
	if n := len(e.shadows(t)); n != 0 {
		t.Fatalf("%d shadow copies left", n)
	}

	r = e.script(t, fmt.Sprintf(`set context persistent
set metadata %s
set verbose on
writer verify SQLite Writer
begin backup
add volume %s alias data
create
list writers status
end backup
list writers
`, meta, vol.Dir))
	if r.code != 0 {
		t.Fatalf("exit %d", r.code)
	}
	mustContain(t, "stdout", r.stdout,
		`Component "SQLite Writer:\SQLite\app\app.db" added to the backup.`,
		"Preparing the writers for a full backup...",
		`* WRITER "SQLite Writer"`, "- Status: 5 (VSS_WS_WAITING_FOR_BACKUP_COMPLETE)", "- Writer Failure code: 0x00000000 (S_OK)",
		"1 writer listed.", `Writer "SQLite Writer": 1 (VSS_WS_STABLE)`, "The backup is complete.",
		`+ Component "SQLite Writer:\SQLite\app\app.db"`, "- Paths affected by this component:",
		"was written to "+meta)
	m, err := ds.ReadMetadata(meta)
	if err != nil {
		t.Fatal(err)
	}
	if m.BCD.BackupType != vssmeta.BackupFull || len(m.Writers) != 1 || len(m.BCD.Snapshots) != 1 {
		t.Fatalf("metadata: type %v, %d writers, %d snapshots", m.BCD.BackupType, len(m.Writers), len(m.BCD.Snapshots))
	}
	c := m.BCD.Writer(m.Writers[0].InstanceID).Component(`SQLite\app`, "app.db")
	if c == nil || !c.BackupSucceeded {
		t.Fatalf("the component in the metadata: %+v", c)
	}

	// Changed after the backup; the restore brings back the backed-up rows.
	exec1("INSERT INTO t VALUES (3)")
	db.Close()
	shadow := m.BCD.Snapshots[0].Path
	r = e.script(t, fmt.Sprintf(`load metadata %s
writer verify "SQLite Writer:\SQLite\app\app.db"
begin restore
exec /bin/cp %s %s
end restore
delete shadows all
`, meta, filepath.Join(shadow, "app.db"), dbPath))
	if r.code != 0 {
		t.Fatalf("exit %d", r.code)
	}
	mustContain(t, "stdout", r.stdout, "(full backup, 1 writers) was loaded", "The writers of 1 components are ready", "The restore is complete (PostRestore).")
	db2, err := sql.Open("sqlite", dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer db2.Close()
	var n int
	if err := db2.QueryRow("SELECT count(*) FROM t").Scan(&n); err != nil || n != 2 {
		t.Errorf("after the restore: %d rows, %v; want 2", n, err)
	}
}

// TestPersistentLifecycle: several persistent sets in one run, listing and
// deleting them by set, oldest, exposure and ID, revert and break.
func TestPersistentLifecycle(t *testing.T) {
	vol := testutil.NewFS(t, "btrfs", 0)
	testutil.WriteFile(t, vol.Dir, "f.txt", []byte("one\n"))
	e := newEnv(t, "")
	exposed := filepath.Join(t.TempDir(), "exposed")
	unmountOnCleanup(t, exposed)
	r := e.script(t, fmt.Sprintf(`set context persistent nowriters
add volume %[1]s alias data
create
add alias first %%data%%
exec /bin/sh -c "echo two > %[1]s/f.txt"
create
expose %%data%% %[2]s
exec /bin/sh -c "echo three > %[1]s/f.txt"
list shadows all
delete shadows exposed %[2]s
revert %%first%%
exec /bin/sh -c "test $(cat %[1]s/f.txt) = one"
delete shadows oldest %[1]s
list shadows all
`, vol.Dir, exposed))
	if r.code != 0 {
		t.Fatalf("exit %d", r.code)
	}
	mustContain(t, "stdout", r.stdout, "Number of shadow copies listed: 2", "Number of shadow copies deleted: 1",
		"was reverted to shadow copy {", "Number of shadow copies listed: 0")
	if mounted(t, exposed) {
		t.Errorf("%s is still mounted after delete shadows exposed", exposed)
	}

	// break: the set leaves the catalog and stays on disk as a directory.
	r = e.script(t, fmt.Sprintf(`set context persistent nowriters
add volume %s
create
break writable %%VSS_SHADOW_SET%%
list shadows all
`, vol.Dir))
	if r.code != 0 {
		t.Fatalf("exit %d", r.code)
	}
	mustContain(t, "stdout", r.stdout, "is now an ordinary writable directory", "Number of shadow copies listed: 0")
	i := strings.Index(r.stdout, "no longer managed by the shadow copy service: ")
	if i < 0 {
		t.Fatal("no path of the broken shadow copy")
	}
	dir := strings.TrimSpace(strings.SplitN(r.stdout[i+len("no longer managed by the shadow copy service: "):], "\n", 2)[0])
	if b, err := os.ReadFile(filepath.Join(dir, "f.txt")); err != nil || string(b) != "one\n" {
		t.Errorf("the broken shadow copy's file: %q, %v", b, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "new"), nil, 0o644); err != nil {
		t.Errorf("the broken shadow copy is not writable: %v", err)
	}
}
