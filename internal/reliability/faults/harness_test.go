package faults

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/linuxvss/vss/internal/catalog"
	"github.com/linuxvss/vss/internal/testutil"
	"github.com/linuxvss/vss/internal/vsserr"
)

// The limits the harness runs vssd with: short, so that a hung writer
// costs seconds, not minutes.
const (
	freezeTimeout = 5 * time.Second
	commitTimeout = 5 * time.Second
	maxShadows    = 3
	// lateSlack is how long after its freeze deadline an application may
	// still be thawed (scheduling on a loaded machine).
	lateSlack = 500 * time.Millisecond
)

// The providers and the filesystems they run on.
const (
	pBtrfs   = "btrfs"
	pReflink = "reflink"
	pCopy    = "copy"
)

var providers = []string{pBtrfs, pReflink, pCopy}

// probeName is the file the frozen-filesystem probe writes at the root of
// every test filesystem (made before any shadow, so that writing it changes
// no directory).
const probeName = ".faults-probe"

type bins struct{ vssd, vssadmin, diskshadow, writer string }

// build compiles vssd with the faultinject tag, and the requesters and
// the fault writer without it, into directories of the test.
func build(t *testing.T) bins {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		testutil.SkipOrFail(t, "needs the go command")
	}
	tagged, plain := t.TempDir(), t.TempDir()
	run := func(dir string, tags []string, pkgs ...string) {
		args := append([]string{"build", "-o", dir + "/"}, tags...)
		out, err := exec.Command(gobin, append(args, pkgs...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("go build %v: %v\n%s", pkgs, err, out)
		}
	}
	run(tagged, []string{"-tags", "faultinject"}, "github.com/linuxvss/vss/cmd/vssd")
	run(plain, nil, "github.com/linuxvss/vss/cmd/vssadmin", "github.com/linuxvss/vss/cmd/diskshadow",
		"github.com/linuxvss/vss/internal/reliability/faults/faultwriter")
	return bins{vssd: filepath.Join(tagged, "vssd"), vssadmin: filepath.Join(plain, "vssadmin"),
		diskshadow: filepath.Join(plain, "diskshadow"), writer: filepath.Join(plain, "faultwriter")}
}

// cleanEnv is the environment without what would point the programs
// elsewhere or inject faults.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if k == "VSS_SOCKET" || k == "VSS_STATE_DIR" || k == "VSS_CONFIG" || k == "NOTIFY_SOCKET" ||
			strings.HasPrefix(k, "VSS_FAULT") || strings.HasPrefix(k, "LISTEN_") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// harness is one environment: the filesystems, a vssd, the fault writer.
type harness struct {
	t *testing.T
	b bins

	dir                      string // private files: socket, configuration, logs
	socket, stateDir, config string
	faultFile, faultDir      string
	control, appLog          string

	vols    map[string]*testutil.FS // by provider
	store   *testutil.FS            // the copy provider's shadow storage
	statefs *testutil.FS            // holds the state directory

	d      *daemon
	nVssd  int
	w      *writerProc
	nWrite int
	bus    *lineBus // every line the writers printed

	seq int // for names and seeds
}

