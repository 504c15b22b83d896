package postgres

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/linuxvss/vss/internal/vsserr"
	"github.com/linuxvss/vss/internal/writers"
)

// defaultCommandTimeout bounds pg_ctl when the event has no deadline.
const defaultCommandTimeout = 10 * time.Minute

// preRestore stops the server for a restore in place; a restore into
// another directory leaves the running server alone.
func (w *Writer) preRestore(ctx context.Context, req *writers.Request) error {
	w.restore = nil
	if req.Elsewhere() {
		w.log.Info("restore to another place: the server keeps running", "target", req.RestoreTarget, "new_name", req.RestoreName(w.cfg.Name))
		return nil
	}
	dir, err := w.resolveDataDir(ctx)
	if err != nil {
		return vsserr.Wrap(vsserr.VSS_E_WRITERERROR_NONRETRYABLE, err, "postgresql %s: PreRestore", w.cfg.Name)
	}
	// Where the tablespaces and the WAL live now, before the restore
	// replaces the links: PostRestore points the restored ones back here.
	l, err := diskLayout(dir)
	if err != nil {
		return vsserr.Wrap(vsserr.VSS_E_WRITERERROR_NONRETRYABLE, err, "postgresql %s: PreRestore", w.cfg.Name)
	}
	if err := w.stopServer(ctx, dir); err != nil {
		return vsserr.Wrap(vsserr.VSS_E_WRITERERROR_RETRYABLE, err, "postgresql %s: stop the server", w.cfg.Name)
	}
	w.restore = l
	w.log.Info("server stopped for the restore", "data_dir", dir)
	return nil
}

// postRestore starts the server after a restore in place and waits until
// it accepts connections (it recovers from the restored backup_label
// first); after a restore into another directory it removes a
// postmaster.pid that came with the files.
func (w *Writer) postRestore(ctx context.Context, req *writers.Request) error {
	prev := w.restore
	w.restore = nil
	if req.Elsewhere() {
		// Where the restored cluster is: in the target directory by
		// itself, or under its own path there; renamed next to the
		// original. Never the live data directory.
		var cands []string
		if req.RestoreTarget != "" {
			cands = append(cands, filepath.Join(req.RestoreTarget, "postmaster.pid"))
		}
		live := w.knownDataDir(prev)
		if live == "" {
			if d, err := w.resolveDataDir(ctx); err == nil {
				live = d
			}
		}
		if live != "" {
			dir := live
			if n := req.RestoreName(w.cfg.Name); n != "" {
				dir = filepath.Join(filepath.Dir(dir), n)
			}
			if req.RestoreTarget != "" {
				dir = filepath.Join(req.RestoreTarget, dir)
			}
			if filepath.Clean(dir) != filepath.Clean(live) {
				cands = append(cands, filepath.Join(dir, "postmaster.pid"))
			}
		}
		for _, p := range cands {
			if err := os.Remove(p); err == nil {
				w.log.Info("removed postmaster.pid from the restored files", "path", p)
			} else if !errors.Is(err, os.ErrNotExist) {
				return vsserr.Wrap(vsserr.VSS_E_WRITERERROR_NONRETRYABLE, err, "postgresql %s: PostRestore", w.cfg.Name)
			}
		}
		return nil
	}
	dir := w.knownDataDir(prev)
	if dir == "" {
		return vsserr.New(vsserr.VSS_E_WRITERERROR_NONRETRYABLE,
			"postgresql %s: PostRestore: the data directory is unknown (no PreRestore, and none configured)", w.cfg.Name)
	}
	if err := fixRestoredLayout(dir, prev); err != nil {
		return vsserr.Wrap(vsserr.VSS_E_WRITERERROR_NONRETRYABLE, err, "postgresql %s: PostRestore", w.cfg.Name)
	}
	if err := removeStalePID(dir); err != nil {
		return vsserr.Wrap(vsserr.VSS_E_WRITERERROR_NONRETRYABLE, err, "postgresql %s: PostRestore", w.cfg.Name)
	}
	t0 := time.Now()
	if err := w.startServer(ctx, dir); err != nil {
		return vsserr.Wrap(vsserr.VSS_E_WRITERERROR_RECOVERY_FAILED, err, "postgresql %s: start the server", w.cfg.Name)
	}
	if err := w.waitReady(ctx); err != nil {
		return vsserr.Wrap(vsserr.VSS_E_WRITERERROR_RECOVERY_FAILED, err, "postgresql %s: after the restore", w.cfg.Name)
	}
	w.log.Info("server started after the restore", "data_dir", dir, "took", time.Since(t0).Round(time.Millisecond))
	return nil
}

