package main_test

import (
	"bufio"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/linuxvss/vss/internal/testutil"

	_ "modernc.org/sqlite"
)

// buildTagged compiles packages with build tags into a directory every user
// may read and returns the directory.
func buildTagged(t *testing.T, tags string, pkgs ...string) string {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		testutil.SkipOrFail(t, "needs the go command")
	}
	dir := openDir(t)
	args := []string{"build", "-o", dir + "/"}
	if tags != "" {
		args = append(args, "-tags", tags)
	}
	out, err := exec.Command(gobin, append(args, pkgs...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return dir
}

// appendlog is a running example writer.
type appendlog struct {
	cmd   *exec.Cmd
	mu    sync.Mutex
	lines []string
	seen  chan string
	done  chan struct{}
}

func startAppendlog(t *testing.T, bin, socket, file string, cred *syscall.Credential) *appendlog {
	t.Helper()
	a := &appendlog{seen: make(chan string, 100), done: make(chan struct{})}
	a.cmd = exec.Command(bin, "--socket", socket, "--file", file, "--interval", "5ms")
	a.cmd.Env = cleanEnv()
	a.cmd.Dir = "/"
	if cred != nil {
		a.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	out, err := a.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	a.cmd.Stderr = &stderr
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(a.done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			a.mu.Lock()
			a.lines = append(a.lines, sc.Text())
			a.mu.Unlock()
			select {
			case a.seen <- sc.Text():
			default:
			}
		}
		io.Copy(io.Discard, out)
	}()
	t.Cleanup(func() {
		a.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-a.done:
		case <-time.After(5 * time.Second):
			a.cmd.Process.Kill()
			<-a.done
		}
		a.cmd.Wait()
		if t.Failed() {
			t.Logf("appendlog output:\n%s\nstderr:\n%s", strings.Join(a.output(), "\n"), stderr.String())
		}
	})
	return a
}

func (a *appendlog) output() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.lines...)
}

// waitFor waits for an output line starting with prefix.
func (a *appendlog) waitFor(t *testing.T, prefix string, timeout time.Duration) (string, time.Time) {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case l := <-a.seen:
			if strings.HasPrefix(l, prefix) {
				return l, time.Now()
			}
		case <-deadline:
			t.Fatalf("appendlog did not print %q within %v; it printed %q", prefix, timeout, a.output())
		}
	}
}

// checkLines checks that every line of the log is whole and numbered in
// order, and returns how many there are.
func checkLines(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > 0 && b[len(b)-1] != '\n' {
		t.Errorf("%s ends with a partial line", path)
	}
	n := 0
	for _, l := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		if l == "" {
			continue
		}
		n++
		var k int
		if _, err := fmt.Sscanf(l, "%d ", &k); err != nil || k != n {
			t.Fatalf("%s line %d is %q", path, n, l)
		}
	}
	return n
}