// newHarness makes the filesystems, starts vssd and the writer.
func newHarness(t *testing.T) *harness {
	testutil.RequireRoot(t)
	testutil.RequireTools(t, "btrfs", "mkfs.btrfs", "mkfs.xfs", "mkfs.ext4", "losetup")
	h := &harness{t: t, b: build(t), bus: newLineBus()}
	h.dir = t.TempDir()
	h.socket = filepath.Join(h.dir, "vssd.sock")
	h.config = filepath.Join(h.dir, "vssd.toml")
	h.faultFile = filepath.Join(h.dir, "fault-spec")
	h.faultDir = filepath.Join(h.dir, "fault-points")
	h.control = filepath.Join(h.dir, "writer-control")
	h.appLog = filepath.Join(h.dir, "app.log")
	if err := os.Mkdir(h.faultDir, 0o755); err != nil {
		t.Fatal(err)
	}
	h.vols = map[string]*testutil.FS{
		pBtrfs:   testutil.NewFS(t, "btrfs", 256<<20),
		pReflink: testutil.NewFS(t, "xfs", 320<<20),
		pCopy:    testutil.NewFS(t, "ext4", 64<<20),
	}
	h.store = testutil.NewFS(t, "ext4", 48<<20)
	// btrfs: copy-on-write, so that a full filesystem fails every write
	// of the catalog (on ext4, bbolt rewriting pages its file already has
	// needs no space, and the catalog commit mostly succeeds).
	h.statefs = testutil.NewFS(t, "btrfs", 160<<20)
	h.stateDir = filepath.Join(h.statefs.Dir, "state")
	for _, fs := range h.allFS() {
		if err := os.WriteFile(filepath.Join(fs.Dir, probeName), []byte("probe\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for i, p := range providers {
		populate(t, h.vols[p].Dir, int64(i))
	}
	conf := fmt.Sprintf("freeze_timeout = %q\ncommit_timeout = %q\nmax_shadow_copies = %d\n\n[writers.timeouts]\nprepare-snapshot = \"1500ms\"\npost-snapshot = \"1500ms\"\nabort = \"1s\"\nbackup-complete = \"1500ms\"\nbackup-shutdown = \"1s\"\n",
		freezeTimeout, commitTimeout, maxShadows)
	if err := os.WriteFile(h.config, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Whatever happened: no daemon, no writer, nothing frozen.
		if h.d != nil {
			h.d.cmd.Process.Kill()
			<-h.d.done
		}
		if h.w != nil {
			h.w.cmd.Process.Kill()
			<-h.w.done
		}
		for _, pid := range h.strayVssd() {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	h.startVssd()
	h.vssadmin("add", "shadowstorage", "--for", h.vols[pCopy].Dir, "--on", h.store.Dir).must(t)
	h.startWriter()
	// A first shadow of each volume makes its storage directory (where
	// the storage is filled).
	for _, p := range providers {
		h.create(h.vols[p].Dir)
	}
	return h
}

func (h *harness) allFS() []*testutil.FS {
	return []*testutil.FS{h.vols[pBtrfs], h.vols[pReflink], h.vols[pCopy], h.store, h.statefs}
}

// populate writes the test data of a volume: two directories of a hundred
// small files each, a larger file, a symbolic link (some 200 entries: a
// revert's midpoint falls in the second directory).
func populate(t *testing.T, root string, seed int64) {
	r := rand.New(rand.NewSource(seed))
	for _, d := range []string{"a", "b"} {
		for i := 0; i < 100; i++ {
			testutil.WriteFile(t, root, fmt.Sprintf("data/%s/f%03d", d, i), testutil.RandomBytes(r.Int63(), 512+r.Intn(8<<10)))
		}
	}
	testutil.WriteFile(t, root, "data/big.bin", testutil.RandomBytes(r.Int63(), 1<<20))
	if err := os.Symlink("a/f000", filepath.Join(root, "data/link")); err != nil {
		t.Fatal(err)
	}
}

// mutate changes a populated volume all over the tree (content, deletion,
// creation, mode), so that a revert has work before and after its midpoint.
func mutate(t *testing.T, root string, seed int64) {
	r := rand.New(rand.NewSource(seed))
	for _, d := range []string{"a", "b"} {
		for i := 0; i < 100; i++ {
			rel := fmt.Sprintf("data/%s/f%03d", d, i)
			p := filepath.Join(root, rel)
			switch i % 4 {
			case 0:
				os.Remove(p)
			case 1:
				testutil.WriteFile(t, root, rel, testutil.RandomBytes(r.Int63(), 256+r.Intn(8<<10)))
			case 2:
				os.Chmod(p, 0o600)
			}
		}
	}
	for i := 0; i < 10; i++ {
		testutil.WriteFile(t, root, fmt.Sprintf("data/new%d/n%02d", seed%3, i), testutil.RandomBytes(r.Int63(), 500))
	}
	f, err := os.OpenFile(filepath.Join(root, "data/big.bin"), os.O_WRONLY, 0)
	if err == nil {
		f.WriteAt(testutil.RandomBytes(r.Int63(), 4096), int64(r.Intn(1<<20)))
		f.Close()
	}
}

// ---- vssd ----

type daemon struct {
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

func (d *daemon) alive() bool {
	select {
	case <-d.done:
		return false
	default:
		return true
	}
}

// startVssd starts a vssd (each with its own log) and waits until it
// answers on its socket.
func (h *harness) startVssd() {
	t := h.t
	h.nVssd++
	d := &daemon{log: filepath.Join(h.dir, fmt.Sprintf("vssd-%03d.log", h.nVssd)), done: make(chan struct{})}
	logf, err := os.Create(d.log)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	d.cmd = exec.Command(h.b.vssd, "--socket", h.socket, "--state-dir", h.stateDir, "--config", h.config, "--log-level", "debug")
	d.cmd.Env = append(cleanEnv(), "VSS_FAULT_FILE="+h.faultFile, "VSS_FAULT_DIR="+h.faultDir)
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	d.cmd.Dir = "/"
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.cmd.Wait(); close(d.done) }()
	h.d = d
	deadline := time.Now().Add(30 * time.Second)
	for {
		if c, err := net.Dial("unix", h.socket); err == nil {
			c.Close()
			return
		}
		select {
		case <-d.done:
			b, _ := os.ReadFile(d.log)
			t.Fatalf("vssd exited at start:\n%s", b)
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("vssd does not answer on its socket")
		}
	}
}

// strayVssd lists the processes of the tagged vssd binary other than the
// current daemon: freeze guards (they run the same binary) or daemons that
// should be gone.
func (h *harness) strayVssd() []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	cur := -1
	if h.d != nil && h.d.alive() {
		cur = h.d.cmd.Process.Pid
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == cur {
			continue
		}
		if exe, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe")); err == nil && strings.TrimSuffix(exe, " (deleted)") == h.b.vssd {
			out = append(out, pid)
		}
	}
	return out
}

// ---- the fault writer ----

// lineBus keeps every line the writers printed, and wakes who waits.
type lineBus struct {
	mu      sync.Mutex
	lines   []string
	changed chan struct{}
}

func newLineBus() *lineBus { return &lineBus{changed: make(chan struct{})} }

func (b *lineBus) add(l string) {
	b.mu.Lock()
	b.lines = append(b.lines, l)
	close(b.changed)
	b.changed = make(chan struct{})
	b.mu.Unlock()
}

// mark returns the position of the next line.
func (b *lineBus) mark() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.lines)
}

