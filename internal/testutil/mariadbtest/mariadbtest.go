// Package mariadbtest runs real MariaDB servers for tests: it initialises a
// data directory with mariadb-install-db, starts mariadbd on it with a
// private socket (no system service, no shared configuration), waits until
// the server answers and stops it again when the test ends, also when the
// test fails. StartOn starts a second server on a copy or shadow of a data
// directory, which is how the consistency tests check a shadow copy.
package mariadbtest

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql" // the driver behind DSN

	"github.com/linuxvss/vss/internal/testutil"
)

// StartTimeout bounds how long a server may take to answer after it was
// started (InnoDB crash recovery of a shadow copy included).
const StartTimeout = 2 * time.Minute

// StopTimeout bounds a clean shutdown; after it the server is killed.
const StopTimeout = time.Minute

// Options configure a test server.
type Options struct {
	// DataDir is the data directory; empty means a new directory under
	// t.TempDir(). Start initialises it; it must be empty or missing.
	DataDir string
	// Settings are extra mariadbd options, name → value ("innodb_log_file_size"
	// → "16M"); an empty value gives the bare flag ("--skip-log-bin").
	// Underscores and dashes are equivalent. They override the defaults
	// of this package and are also passed to mariadb-install-db.
	Settings map[string]string
	// TCP makes the server listen on a free port of 127.0.0.1 as well
	// (Server.Port); by default it runs with --skip-networking.
	TCP bool
}

// Server is a mariadbd process owned by a test.
type Server struct {
	// DataDir is the server's --datadir.
	DataDir string
	// Socket is the server's unix socket, in a private directory.
	Socket string
	// PIDFile is the server's --pid-file, next to the socket.
	PIDFile string
	// ErrorLog is the server's --log-error file, next to the socket.
	ErrorLog string
	// Port is the TCP port on 127.0.0.1, 0 with --skip-networking.
	Port int

	args []string // mariadbd and its options

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

// Require skips the test (fails it in CI) when the MariaDB server programs
// are not installed.
func Require(t testing.TB) {
	t.Helper()
	for _, p := range []string{"mariadbd", "mariadb-install-db", "mariadb-admin"} {
		if _, err := lookPath(p); err != nil {
			testutil.SkipOrFail(t, "needs %s (apt-get install mariadb-server)", p)
		}
	}
}

// lookPath finds a program in PATH or in the sbin directories, where
// Debian puts mariadbd.
func lookPath(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/usr/local/sbin", "/sbin"} {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: %w", name, exec.ErrNotFound)
}

