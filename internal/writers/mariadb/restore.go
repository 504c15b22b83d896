package mariadb

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/linuxvss/vss/internal/vsserr"
	"github.com/linuxvss/vss/internal/writers"
)

// preRestore stops the server for a restore in place; a restore into
// another directory leaves it running.
func (w *Writer) preRestore(ctx context.Context, req *writers.Request) error {
	if req.Elsewhere() {
		w.log.Info("restore into another directory or under a new name; the server keeps running", "target", req.RestoreTarget, "new_name", req.RestoreName(w.name))
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.held != holdNone {
		if err := w.releaseLocked(ctx); err != nil {
			w.log.Warn("release before the restore", "err", err)
		}
	}
	w.expiredAt = time.Time{}
	pidFile := ""
	if w.answersLocked(ctx) {
		lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if lay, err := w.layoutLocked(lctx); err == nil {
			pidFile = lay.pidFile
		}
		cancel()
	} else {
		w.log.Info("the server is not running; nothing to stop")
		return nil
	}
	w.dropLocked(false)
	argv, env := w.stopCommand()
	w.log.Info("stopping the server for a restore in place", "command", strings.Join(argv, " "))
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil && w.answersLocked(ctx) {
		return vsserr.Wrap(vsserr.VSS_E_WRITERERROR_RETRYABLE, err, "stop the server (%s): %s",
			strings.Join(argv, " "), strings.TrimSpace(string(out)))
	}
	// Wait until it is gone: no answer, no pid file.
	for {
		if !w.answersLocked(ctx) && !exists(pidFile) {
			w.log.Info("server stopped")
			return nil
		}
		select {
		case <-ctx.Done():
			return vsserr.Wrap(vsserr.VSS_E_WRITERERROR_TIMEOUT, ctx.Err(), "the server did not stop")
		case <-time.After(pollInterval):
		}
	}
}

// postRestore starts the server again after a restore in place and waits
// until it answers.
func (w *Writer) postRestore(ctx context.Context, req *writers.Request) error {
	if req.Elsewhere() {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.dropLocked(false)
	if w.answersLocked(ctx) {
		w.log.Info("the server already runs")
		return nil
	}
	argv := w.startCommand()
	var out *cappedBuffer
	exited := make(chan error, 1)
	if len(argv) > 0 {
		w.log.Info("starting the server after a restore in place", "command", strings.Join(argv, " "))
		// Not CommandContext: the command may be the server itself, which
		// must outlive this event; and its own session, so that signals
		// to the service's process group do not reach it.
		cmd := exec.Command(argv[0], argv[1:]...)
		out = &cappedBuffer{max: 64 << 10}
		cmd.Stdout, cmd.Stderr = out, out
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if err := cmd.Start(); err != nil {
			return vsserr.Wrap(vsserr.VSS_E_WRITERERROR_NONRETRYABLE, err, "start the server (%s)", strings.Join(argv, " "))
		}
		go func() { exited <- cmd.Wait() }()
	} else {
		w.log.Info("no start command; waiting for the server to be started")
	}
	for {
		if w.answersLocked(ctx) {
			w.log.Info("server answers")
			return nil
		}
		select {
		case err := <-exited:
			if err != nil {
				return vsserr.Wrap(vsserr.VSS_E_WRITERERROR_NONRETRYABLE, err, "start the server (%s): %s",
					strings.Join(argv, " "), strings.TrimSpace(out.String()))
			}
			exited = nil // returned (a service manager): keep waiting for the answer
		case <-ctx.Done():
			msg := "the server does not answer after the restore"
			if len(argv) == 0 {
				msg += " (no start command is configured: start it, or set the writer's start command)"
			} else {
				msg += " (" + strings.Join(argv, " ") + "): " + strings.TrimSpace(out.String())
			}
			return vsserr.Wrap(vsserr.VSS_E_WRITERERROR_TIMEOUT, ctx.Err(), "%s", msg)
		case <-time.After(pollInterval):
		}
	}
}

// answersLocked reports whether the server answers a ping on a connection
// of the pool (the session must not be held).
func (w *Writer) answersLocked(ctx context.Context) bool {
	if w.conn != nil {
		return w.conn.PingContext(ctx) == nil
	}
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return w.db.PingContext(pctx) == nil
}

// stopCommand returns the stop command and its extra environment.
func (w *Writer) stopCommand() ([]string, []string) {
	if len(w.cfg.StopCommand) > 0 {
		return w.cfg.StopCommand, nil
	}
	admin := "mariadb-admin"
	if _, err := exec.LookPath(admin); err != nil {
		if _, err := exec.LookPath("mysqladmin"); err == nil {
			admin = "mysqladmin"
		}
	}
	argv := []string{admin, "--no-defaults", "--connect-timeout=10"}
	switch w.dsn.Net {
	case "unix":
		argv = append(argv, "--socket="+w.dsn.Addr)
	case "tcp", "tcp6":
		host, port, err := net.SplitHostPort(w.dsn.Addr)
		if err != nil {
			host, port = w.dsn.Addr, "3306"
		}
		argv = append(argv, "--protocol=TCP", "--host="+host, "--port="+port)
	}
	if w.dsn.User != "" {
		argv = append(argv, "--user="+w.dsn.User)
	}
	var env []string
	if w.dsn.Passwd != "" {
		env = append(env, "MYSQL_PWD="+w.dsn.Passwd)
	}
	return append(argv, "shutdown"), env
}

// startCommand returns the start command: the configured one, systemd's
// where systemd runs, or none.
func (w *Writer) startCommand() []string {
	if len(w.cfg.StartCommand) > 0 {
		return w.cfg.StartCommand
	}
	if _, err := os.Stat("/run/systemd/system"); err == nil {
		if p, err := exec.LookPath("systemctl"); err == nil {
			return []string{p, "start", "mariadb.service"}
		}
	}
	return nil
}

func exists(p string) bool {
	if p == "" {
		return false
	}
	_, err := os.Stat(p)
	return !errors.Is(err, os.ErrNotExist)
}

// cappedBuffer keeps the first max bytes of a command's output; it is
// safe to read while the command writes.
type cappedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
	max int
}

func (b *cappedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if room := b.max - b.buf.Len(); room > 0 {
		b.buf.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (b *cappedBuffer) String() string {
	if b == nil {
		return ""
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
