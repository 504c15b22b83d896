// Package pgtest starts private PostgreSQL servers for tests: a fresh
// cluster made with initdb (Start), or a server on an existing data
// directory such as a copy or a shadow copy of another cluster (StartOn).
// A server listens on a unix socket in a private directory (and on
// 127.0.0.1 only when asked), runs as the postgres OS user when the test
// runs as root (the server refuses root), and is stopped by t.Cleanup, also
// when the test fails.
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/linuxvss/vss/internal/testutil"
)

// OSUser is the OS user the servers run as when the tests run as root.
const OSUser = "postgres"

// startTimeout bounds how long a server may take to start (recovery
// included) or to stop.
const startTimeout = 120 * time.Second

// Options configure a server.
type Options struct {
	// DataDir is where initdb makes the cluster (Start); default a
	// directory below t.TempDir(). StartOn ignores it.
	DataDir string
	// Port is the port number (the unix socket's name, and the TCP port
	// when TCP is set); 0 picks a free one.
	Port int
	// TCP also makes the server listen on 127.0.0.1:Port.
	TCP bool
	// Settings are extra configuration parameters (name → value, written
	// as name = 'value'). Start writes them into postgresql.conf; StartOn
	// passes them with -c on the command line.
	Settings map[string]string
}

// Server is a running (or stopped) private PostgreSQL server.
type Server struct {
	// DataDir is the cluster's data directory.
	DataDir string
	// SocketDir is the private directory of the unix socket.
	SocketDir string
	// Port is the server's port (socket name .s.PGSQL.<Port>).
	Port int
	// LogFile is the server's log (stderr of the postmaster).
	LogFile string

	bin     string
	cred    *syscall.Credential // nil: run as the current user
	cmdOpts []string            // -c options of StartOn
	mu      sync.Mutex
	pid     int // postmaster of the last start
}

var binDir struct {
	once sync.Once
	dir  string
	err  error
}

// BinDir returns the directory of the newest installed PostgreSQL server
// binaries (/usr/lib/postgresql/<major>/bin on Debian).
func BinDir() (string, error) {
	binDir.once.Do(func() {
		var best string
		var bestVer int
		for _, pattern := range []string{"/usr/lib/postgresql/*/bin", "/usr/pgsql-*/bin"} {
			dirs, _ := filepath.Glob(pattern)
			for _, d := range dirs {
				if _, err := os.Stat(filepath.Join(d, "initdb")); err != nil {
					continue
				}
				name := filepath.Base(filepath.Dir(d))
				name = strings.TrimPrefix(name, "pgsql-")
				v, _ := strconv.Atoi(strings.SplitN(name, ".", 2)[0])
				if best == "" || v > bestVer {
					best, bestVer = d, v
				}
			}
		}
		if best == "" {
			if p, err := exec.LookPath("initdb"); err == nil {
				best = filepath.Dir(p)
			}
		}
		if best == "" {
			binDir.err = errors.New("no PostgreSQL server binaries (initdb) in /usr/lib/postgresql/*/bin, /usr/pgsql-*/bin or PATH; apt-get install postgresql")
		}
		binDir.dir = best
	})
	return binDir.dir, binDir.err
}

// Require skips the test (fails it in CI) when no PostgreSQL server
// binaries are installed.
func Require(t testing.TB) {
	t.Helper()
	if _, err := BinDir(); err != nil {
		testutil.SkipOrFail(t, "%v", err)
	}
}