// since returns the lines from position i on.
func (b *lineBus) since(i int) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.lines[i:]...)
}

// wait waits for a line from position from on that satisfies ok, until
// timeout or stop is closed; it returns the position after the line.
func (b *lineBus) wait(from int, ok func(string) bool, timeout time.Duration, stop <-chan struct{}) (int, bool) {
	deadline := time.After(timeout)
	for {
		b.mu.Lock()
		for ; from < len(b.lines); from++ {
			if ok(b.lines[from]) {
				b.mu.Unlock()
				return from + 1, true
			}
		}
		ch := b.changed
		b.mu.Unlock()
		select {
		case <-ch:
		case <-deadline:
			return from, false
		case <-stop:
			return from, false
		}
	}
}

type writerProc struct {
	cmd    *exec.Cmd
	done   chan struct{}
	stderr bytes.Buffer
}

func (w *writerProc) alive() bool {
	select {
	case <-w.done:
		return false
	default:
		return true
	}
}

// startWriter starts the fault writer and waits until it is registered.
func (h *harness) startWriter() {
	t := h.t
	h.nWrite++
	w := &writerProc{done: make(chan struct{})}
	w.cmd = exec.Command(h.b.writer, "--socket", h.socket, "--log", h.appLog, "--control", h.control, "--interval", "5ms")
	w.cmd.Env = cleanEnv()
	w.cmd.Dir = "/"
	w.cmd.Stderr = &w.stderr
	out, err := w.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	from := h.bus.mark()
	if err := w.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := w.cmd.Process.Pid
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			h.bus.add(fmt.Sprintf("%d %s", pid, sc.Text()))
		}
		io.Copy(io.Discard, out)
		w.cmd.Wait()
		close(w.done)
	}()
	h.w = w
	h.waitRegistered(from)
}