// Start initialises a data directory and starts a server on it. The test
// fails if the server does not answer within StartTimeout; the server is
// stopped when the test ends.
func Start(t testing.TB, o Options) *Server {
	t.Helper()
	Require(t)
	if o.DataDir == "" {
		o.DataDir = filepath.Join(t.TempDir(), "data")
	}
	s, err := newServer(t, o.DataDir, o)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(o.DataDir, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := s.install(); err != nil {
		t.Fatal(err)
	}
	if err := s.start(); err != nil {
		t.Fatal(err)
	}
	return s
}

// StartOn starts a server on an existing data directory — a copy or a
// shadow copy of another server's — without initialising it: it makes the
// files owned by the user the server runs as, removes pid and socket files
// the copy carries, gives the server its own socket and waits until it
// answers (after InnoDB recovery). The error, if the server does not come
// up, includes the server's error log. The server is stopped when the test
// ends.
func StartOn(t testing.TB, dataDir string, o Options) (*Server, error) {
	t.Helper()
	Require(t)
	s, err := newServer(t, dataDir, o)
	if err != nil {
		return nil, err
	}
	if err := prepareCopy(dataDir); err != nil {
		return nil, err
	}
	if err := s.start(); err != nil {
		return nil, err
	}
	return s, nil
}

// newServer fixes the options of a server and registers its stopping and
// the removal of its private directory with t.Cleanup.
func newServer(t testing.TB, dataDir string, o Options) (*Server, error) {
	bin, err := lookPath("mariadbd")
	if err != nil {
		return nil, err
	}
	dataDir, err = filepath.Abs(dataDir)
	if err != nil {
		return nil, fmt.Errorf("mariadbtest: %w", err)
	}
	// The socket path must fit in sun_path (108 bytes): t.TempDir() can be
	// too long, so the private directory is a short one under the system
	// temporary directory.
	run, err := os.MkdirTemp("", "mdb-")
	if err != nil {
		return nil, fmt.Errorf("mariadbtest: %w", err)
	}
	s := &Server{}
	t.Cleanup(func() {
		s.stop(t)
		if err := os.RemoveAll(run); err != nil {
			t.Errorf("mariadbtest: remove %s: %v", run, err)
		}
	})
	opts := map[string]string{
		"datadir":                        dataDir,
		"socket":                         filepath.Join(run, "mysqld.sock"),
		"pid-file":                       filepath.Join(run, "mariadbd.pid"),
		"log-error":                      filepath.Join(run, "error.log"),
		"innodb-flush-log-at-trx-commit": "1",
		"skip-networking":                "",
	}
	if os.Geteuid() == 0 {
		opts["user"] = "root"
	}
	if o.TCP {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		delete(opts, "skip-networking")
		opts["port"] = strconv.Itoa(port)
		opts["bind-address"] = "127.0.0.1"
		s.Port = port
	}
	for k, v := range o.Settings {
		opts[strings.ReplaceAll(k, "_", "-")] = v
	}
	s.DataDir = opts["datadir"]
	s.Socket = opts["socket"]
	s.PIDFile = opts["pid-file"]
	s.ErrorLog = opts["log-error"]
	keys := make([]string, 0, len(opts))
	for k := range opts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	s.args = []string{bin, "--no-defaults"}
	for _, k := range keys {
		if opts[k] == "" {
			s.args = append(s.args, "--"+k)
		} else {
			s.args = append(s.args, "--"+k+"="+opts[k])
		}
	}
	return s, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("mariadbtest: free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// install runs mariadb-install-db into the data directory: no test
// database, root@localhost without a password (the socket is private).
func (s *Server) install() error {
	bin, err := lookPath("mariadb-install-db")
	if err != nil {
		return err
	}
	args := []string{"--no-defaults", "--datadir=" + s.DataDir, "--skip-test-db",
		"--auth-root-authentication-method=normal", "--skip-name-resolve"}
	if os.Geteuid() == 0 {
		args = append(args, "--user=root")
	}
	// The server options that shape the files (redo log place and size,
	// binary log) must be the same at initialisation.
	for _, a := range s.args[2:] {
		switch {
		case strings.HasPrefix(a, "--datadir="), strings.HasPrefix(a, "--user="),
			strings.HasPrefix(a, "--socket="), strings.HasPrefix(a, "--pid-file="),
			strings.HasPrefix(a, "--log-error="), strings.HasPrefix(a, "--port="),
			strings.HasPrefix(a, "--bind-address="), a == "--skip-networking":
			continue
		}
		args = append(args, a)
	}
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("mariadbtest: mariadb-install-db %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}

// prepareCopy makes a copied data directory usable by a new server: the
// files belong to the user the server runs as, and pid and socket files of
// the original are gone.
func prepareCopy(dataDir string) error {
	entries, err := os.ReadDir(dataDir)
	if err != nil {
		return fmt.Errorf("mariadbtest: data directory: %w", err)
	}
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".pid") || e.Type()&fs.ModeSocket != 0 {
			if err := os.Remove(filepath.Join(dataDir, e.Name())); err != nil {
				return fmt.Errorf("mariadbtest: remove stale %s: %w", e.Name(), err)
			}
		}
	}
	if os.Geteuid() != 0 {
		return nil
	}
	uid, gid := os.Geteuid(), os.Getegid()
	err = filepath.WalkDir(dataDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && (int(st.Uid) != uid || int(st.Gid) != gid) {
			return os.Lchown(p, uid, gid)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("mariadbtest: fix ownership of %s: %w", dataDir, err)
	}
	return nil
}

// DSN returns the go-sql-driver/mysql data source name for database db
// (empty: none) over the server's socket, as root.
func (s *Server) DSN(db string) string {
	return "root@unix(" + s.Socket + ")/" + db
}

// TCPDSN returns the data source name over TCP; it needs Options.TCP.
func (s *Server) TCPDSN(db string) string {
	return fmt.Sprintf("root@tcp(127.0.0.1:%d)/%s", s.Port, db)
}

// Command returns the command line that starts this server (mariadbd and
// its options), for a writer's start command.
func (s *Server) Command() []string {
	return append([]string(nil), s.args...)
}

// DB opens a connection pool to database db with parseTime=true and closes
// it when the test ends.
func (s *Server) DB(t testing.TB, db string) *sql.DB {
	t.Helper()
	d, err := sql.Open("mysql", s.DSN(db)+"?parseTime=true")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// Start starts the server again after Stop (a no-op while it runs); the
// test fails if it does not answer.
func (s *Server) Start(t testing.TB) {
	t.Helper()
	if s.Running() {
		return
	}
	if err := s.start(); err != nil {
		t.Fatal(err)
	}
}

// Stop shuts the server down (SIGTERM: a clean shutdown) and waits until it
// is gone, killing it after StopTimeout. It also stops a server on this
// data directory that another program (a writer's start command) started,
// found through the pid file.
func (s *Server) Stop(t testing.TB) {
	t.Helper()
	s.stop(t)
}

// Running reports whether a server process of this Server is alive: the
// one it started, or one found through its pid file.
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.exited != nil {
		select {
		case <-s.exited:
		default:
			return true
		}
	}
	return s.foreignPIDLocked() > 0
}

// Ping reports whether the server answers on its socket (nil) before ctx
// ends.
func (s *Server) Ping(ctx context.Context) error {
	db, err := sql.Open("mysql", s.DSN("")+"?timeout=1s")
	if err != nil {
		return fmt.Errorf("mariadbtest: %w", err)
	}
	defer db.Close()
	if err := db.PingContext(ctx); err != nil {
		return fmt.Errorf("mariadbtest: ping %s: %w", s.Socket, err)
	}
	return nil
}

// ErrorLogText returns the server's error log.
func (s *Server) ErrorLogText() string {
	b, err := os.ReadFile(s.ErrorLog)
	if err != nil {
		return fmt.Sprintf("(no error log: %v)", err)
	}
	return string(b)
}

func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range []string{s.Socket, s.Socket + ".lock", s.PIDFile} {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("mariadbtest: remove stale %s: %w", p, err)
		}
	}
	logStart := int64(0)
	if fi, err := os.Stat(s.ErrorLog); err == nil {
		logStart = fi.Size()
	}
	cmd := exec.Command(s.args[0], s.args[1:]...)
	var console bytes.Buffer
	cmd.Stdout = &console
	cmd.Stderr = &console
	// The server dies with the test binary, whatever kills it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("mariadbtest: start mariadbd: %w", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	s.cmd, s.exited = cmd, exited

	deadline := time.Now().Add(StartTimeout)
	for {
		select {
		case <-exited:
			return fmt.Errorf("mariadbtest: mariadbd on %s exited at start (%v)\n%s\nerror log:\n%s",
				s.DataDir, cmd.ProcessState, console.String(), s.logFrom(logStart))
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := s.Ping(ctx)
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			s.killLocked()
			return fmt.Errorf("mariadbtest: mariadbd on %s did not answer within %v\nerror log:\n%s",
				s.DataDir, StartTimeout, s.logFrom(logStart))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (s *Server) logFrom(off int64) string {
	b, err := os.ReadFile(s.ErrorLog)
	if err != nil {
		return fmt.Sprintf("(no error log: %v)", err)
	}
	if off > int64(len(b)) {
		off = 0
	}
	return string(b[off:])
}

func (s *Server) killLocked() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.exited
}

func (s *Server) stop(t testing.TB) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		select {
		case <-s.exited:
		default:
			_ = s.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-s.exited:
			case <-time.After(StopTimeout):
				t.Errorf("mariadbtest: mariadbd on %s did not stop within %v; killing it", s.DataDir, StopTimeout)
				s.killLocked()
			}
		}
	}
	if pid := s.foreignPIDLocked(); pid > 0 {
		_ = syscall.Kill(pid, syscall.SIGTERM)
		deadline := time.Now().Add(StopTimeout)
		for alive(pid) {
			if time.Now().After(deadline) {
				t.Errorf("mariadbtest: mariadbd %d on %s did not stop within %v; killing it", pid, s.DataDir, StopTimeout)
				_ = syscall.Kill(pid, syscall.SIGKILL)
				deadline = time.Now().Add(StopTimeout)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// foreignPIDLocked returns the pid in the pid file when it is a live
// mariadbd with this server's options that this Server did not start
// (another program did), or 0. s.mu is held.
func (s *Server) foreignPIDLocked() int {
	b, err := os.ReadFile(s.PIDFile)
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 || !alive(pid) {
		return 0
	}
	if s.cmd != nil && s.cmd.Process.Pid == pid {
		return 0
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !bytes.Contains(cmdline, []byte("--pid-file="+s.PIDFile+"\x00")) {
		return 0
	}
	return pid
}

// alive reports whether pid is a process that has not exited (a zombie
// has).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the command name in parentheses.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return false
	}
	return b[i+2] != 'Z' && b[i+2] != 'X'
}