// Start makes a new cluster with initdb (trust authentication, superuser
// postgres) and starts a server on it. The settings (port, socket
// directory, listen addresses, o.Settings) go into postgresql.conf, so
// that pg_ctl -D DataDir start brings the same server back.
func Start(t testing.TB, o Options) *Server {
	t.Helper()
	s := newServer(t, o)
	if o.DataDir == "" {
		s.DataDir = filepath.Join(t.TempDir(), "data")
	} else {
		s.DataDir = filepath.Clean(o.DataDir)
	}
	if err := os.MkdirAll(filepath.Dir(s.DataDir), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(s.DataDir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		t.Fatal(err)
	}
	s.chown(t, s.DataDir, false)
	traversable(t, s.DataDir, s.cred)
	s.run(t, filepath.Join(s.bin, "initdb"), "-D", s.DataDir, "--auth=trust", "-U", "postgres",
		"--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions")
	var conf strings.Builder
	conf.WriteString("\n# pgtest\n")
	for _, kv := range s.baseSettings(o) {
		fmt.Fprintf(&conf, "%s = %s\n", kv[0], quote(kv[1]))
	}
	f, err := os.OpenFile(filepath.Join(s.DataDir, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.WriteString(conf.String())
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.cleanup(t) })
	s.Start(t)
	return s
}

// StartOn starts a server on an existing data directory: a copy or a
// shadow copy of another cluster. It makes the directory the server
// user's with mode 0700, removes a stale postmaster.pid, and gives the
// server its own port and socket directory with -c options, so that the
// copy's postgresql.conf does not matter. It fails (with the server log)
// when the server does not come up and accept connections.
func StartOn(t testing.TB, dataDir string, o Options) *Server {
	t.Helper()
	s := newServer(t, o)
	s.DataDir = filepath.Clean(dataDir)
	if _, err := os.Stat(filepath.Join(s.DataDir, "PG_VERSION")); err != nil {
		t.Fatalf("StartOn: %s is not a data directory: %v", s.DataDir, err)
	}
	s.chown(t, s.DataDir, true)
	if err := os.Chmod(s.DataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	traversable(t, s.DataDir, s.cred)
	if err := os.Remove(filepath.Join(s.DataDir, "postmaster.pid")); err == nil {
		t.Logf("StartOn: removed a stale postmaster.pid from %s", s.DataDir)
	} else if !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	for _, kv := range s.baseSettings(o) {
		s.cmdOpts = append(s.cmdOpts, "-c", kv[0]+"="+kv[1])
	}
	t.Cleanup(func() { s.cleanup(t) })
	s.Start(t)
	return s
}

// newServer prepares what every server needs: binaries, the OS user, a
// private directory for the socket and the log, a port.
func newServer(t testing.TB, o Options) *Server {
	t.Helper()
	Require(t)
	bin, _ := BinDir()
	s := &Server{bin: bin, Port: o.Port}
	if os.Geteuid() == 0 {
		s.cred = osUser(t)
	}
	run, err := os.MkdirTemp("", "pgtest")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(run); err != nil {
			t.Errorf("pgtest: %v", err)
		}
	})
	if len(run)+len("/.s.PGSQL.65535.lock") > 100 { // sun_path holds 108 bytes
		t.Fatalf("pgtest: socket directory %s is too long for a unix socket path", run)
	}
	s.SocketDir = run
	s.LogFile = filepath.Join(run, "postgres.log")
	s.chown(t, run, false)
	traversable(t, run, s.cred)
	if s.Port == 0 {
		s.Port = freePort(t)
	}
	return s
}

// baseSettings are the settings that make the server private, then the
// test's own, in a stable order.
func (s *Server) baseSettings(o Options) [][2]string {
	listen := ""
	if o.TCP {
		listen = "127.0.0.1"
	}
	kv := [][2]string{
		{"listen_addresses", listen},
		{"port", strconv.Itoa(s.Port)},
		{"unix_socket_directories", s.SocketDir},
	}
	names := make([]string, 0, len(o.Settings))
	for k := range o.Settings {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		kv = append(kv, [2]string{k, o.Settings[k]})
	}
	return kv
}

// DSN returns a pgx connection string for database db over the unix
// socket.
func (s *Server) DSN(db string) string {
	return fmt.Sprintf("host=%s port=%d user=postgres dbname=%s sslmode=disable", s.SocketDir, s.Port, db)
}