// waitRegistered waits until the writer says it registered after bus
// position from.
func (h *harness) waitRegistered(from int) {
	h.t.Helper()
	if _, ok := h.bus.wait(from, func(l string) bool { return strings.HasSuffix(l, " registered") }, 20*time.Second, nil); !ok {
		h.t.Fatalf("the fault writer did not register; it printed:\n%s\nstderr:\n%s", strings.Join(h.bus.since(from), "\n"), h.w.stderr.String())
	}
}

// setControl writes the writer's control file (atomically).
func (h *harness) setControl(s string) {
	if err := os.WriteFile(h.control+".new", []byte(s), 0o644); err != nil {
		h.t.Fatal(err)
	}
	if err := os.Rename(h.control+".new", h.control); err != nil {
		h.t.Fatal(err)
	}
}

// setFault writes the fault spec vssd reads at every point (atomically).
func (h *harness) setFault(spec string) {
	if err := os.WriteFile(h.faultFile+".new", []byte(spec), 0o644); err != nil {
		h.t.Fatal(err)
	}
	if err := os.Rename(h.faultFile+".new", h.faultFile); err != nil {
		h.t.Fatal(err)
	}
}

// clearFaultDir removes the points' notifications and go-aheads.
func (h *harness) clearFaultDir() {
	ents, _ := os.ReadDir(h.faultDir)
	for _, e := range ents {
		os.Remove(filepath.Join(h.faultDir, e.Name()))
	}
}

// ---- requesters ----

// result is what a requester did.
type result struct {
	cmd            string
	stdout, stderr string
	exit           int
	code           vsserr.Code // the VSS error it printed (0: none)
	took           time.Duration
}

var errLine = regexp.MustCompile(`\b([A-Z][A-Z_]+) \((0x[0-9A-Fa-f]{8})\)`)

func (r result) String() string {
	s := fmt.Sprintf("%s: exit %d", r.cmd, r.exit)
	if r.code != 0 {
		s += " " + r.code.String()
	}
	return s
}

func (r result) must(t *testing.T) result {
	t.Helper()
	if r.exit != 0 {
		t.Fatalf("%s\nstdout:\n%s\nstderr:\n%s", r, r.stdout, r.stderr)
	}
	return r
}

// runTool runs a requester with a time limit.
func (h *harness) runTool(bin string, stdin string, args ...string) result {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.Dir = "/"
	cmd.Env = cleanEnv()
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	start := time.Now()
	err := cmd.Run()
	r := result{cmd: label(bin, args), stdout: stdout.String(), stderr: stderr.String(), took: time.Since(start)}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.exit = ee.ExitCode()
	case err != nil:
		r.exit = -1
		r.stderr += "\n" + err.Error()
	}
	if r.exit != 0 {
		if m := errLine.FindStringSubmatch(r.stderr + "\n" + r.stdout); m != nil {
			v, _ := strconv.ParseUint(strings.TrimPrefix(strings.ToLower(m[2]), "0x"), 16, 32)
			r.code = vsserr.Code(v)
		}
	}
	return r
}

// label names a command for the log: the program and its verbs, without
// the options and paths.
func label(bin string, args []string) string {
	words := []string{filepath.Base(bin)}
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--socket" || a == "--state-dir" || a == "--for" || a == "-s":
			i++
		case strings.HasPrefix(a, "-") || strings.HasPrefix(a, "/"):
		default:
			words = append(words, a)
		}
	}
	return strings.Join(words, " ")
}

func (h *harness) via() []string {
	return []string{"--socket", h.socket, "--state-dir", h.stateDir}
}

// vssadmin runs vssadmin through vssd. A running vssd is required: a
// vssadmin that found none would run the service itself.
func (h *harness) vssadmin(args ...string) result {
	if h.d == nil || !h.d.alive() {
		h.t.Fatalf("vssadmin %v without a running vssd", args)
	}
	return h.runTool(h.b.vssadmin, "", append(h.via(), args...)...)
}