func (w *Writer) knownDataDir(prev *layout) string {
	if w.cfg.DataDir != "" {
		return w.cfg.DataDir
	}
	if prev != nil {
		return prev.dataDir
	}
	return ""
}

// resolveDataDir returns the configured data directory, or asks the
// server.
func (w *Writer) resolveDataDir(ctx context.Context) (string, error) {
	if w.cfg.DataDir != "" {
		return w.cfg.DataDir, nil
	}
	l, err := w.serverLayout(ctx)
	if err != nil {
		return "", fmt.Errorf("the data directory is not configured and the server does not say: %w", err)
	}
	return l.dataDir, nil
}

// fixRestoredLayout points what a restore brought back from a shadow copy
// at the places the cluster uses: the tablespace_map's entries (written
// for the shadows) at the tablespaces' locations, and a pg_wal link at the
// WAL directory.
func fixRestoredLayout(dir string, prev *layout) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	st := fi.Sys().(*syscall.Stat_t)
	own := owner{uid: int(st.Uid), gid: int(st.Gid)}
	mapPath := filepath.Join(dir, "tablespace_map")
	if b, err := os.ReadFile(mapPath); err == nil {
		locs := map[string]string{}
		if prev != nil {
			for _, ts := range prev.tablespaces {
				locs[ts.oid] = ts.location
			}
		}
		m, err := rewriteTablespaceMap(string(b), func(oid, p string) (string, error) {
			if loc, ok := locs[oid]; ok {
				return loc, nil
			}
			if t, err := os.Readlink(filepath.Join(dir, "pg_tblspc", oid)); err == nil && filepath.IsAbs(t) {
				return t, nil
			}
			return p, nil
		})
		if err != nil {
			return err
		}
		if m != string(b) {
			if err := writeFileSync(mapPath, []byte(m), own); err != nil {
				return err
			}
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if prev != nil && prev.walDir != "" {
		if err := relink(filepath.Join(dir, "pg_wal"), prev.walDir, own); err != nil {
			return fmt.Errorf("point pg_wal at %s: %w", prev.walDir, err)
		}
	}
	return nil
}

// removeStalePID removes a postmaster.pid whose process is not a running
// postgres.
func removeStalePID(dir string) error {
	p := filepath.Join(dir, "postmaster.pid")
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	} else if err != nil {
		return err
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
	if pid > 0 {
		if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); err == nil && strings.HasPrefix(filepath.Base(exe), "postgres") {
			return fmt.Errorf("postmaster.pid names process %d, a running %s", pid, exe)
		}
	}
	return os.Remove(p)
}

// stopServer runs the stop command, by default pg_ctl stop -m fast (a
// server already down is fine).
func (w *Writer) stopServer(ctx context.Context, dir string) error {
	if len(w.cfg.StopCommand) > 0 {
		return runCommand(ctx, w.cfg.StopCommand, nil)
	}
	pgctl, cred, err := pgCtl(dir)
	if err != nil {
		return err
	}
	if st := runCommand(ctx, []string{pgctl, "-D", dir, "status"}, cred); st != nil {
		var ee *exec.ExitError
		if errors.As(st, &ee) && ee.ExitCode() == 3 {
			w.log.Info("server already stopped", "data_dir", dir)
			return nil
		}
	}
	return runCommand(ctx, []string{pgctl, "-D", dir, "-w", "-t", waitSeconds(ctx), "stop", "-m", "fast"}, cred)
}