// Connect opens a connection to database db, closed by t.Cleanup.
func (s *Server) Connect(t testing.TB, db string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, s.DSN(db))
	if err != nil {
		t.Fatalf("connect to %s: %v", s.DataDir, err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	return c
}

// Start starts the (stopped) server with pg_ctl and waits until it
// accepts connections; on failure the error carries the server log.
func (s *Server) Start(t testing.TB) {
	t.Helper()
	args := []string{"-D", s.DataDir, "-l", s.LogFile, "-w", "-t", strconv.Itoa(int(startTimeout / time.Second))}
	if len(s.cmdOpts) > 0 {
		args = append(args, "-o", shellJoin(s.cmdOpts))
	}
	args = append(args, "start")
	if out, err := s.command(filepath.Join(s.bin, "pg_ctl"), args...).CombinedOutput(); err != nil {
		t.Fatalf("pg_ctl start %s: %v\n%s\nserver log:\n%s", s.DataDir, err, out, s.Log())
	}
	s.mu.Lock()
	s.pid = s.postmasterPID()
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if err := s.WaitReady(ctx); err != nil {
		t.Fatalf("server on %s: %v\nserver log:\n%s", s.DataDir, err, s.Log())
	}
}

// WaitReady waits until the server accepts connections to database
// postgres, or ctx ends.
func (s *Server) WaitReady(ctx context.Context) error {
	for {
		c, err := pgx.Connect(ctx, s.DSN("postgres"))
		if err == nil {
			err = c.Ping(ctx)
			_ = c.Close(context.Background())
			if err == nil {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("server does not accept connections: %w", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Stop stops the server (pg_ctl stop -m fast) and fails the test if it
// cannot.
func (s *Server) Stop(t testing.TB) {
	t.Helper()
	if err := s.stop("fast"); err != nil {
		t.Fatalf("stop server on %s: %v", s.DataDir, err)
	}
}

// Running reports whether pg_ctl status finds a server on the data
// directory.
func (s *Server) Running() bool {
	return s.command(filepath.Join(s.bin, "pg_ctl"), "-D", s.DataDir, "status").Run() == nil
}

// Log returns the end of the server log.
func (s *Server) Log() string {
	b, err := os.ReadFile(s.LogFile)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	const max = 16 << 10
	if len(b) > max {
		b = append([]byte("…\n"), b[len(b)-max:]...)
	}
	return string(b)
}

func (s *Server) stop(mode string) error {
	out, err := s.command(filepath.Join(s.bin, "pg_ctl"), "-D", s.DataDir, "-w",
		"-t", strconv.Itoa(int(startTimeout/time.Second)), "stop", "-m", mode).CombinedOutput()
	if err != nil {
		return fmt.Errorf("pg_ctl stop -m %s: %w\n%s", mode, err, out)
	}
	return nil
}

// cleanup stops the server however it can: fast, then immediate, then
// SIGKILL of the postmaster it started.
func (s *Server) cleanup(t testing.TB) {
	if s.Running() {
		if err := s.stop("fast"); err != nil {
			t.Logf("pgtest: %v; stopping in immediate mode", err)
			if err := s.stop("immediate"); err != nil {
				t.Errorf("pgtest: %v", err)
			}
		}
	}
	s.mu.Lock()
	pid := s.pid
	s.mu.Unlock()
	// pg_ctl stop -w returns once the postmaster has removed its pid file,
	// which it does on its way out: give it a moment to be gone.
	for i := 0; i < 100 && pid > 0 && s.isOurPostmaster(pid); i++ {
		time.Sleep(50 * time.Millisecond)
	}
	if pid > 0 && s.isOurPostmaster(pid) {
		t.Errorf("pgtest: postmaster %d of %s still runs; killing it", pid, s.DataDir)
		_ = syscall.Kill(pid, syscall.SIGKILL)
		for i := 0; i < 100 && s.isOurPostmaster(pid); i++ {
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// isOurPostmaster reports whether pid is a live postgres process serving
// this data directory.
func (s *Server) isOurPostmaster(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		if i := strings.LastIndexByte(string(st), ')'); i > 0 && strings.HasPrefix(string(st[i:]), ") Z") {
			return false // a zombie
		}
	}
	args := strings.Split(string(b), "\x00")
	return len(args) > 0 && filepath.Base(args[0]) == "postgres" && strings.Contains(string(b), s.DataDir)
}

func (s *Server) postmasterPID() int {
	b, err := os.ReadFile(filepath.Join(s.DataDir, "postmaster.pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
	return pid
}

// command runs a server program as the server user.
func (s *Server) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.Dir = "/"
	if s.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	}
	return cmd
}

func (s *Server) run(t testing.TB, name string, args ...string) {
	t.Helper()
	if out, err := s.command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// chown gives path (with everything below it when recursive, without
// following symbolic links) to the server user.
func (s *Server) chown(t testing.TB, path string, recursive bool) {
	t.Helper()
	if s.cred == nil {
		return
	}
	uid, gid := int(s.cred.Uid), int(s.cred.Gid)
	if !recursive {
		if err := os.Lchown(path, uid, gid); err != nil {
			t.Fatal(err)
		}
		return
	}
	err := filepath.WalkDir(path, func(p string, _ os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
	if err != nil {
		t.Fatalf("chown %s: %v", path, err)
	}
}

var userOnce sync.Mutex

// osUser returns the credential of the postgres OS user, creating a
// system user when there is none.
func osUser(t testing.TB) *syscall.Credential {
	t.Helper()
	userOnce.Lock()
	defer userOnce.Unlock()
	u, err := user.Lookup(OSUser)
	if err != nil {
		testutil.RequireTools(t, "useradd")
		if out, err := exec.Command("useradd", "--system", "--user-group", "--no-create-home",
			"--home-dir", "/var/lib/postgresql", "--shell", "/bin/sh", OSUser).CombinedOutput(); err != nil {
			t.Fatalf("useradd %s: %v\n%s", OSUser, err, out)
		}
		t.Logf("pgtest: created the system user %s", OSUser)
		if u, err = user.Lookup(OSUser); err != nil {
			t.Fatal(err)
		}
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
}

// traversable lets the server user reach path: every ancestor that the
// user cannot search (t.TempDir's parents are 0700) gets o+x until the
// test ends.
func traversable(t testing.TB, path string, cred *syscall.Credential) {
	t.Helper()
	if cred == nil {
		return
	}
	for dir := filepath.Dir(path); ; dir = filepath.Dir(dir) {
		fi, err := os.Stat(dir)
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		mode := fi.Mode().Perm()
		ok := mode&0o001 != 0 || (st.Uid == cred.Uid && mode&0o100 != 0) || (st.Gid == cred.Gid && mode&0o010 != 0)
		if !ok {
			if err := os.Chmod(dir, mode|0o001); err != nil {
				t.Fatal(err)
			}
			d, m := dir, fi.Mode()&(os.ModePerm|os.ModeSticky|os.ModeSetgid|os.ModeSetuid)
			t.Cleanup(func() { _ = os.Chmod(d, m) })
		}
		if dir == "/" {
			return
		}
	}
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// quote writes a postgresql.conf string value.
func quote(v string) string { return "'" + strings.ReplaceAll(v, "'", "''") + "'" }

// shellJoin quotes words for sh (pg_ctl -o goes through the shell).
func shellJoin(words []string) string {
	q := make([]string, len(words))
	for i, w := range words {
		q[i] = "'" + strings.ReplaceAll(w, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}