// diskshadowBackup runs a backup with diskshadow: a volatile set with the
// writers, then end backup (BackupComplete).
func (h *harness) diskshadowBackup(vol string) result {
	script := filepath.Join(h.dir, "backup.dsh")
	body := fmt.Sprintf("begin backup\nadd volume %s\ncreate\nend backup\n", vol)
	if err := os.WriteFile(script, []byte(body), 0o644); err != nil {
		h.t.Fatal(err)
	}
	return h.runTool(h.b.diskshadow, "", append(h.via(), "-s", script)...)
}

var shadowIDLine = regexp.MustCompile(`Shadow Copy ID: \{([0-9a-f-]{36})\}`)

// list returns the shadows vssd lists.
func (h *harness) list() ([]catalog.Shadow, error) {
	r := h.vssadmin("list", "shadows", "--format", "json")
	if r.exit != 0 {
		return nil, fmt.Errorf("%s\n%s%s", r, r.stdout, r.stderr)
	}
	var out []catalog.Shadow
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		return nil, fmt.Errorf("list shadows --format json: %v\n%s", err, r.stdout)
	}
	return out, nil
}

// create makes a shadow of vol without faults and returns its ID.
func (h *harness) create(vol string) string {
	r := h.vssadmin("create", "shadow", "--for", vol).must(h.t)
	m := shadowIDLine.FindStringSubmatch(r.stdout)
	if m == nil {
		h.t.Fatalf("no shadow ID in:\n%s", r.stdout)
	}
	return m[1]
}

// ---- filling filesystems ----

// fill fills the filesystem of dir until writing fails with ENOSPC (as
// root: the reserved blocks too) and returns what undoes it.
func fill(dir string) (undo func(), err error) {
	var made []string
	undo = func() {
		for _, p := range made {
			os.Remove(p)
		}
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return undo, err
	}
	p := filepath.Join(dir, ".faults-filler")
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return undo, err
	}
	made = append(made, p)
	size := int64(st.Bfree) * st.Bsize
	for size > 0 && unix.Fallocate(int(f.Fd()), 0, 0, size) != nil {
		size -= 1 << 20
	}
	f.Close()
	// The last blocks, with small writes.
	buf := make([]byte, 16<<10)
	for i := 0; i < 4096; i++ {
		q := filepath.Join(dir, fmt.Sprintf(".faults-filler-%d", i))
		f, err := os.OpenFile(q, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
		if err != nil {
			break
		}
		made = append(made, q)
		_, werr := f.Write(buf)
		if werr == nil {
			werr = f.Sync()
		}
		f.Close()
		if werr != nil {
			break
		}
	}
	return undo, nil
}

// ---- frozen filesystems ----

// probeFrozen writes to every test filesystem; it returns those where the
// write did not end within two seconds, after thawing them so that the run
// can go on.
func (h *harness) probeFrozen() []string {
	type res struct {
		dir    string
		frozen bool
	}
	ch := make(chan res, 8)
	fss := h.allFS()
	for _, fs := range fss {
		go func(dir string) {
			done := make(chan struct{})
			go func() {
				f, err := os.OpenFile(filepath.Join(dir, probeName), os.O_WRONLY, 0)
				if err == nil {
					f.Write([]byte("probe\n"))
					f.Close()
				}
				close(done)
			}()
			select {
			case <-done:
				ch <- res{dir, false}
			case <-time.After(2 * time.Second):
				ch <- res{dir, true}
			}
		}(fs.Dir)
	}
	var frozen []string
	for range fss {
		if r := <-ch; r.frozen {
			frozen = append(frozen, r.dir)
			if fd, err := unix.Open(r.dir, unix.O_RDONLY|unix.O_DIRECTORY, 0); err == nil {
				unix.IoctlSetInt(fd, 0xC0045878, 0) // FITHAW
				unix.Close(fd)
			}
		}
	}
	return frozen
}