// startServer runs the start command, by default pg_ctl start with its
// log in DataDir/log/vss-pg_ctl.log.
func (w *Writer) startServer(ctx context.Context, dir string) error {
	if len(w.cfg.StartCommand) > 0 {
		return runCommand(ctx, w.cfg.StartCommand, nil)
	}
	pgctl, cred, err := pgCtl(dir)
	if err != nil {
		return err
	}
	logDir := filepath.Join(dir, "log")
	if err := os.MkdirAll(logDir, 0o700); err != nil {
		return err
	}
	if cred != nil {
		if err := os.Chown(logDir, int(cred.Uid), int(cred.Gid)); err != nil {
			return err
		}
	}
	return runCommand(ctx, []string{pgctl, "-D", dir, "-l", filepath.Join(logDir, "vss-pg_ctl.log"),
		"-w", "-t", waitSeconds(ctx), "start"}, cred)
}

// waitReady waits until the server accepts a session, or ctx ends.
func (w *Writer) waitReady(ctx context.Context) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultCommandTimeout)
		defer cancel()
	}
	for {
		c, err := w.connect(ctx)
		if err == nil {
			err = c.Ping(ctx)
			_ = c.Close(context.Background())
			if err == nil {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the server does not accept connections: %w", err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// waitSeconds is pg_ctl's -t: what is left of ctx, in seconds.
func waitSeconds(ctx context.Context) string {
	d := defaultCommandTimeout
	if dl, ok := ctx.Deadline(); ok {
		d = time.Until(dl)
	}
	return strconv.Itoa(max(1, int(d/time.Second)))
}

// pgCtl finds the pg_ctl of the data directory's major version and the
// credential of the data directory's owner (nil: run as ourselves).
func pgCtl(dir string) (string, *syscall.Credential, error) {
	fi, err := os.Stat(dir)
	if err != nil {
		return "", nil, err
	}
	var cred *syscall.Credential
	if st := fi.Sys().(*syscall.Stat_t); os.Geteuid() == 0 && st.Uid != 0 {
		cred = &syscall.Credential{Uid: st.Uid, Gid: st.Gid}
	}
	var cands []string
	if v, err := os.ReadFile(filepath.Join(dir, "PG_VERSION")); err == nil {
		major := strings.TrimSpace(string(v))
		cands = append(cands, "/usr/lib/postgresql/"+major+"/bin/pg_ctl", "/usr/pgsql-"+major+"/bin/pg_ctl")
	}
	for _, c := range cands {
		if _, err := os.Stat(c); err == nil {
			return c, cred, nil
		}
	}
	p, err := exec.LookPath("pg_ctl")
	if err != nil {
		return "", nil, fmt.Errorf("no pg_ctl for %s (looked in %s and PATH): %w", dir, strings.Join(cands, ", "), err)
	}
	return p, cred, nil
}

// runCommand runs argv (as cred when not nil). Its output goes to a file,
// not a pipe, so that a daemon it leaves behind cannot hold it up.
func runCommand(ctx context.Context, argv []string, cred *syscall.Credential) error {
	out, err := os.CreateTemp("", "vss-pg-cmd")
	if err != nil {
		return err
	}
	defer os.Remove(out.Name())
	defer out.Close()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Dir = "/"
	cmd.WaitDelay = 5 * time.Second
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	if err := cmd.Run(); err != nil {
		b, _ := os.ReadFile(out.Name())
		if len(b) > 4096 {
			b = b[len(b)-4096:]
		}
		return fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, strings.TrimSpace(string(b)))
	}
	return nil
}