// TestExampleWriter: the SDK's example writer takes part in a shadow copy
// made through vssd (the shadow holds only whole lines), vssadmin lists it
// as Windows does, and it is refused unless the access configuration lets
// its user register writers.
func TestExampleWriter(t *testing.T) {
	testutil.RequireRoot(t)
	b := build(t)
	ex := buildTagged(t, "", "github.com/linuxvss/vss/examples/appendlog")
	fs := testutil.NewFS(t, "btrfs", 0)
	appDir := filepath.Join(fs.Dir, "app")
	if err := os.MkdirAll(appDir, 0o777); err != nil {
		t.Fatal(err)
	}
	os.Chmod(appDir, 0o777)
	dir := openDir(t)
	cfg := filepath.Join(dir, "vssd.toml")
	if err := os.WriteFile(cfg, []byte("[access]\nwriters = [\"65534\"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	socket, state := filepath.Join(dir, "vssd.sock"), filepath.Join(dir, "state")
	startDaemon(t, b, socket, state, "--config", cfg)
	via := []string{"--socket", socket, "--state-dir", state}

	a := startAppendlog(t, filepath.Join(ex, "appendlog"), socket, filepath.Join(appDir, "log"), &syscall.Credential{Uid: nobody, Gid: nobody})
	a.waitFor(t, "registered", 10*time.Second)
	r := vssadmin(t, b, nil, append(via, "list", "writers")...).must(t)
	for _, want := range []string{"Writer name: 'AppendLog Writer'", "Writer Id: {7b0c5c2e-64a1-4b7e-9a55-6f3f1d2c0a11}", "State: [1] Stable", "Last error: No error"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("list writers lacks %q:\n%s", want, r.stdout)
		}
	}
	for i := 0; i < 3; i++ {
		vssadmin(t, b, nil, append(via, "create", "shadow", "--for", fs.Dir)...).must(t)
		a.waitFor(t, "event Freeze", 5*time.Second)
		a.waitFor(t, "event Thaw", 5*time.Second)
	}
	shadows := listJSON(t, b, via...)
	if len(shadows) != 3 {
		t.Fatalf("%d shadows, want 3", len(shadows))
	}
	prev := 0
	for _, sh := range shadows {
		n := checkLines(t, filepath.Join(sh.ShadowPath, "app", "log"))
		if n <= prev {
			t.Errorf("shadow %s has %d lines, the one before %d", sh.ID, n, prev)
		}
		prev = n
	}
	r = vssadmin(t, b, nil, append(via, "list", "writers", "--format", "json")...).must(t)
	if !strings.Contains(r.stdout, `"state": 1`) && !strings.Contains(r.stdout, `"state":1`) {
		t.Errorf("list writers --format json after the backups:\n%s", r.stdout)
	}

	// Another user is refused.
	other := startAppendlog(t, filepath.Join(ex, "appendlog"), socket, filepath.Join(appDir, "log2"), &syscall.Credential{Uid: 1, Gid: 1})
	l, _ := other.waitFor(t, "writer ended", 10*time.Second)
	if !strings.Contains(l, "E_ACCESSDENIED") {
		t.Errorf("a user without the writers right: %q", l)
	}
}

// TestWriterThawsWhenVssdKilled: vssd is killed with SIGKILL while the
// example writer is frozen; the writer thaws by itself at once (its stream
// broke), and the next vssd leaves no shadow behind.
func TestWriterThawsWhenVssdKilled(t *testing.T) {
	testutil.RequireRoot(t)
	b := build(t)
	fault := buildTagged(t, "faultinject", "github.com/linuxvss/vss/cmd/vssd")
	ex := buildTagged(t, "", "github.com/linuxvss/vss/examples/appendlog")
	fs := testutil.NewFS(t, "btrfs", 0)
	appDir := filepath.Join(fs.Dir, "app")
	if err := os.MkdirAll(appDir, 0o755); err != nil {
		t.Fatal(err)
	}
	dir := openDir(t)
	socket, state := filepath.Join(dir, "vssd.sock"), filepath.Join(dir, "state")
	fb := b
	fb.vssd = filepath.Join(fault, "vssd")
	d := startDaemonEnv(t, fb, socket, state, []string{"VSS_FAULT=freeze=kill"})
	a := startAppendlog(t, filepath.Join(ex, "appendlog"), socket, filepath.Join(appDir, "log"), nil)
	a.waitFor(t, "registered", 10*time.Second)
	via := []string{"--socket", socket, "--state-dir", state}
	r := vssadmin(t, b, nil, append(via, "create", "shadow", "--for", fs.Dir)...)
	if r.code == 0 {
		t.Fatal("create shadow succeeded although vssd was killed in the freeze")
	}
	a.waitFor(t, "event Freeze", 5*time.Second)
	select {
	case <-d.done:
	case <-time.After(10 * time.Second):
		t.Fatal("vssd was not killed")
	}
	killed := time.Now()
	_, thawed := a.waitFor(t, "thawed by itself", 5*time.Second)
	t.Logf("the writer thawed %v after vssd died (observed)", thawed.Sub(killed))
	if thawed.Sub(killed) > time.Second {
		t.Errorf("the writer thawed %v after vssd died", thawed.Sub(killed))
	}
	// The application writes again.
	n := checkLines(t, filepath.Join(appDir, "log"))
	time.Sleep(100 * time.Millisecond)
	if m := checkLines(t, filepath.Join(appDir, "log")); m <= n {
		t.Errorf("the application did not write after the thaw (%d → %d lines)", n, m)
	}
	// A new vssd rolls the set back: no shadow, nothing frozen.
	startDaemon(t, b, socket, state)
	if sh := listJSON(t, b, via...); len(sh) != 0 {
		t.Errorf("%d shadows after the restart", len(sh))
	}
	if ents, _ := os.ReadDir(filepath.Join(fs.Dir, ".vss")); len(ents) != 0 {
		t.Errorf("the storage holds %d entries after the restart", len(ents))
	}
}

// TestConfiguredWriters: the writers of the configuration — a built-in
// SQLite writer and a hook writer from writers.hooks_dir — take part in a
// shadow copy made through vssd while an application writes: the hook sees
// its events in order with the VSS environment, and the shadow's database
// is whole and holds every row committed before the set.
func TestConfiguredWriters(t *testing.T) {
	testutil.RequireRoot(t)
	b := build(t)
	fs := testutil.NewFS(t, "btrfs", 0)
	dir := openDir(t)
	dbDir := filepath.Join(fs.Dir, "db")
	hookData := filepath.Join(fs.Dir, "hookdata")
	for _, d := range []string{dbDir, hookData} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	dbPath := filepath.Join(dbDir, "app.db")
	db, err := sql.Open("sqlite", dbPath+"?_pragma=journal_mode(WAL)&_pragma=busy_timeout(60000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec("CREATE TABLE rows (id INTEGER PRIMARY KEY, t TEXT)"); err != nil {
		t.Fatal(err)
	}
	hooks := filepath.Join(dir, "writers.d")
	events := filepath.Join(dir, "hook-events")
	if err := os.MkdirAll(hooks, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := func(ev string) string {
		return fmt.Sprintf(`{ command = ["/bin/sh", "-c", "echo %s $VSS_EVENT $VSS_VOLUMES >> %s"], timeout = "5s" }`, ev, events)
	}
	hook := fmt.Sprintf("name = \"Test Hook Writer\"\n\n[[component]]\nname = \"data\"\nfiles = [ { path = %q, recursive = true } ]\n\n[events]\nprepare-snapshot = %s\nfreeze = %s\nthaw = %s\npost-snapshot = %s\n",
		hookData, cmd("ps"), cmd("fr"), cmd("th"), cmd("post"))
	if err := os.WriteFile(filepath.Join(hooks, "10-test.toml"), []byte(hook), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "vssd.toml")
	conf := fmt.Sprintf("[writers]\nhooks_dir = %q\n\n[[writers.sqlite]]\nname = \"app\"\npaths = [%q]\n", hooks, dbPath)
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	socket, state := filepath.Join(dir, "vssd.sock"), filepath.Join(dir, "state")
	startDaemon(t, b, socket, state, "--config", cfg)
	via := []string{"--socket", socket, "--state-dir", state}
	r := vssadmin(t, b, nil, append(via, "list", "writers")...).must(t)
	for _, want := range []string{"Writer name: 'SQLite Writer'", "Writer name: 'Test Hook Writer'", "State: [1] Stable"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("list writers lacks %q:\n%s", want, r.stdout)
		}
	}

	// The application inserts while the shadow copy is made.
	stop := make(chan struct{})
	var mu sync.Mutex
	var committed []int64 // ids whose commit returned, with their time
	var commitTimes []time.Time
	appDone := make(chan error, 1)
	go func() {
		for {
			select {
			case <-stop:
				appDone <- nil
				return
			default:
			}
			res, err := db.Exec("INSERT INTO rows (t) VALUES (?)", time.Now().Format(time.RFC3339Nano))
			if err != nil {
				appDone <- err
				return
			}
			id, _ := res.LastInsertId()
			mu.Lock()
			committed, commitTimes = append(committed, id), append(commitTimes, time.Now())
			mu.Unlock()
			time.Sleep(2 * time.Millisecond)
		}
	}()
	time.Sleep(200 * time.Millisecond)
	before := time.Now()
	vssadmin(t, b, nil, append(via, "create", "shadow", "--for", fs.Dir)...).must(t)
	time.Sleep(100 * time.Millisecond)
	close(stop)
	if err := <-appDone; err != nil {
		t.Fatalf("the application: %v", err)
	}
	shadows := listJSON(t, b, via...)
	if len(shadows) != 1 {
		t.Fatalf("%d shadows", len(shadows))
	}
	// Read the shadow's database from a writable copy (SQLite may want to
	// write its -shm).
	cp := filepath.Join(t.TempDir(), "db")
	if out, err := exec.Command("cp", "-a", filepath.Join(shadows[0].ShadowPath, "db"), cp).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v\n%s", err, out)
	}
	sdb, err := sql.Open("sqlite", filepath.Join(cp, "app.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer sdb.Close()
	var check string
	if err := sdb.QueryRow("PRAGMA integrity_check").Scan(&check); err != nil || check != "ok" {
		t.Fatalf("integrity_check of the shadow: %q, %v", check, err)
	}
	var n, max int64
	if err := sdb.QueryRow("SELECT count(*), coalesce(max(id), 0) FROM rows").Scan(&n, &max); err != nil {
		t.Fatal(err)
	}
	if n != max {
		t.Errorf("the shadow has %d rows up to id %d: a hole", n, max)
	}
	mu.Lock()
	for i, id := range committed {
		if commitTimes[i].Before(before) && id > max {
			t.Errorf("row %d was committed before the set began but is not in the shadow (max %d)", id, max)
			break
		}
	}
	t.Logf("the shadow holds %d rows of %d committed", max, len(committed))
	mu.Unlock()

	got, err := os.ReadFile(events)
	if err != nil {
		t.Fatal(err)
	}
	var evs []string
	for _, l := range strings.Split(strings.TrimSpace(string(got)), "\n") {
		f := strings.Fields(l)
		if len(f) < 3 || f[2] != fs.Dir {
			t.Errorf("hook line %q: want the event name and the volume %s", l, fs.Dir)
			continue
		}
		evs = append(evs, f[0]+"/"+f[1])
	}
	if want := "ps/prepare-snapshot fr/freeze th/thaw post/post-snapshot"; strings.Join(evs, " ") != want {
		t.Errorf("the hook ran %q, want %q", strings.Join(evs, " "), want)
	}
	r = vssadmin(t, b, nil, append(via, "list", "writers", "--format", "json")...).must(t)
	var ws []struct {
		Name  string `json:"name"`
		State int    `json:"state"`
		Kind  string `json:"kind"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &ws); err != nil {
		t.Fatal(err)
	}
	kinds := map[string]string{}
	for _, w := range ws {
		kinds[w.Name] = w.Kind
		if w.State != 1 {
			t.Errorf("writer %s in state %d after the set", w.Name, w.State)
		}
	}
	if kinds["SQLite Writer"] != "built-in" || kinds["Test Hook Writer"] != "hook" {
		t.Errorf("writer kinds %v", kinds)
	}
}

// TestConfiguredWritersReleasedWhenVssdKilled: vssd is killed with SIGKILL
// while its built-in SQLite writer holds the database's write lock and a
// hook writer has stopped a process (kill -STOP): the database is writable
// again at once (the lock died with vssd), and the hook's guard runs the
// thaw command (kill -CONT) by itself.
func TestConfiguredWritersReleasedWhenVssdKilled(t *testing.T) {
	testutil.RequireRoot(t)
	b := build(t)
	fault := buildTagged(t, "faultinject", "github.com/linuxvss/vss/cmd/vssd")
	fs := testutil.NewFS(t, "btrfs", 0)
	dir := openDir(t)
	dbPath := filepath.Join(fs.Dir, "app.db")
	db, err := sql.Open("sqlite", dbPath+"?_pragma=journal_mode(WAL)&_pragma=busy_timeout(0)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec("CREATE TABLE rows (id INTEGER PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	// The process the hook stops and continues.
	sleeper := exec.Command("sleep", "300")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sleeper.Process.Kill(); sleeper.Wait() })
	pid := sleeper.Process.Pid
	hooks := filepath.Join(dir, "writers.d")
	if err := os.MkdirAll(hooks, 0o755); err != nil {
		t.Fatal(err)
	}
	hook := fmt.Sprintf("name = \"Stopper\"\n\n[[component]]\nname = \"app\"\nfiles = [ { path = %q } ]\n\n[events]\nfreeze = { command = [\"/bin/kill\", \"-STOP\", \"%d\"] }\nthaw = { command = [\"/bin/kill\", \"-CONT\", \"%d\"] }\n",
		fs.Dir, pid, pid)
	if err := os.WriteFile(filepath.Join(hooks, "stopper.toml"), []byte(hook), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "vssd.toml")
	conf := fmt.Sprintf("[writers]\nhooks_dir = %q\n\n[[writers.sqlite]]\nname = \"app\"\npaths = [%q]\n", hooks, dbPath)
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	socket, state := filepath.Join(dir, "vssd.sock"), filepath.Join(dir, "state")
	fb := b
	fb.vssd = filepath.Join(fault, "vssd")
	// vssd pauses, frozen, long enough for the test to see the freeze.
	d := startDaemonEnv(t, fb, socket, state, []string{"VSS_FAULT=freeze=sleep:1s,flush=kill"}, "--config", cfg)
	via := []string{"--socket", socket, "--state-dir", state}
	done := make(chan run, 1)
	go func() { done <- vssadmin(t, b, nil, append(via, "create", "shadow", "--for", fs.Dir)...) }()
	// While frozen: the database refuses writes and the process is stopped.
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := db.Exec("INSERT INTO rows DEFAULT VALUES")
		if err != nil && processState(t, pid) == "T" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("never saw the freeze (insert error %v, process state %s)", err, processState(t, pid))
		}
		time.Sleep(5 * time.Millisecond)
	}
	select {
	case <-d.done:
	case <-time.After(15 * time.Second):
		t.Fatal("vssd was not killed")
	}
	killed := time.Now()
	var dbAt, procAt time.Duration
	for dbAt == 0 || procAt == 0 {
		if dbAt == 0 {
			if _, err := db.Exec("INSERT INTO rows DEFAULT VALUES"); err == nil {
				dbAt = time.Since(killed)
			}
		}
		if procAt == 0 && processState(t, pid) != "T" {
			procAt = time.Since(killed)
		}
		if time.Since(killed) > 5*time.Second {
			t.Fatalf("after vssd died: database writable after %v, process continued after %v", dbAt, procAt)
		}
		time.Sleep(time.Millisecond)
	}
	t.Logf("after vssd's SIGKILL: the database was writable %v later, the stopped process continued %v later", dbAt, procAt)
	if r := <-done; r.code == 0 {
		t.Error("create shadow succeeded although vssd was killed")
	}
	// A new vssd leaves nothing behind.
	startDaemon(t, b, socket, state, "--config", cfg)
	if sh := listJSON(t, b, via...); len(sh) != 0 {
		t.Errorf("%d shadows after the restart", len(sh))
	}
}

// processState returns the state letter of /proc/PID/stat (T: stopped).
func processState(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return strings.Fields(s[i+1:])[0]
}
