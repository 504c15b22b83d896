package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"golang.org/x/sys/unix"

	"github.com/linuxvss/vss/internal/vsserr"
	"github.com/linuxvss/vss/internal/writers"
)

// defaultFreezeWindow is the freeze window when Freeze has no deadline
// (the service's default freeze limit).
const defaultFreezeWindow = 60 * time.Second

// postSnapshotWindow is how long a stopped backup keeps its session (and
// the slot that holds its WAL) waiting for PostSnapshot.
const postSnapshotWindow = 15 * time.Minute

// closeTimeout bounds the polite end of a session (Terminate message).
const closeTimeout = 5 * time.Second

// phase is how far a backup session got.
type phase int

const (
	phaseStarted phase = iota + 1 // pg_backup_start returned
	phaseFrozen                   // Freeze came; the timer runs
	phaseStopped                  // pg_backup_stop returned
)

// atomicSet says the set needs no backup mode: its shadows are taken at
// one instant and the cluster lies in one directory tree (Config.BackupMode).
func (w *Writer) atomicSet(req *writers.Request, l *layout) bool {
	return req.Atomic && w.cfg.BackupMode != BackupModeAlways && len(l.tablespaces) == 0 && l.walDir == ""
}

// session is one backup: the connection that called pg_backup_start,
// and what the backup needs until PostSnapshot.
type session struct {
	conn *pgx.Conn
	sock net.Conn // the socket, closable from any goroutine
	log  *slog.Logger

	mu       sync.Mutex // guards what follows (timer and kill)
	timer    *time.Timer
	stopping bool   // Thaw took over from the timer
	killed   string // why the socket was cut ("" while alive)

	phase phase
	// atomic: no backup mode (see atomicSet); the events only check.
	atomic     bool
	layout     *layout
	version    int
	slot       string
	segSize    int64
	startLSN   string
	firstWAL   string
	stopLSN    string
	lastWAL    string
	labelFile  string
	spcMapFile string
}

// kill cuts the session's socket: the server sees the client gone, aborts
// the backup and drops the temporary slot. Safe from any goroutine.
func (s *session) kill(why string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.killLocked(why)
}

func (s *session) killLocked(why string) {
	if s.killed != "" {
		return
	}
	s.killed = why
	if s.timer != nil {
		s.timer.Stop()
	}
	_ = s.sock.Close()
}

func (s *session) killedWhy() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.killed
}

// endSession ends the current backup session, if any: it drops the slot
// when the session still answers and closes the connection (which aborts
// a backup still in progress). Idempotent.
func (w *Writer) endSession(ctx context.Context, why string) {
	s := w.current()
	if s == nil {
		return
	}
	w.setSession(nil)
	s.mu.Lock()
	if s.timer != nil {
		s.timer.Stop()
	}
	alive := s.killed == ""
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), closeTimeout)
	defer cancel()
	if alive && s.phase == phaseStopped && s.slot != "" {
		if _, err := s.conn.Exec(ctx, "SELECT pg_drop_replication_slot($1)", s.slot); err != nil {
			w.log.Warn("drop replication slot (the server drops it with the session)", "slot", s.slot, "err", err)
		}
	}
	_ = s.conn.Close(ctx)
	s.kill(why)
	if s.phase == phaseStarted || s.phase == phaseFrozen {
		w.log.Info("backup aborted: session closed", "why", why, "start_lsn", s.startLSN)
	} else {
		w.log.Debug("backup session closed", "why", why)
	}
}

// prepareSnapshot checks the set's volumes and starts the backup.
func (w *Writer) prepareSnapshot(ctx context.Context, req *writers.Request) (err error) {
	if w.current() != nil {
		w.log.Warn("PrepareSnapshot with a backup still open; ending it")
		w.endSession(ctx, "new PrepareSnapshot")
	}
	conn, err := w.connect(ctx)
	if err != nil {
		return classify(ctx, err, "postgresql %s: open the backup session", w.cfg.Name)
	}
	s := &session{conn: conn, sock: conn.PgConn().Conn(), log: w.log}
	w.setSession(s)
	defer func() {
		if err != nil {
			w.endSession(ctx, "PrepareSnapshot failed")
		}
	}()
	for _, q := range []string{"SET statement_timeout = 0", "SET lock_timeout = 0"} {
		if _, err := conn.Exec(ctx, q); err != nil {
			return classify(ctx, err, "postgresql %s: %s", w.cfg.Name, q)
		}
	}
	if err := conn.QueryRow(ctx, "SELECT current_setting('server_version_num')::int").Scan(&s.version); err != nil {
		return classify(ctx, err, "postgresql %s: server version", w.cfg.Name)
	}
	if s.version < 100000 {
		return vsserr.New(vsserr.VSS_E_WRITERERROR_NONRETRYABLE, "postgresql %s: server version %d is older than 10", w.cfg.Name, s.version)
	}
	if s.version >= 140000 {
		if _, err := conn.Exec(ctx, "SET idle_session_timeout = 0"); err != nil {
			return classify(ctx, err, "postgresql %s: SET idle_session_timeout", w.cfg.Name)
		}
	}
	if _, err := conn.Exec(ctx, "SET idle_in_transaction_session_timeout = 0"); err != nil {
		return classify(ctx, err, "postgresql %s: SET idle_in_transaction_session_timeout", w.cfg.Name)
	}
	var inRecovery bool
	if err := conn.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&inRecovery); err != nil {
		return classify(ctx, err, "postgresql %s: pg_is_in_recovery", w.cfg.Name)
	}
	if inRecovery {
		return vsserr.New(vsserr.VSS_E_WRITERERROR_NONRETRYABLE, "postgresql %s: the server is a standby; back up the primary", w.cfg.Name)
	}
	if s.layout, err = w.queryLayout(ctx, conn); err != nil {
		return classify(ctx, err, "postgresql %s: cluster layout", w.cfg.Name)
	}
	for _, root := range s.layout.roots() {
		if _, _, ok := coveringRoot(root, req.Volumes); !ok {
			return vsserr.New(vsserr.VSS_E_WRITERERROR_INCONSISTENTSNAPSHOT,
				"postgresql %s: %s is on no volume of the set (volumes: %s)", w.cfg.Name, root, strings.Join(req.Volumes, ", "))
		}
	}
	if w.atomicSet(req, s.layout) {
		// The shadow is crash-consistent at one instant: nothing to start.
		s.atomic, s.phase = true, phaseStarted
		w.log.Info("atomic set: no backup mode needed", "data_dir", s.layout.dataDir)
		return nil
	}
	if err := conn.QueryRow(ctx, "SELECT setting::bigint FROM pg_settings WHERE name = 'wal_segment_size'").Scan(&s.segSize); err != nil {
		return classify(ctx, err, "postgresql %s: wal_segment_size", w.cfg.Name)
	}
	id := req.SetID
	if id == uuid.Nil {
		id = uuid.New()
	}
	s.slot = "vss_" + strings.ReplaceAll(id.String(), "-", "")
	label := "vss shadow copy set " + id.String()
	if _, err := conn.Exec(ctx, "SELECT pg_create_physical_replication_slot($1, true, true)", s.slot); err != nil {
		return classify(ctx, err, "postgresql %s: create the temporary replication slot %s", w.cfg.Name, s.slot)
	}
	start := "SELECT pg_backup_start($1, fast => true)::text"
	if s.version < 150000 {
		start = "SELECT pg_start_backup($1, true, false)::text"
	}
	t0 := time.Now()
	if err := conn.QueryRow(ctx, start, label).Scan(&s.startLSN); err != nil {
		return classify(ctx, err, "postgresql %s: start the backup", w.cfg.Name)
	}
	if err := conn.QueryRow(ctx, "SELECT pg_walfile_name($1::pg_lsn)", s.startLSN).Scan(&s.firstWAL); err != nil {
		return classify(ctx, err, "postgresql %s: pg_walfile_name", w.cfg.Name)
	}
	s.phase = phaseStarted
	w.log.Info("backup started", "label", label, "slot", s.slot, "start_lsn", s.startLSN,
		"wal", s.firstWAL, "took", time.Since(t0).Round(time.Millisecond))
	return nil
}

// freeze arms the timer that ends the backup session when neither Thaw
// nor Abort comes by the deadline. Nothing else needs holding: the backup
// is in progress and WAL covers every change made during the snapshot.
func (w *Writer) freeze(ctx context.Context, req *writers.Request) error {
	s := w.current()
	if s == nil || s.phase != phaseStarted {
		return vsserr.New(vsserr.VSS_E_WRITERERROR_NONRETRYABLE, "postgresql %s: Freeze without PrepareSnapshot", w.cfg.Name)
	}
	if why := s.killedWhy(); why != "" {
		w.endSession(ctx, why)
		return vsserr.New(vsserr.VSS_E_WRITERERROR_RETRYABLE, "postgresql %s: the backup session was ended (%s)", w.cfg.Name, why)
	}
	if s.atomic {
		s.phase = phaseFrozen
		return nil
	}
	var lsn string
	if err := s.conn.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&lsn); err != nil {
		w.endSession(ctx, "Freeze failed")
		return classify(ctx, err, "postgresql %s: pg_current_wal_lsn", w.cfg.Name)
	}
	deadline := req.Deadline
	if deadline.IsZero() {
		deadline = time.Now().Add(defaultFreezeWindow)
	}
	s.mu.Lock()
	s.phase = phaseFrozen
	s.timer = time.AfterFunc(time.Until(deadline), func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.stopping || s.killed != "" {
			return
		}
		s.log.Warn("freeze window ended without Thaw or Abort: ending the backup session", "deadline", deadline)
		s.killLocked("freeze deadline passed")
	})
	s.mu.Unlock()
	w.log.Info("frozen", "wal_lsn", lsn, "thaw_by", deadline.Format(time.RFC3339Nano))
	return nil
}

// thaw stops the backup and keeps the label and tablespace map.
func (w *Writer) thaw(ctx context.Context) error {
	s := w.current()
	if s == nil || (s.phase != phaseFrozen && s.phase != phaseStarted) {
		return vsserr.New(vsserr.VSS_E_WRITERERROR_NONRETRYABLE, "postgresql %s: Thaw without a backup in progress", w.cfg.Name)
	}
	s.mu.Lock()
	why := s.killed
	s.stopping = why == ""
	if s.timer != nil {
		s.timer.Stop()
	}
	s.mu.Unlock()
	if why != "" {
		w.endSession(ctx, why)
		code := vsserr.VSS_E_WRITERERROR_RETRYABLE
		if why == "freeze deadline passed" {
			code = vsserr.VSS_E_WRITERERROR_TIMEOUT
		}
		return vsserr.New(code, "postgresql %s: the backup was ended before Thaw (%s)", w.cfg.Name, why)
	}
	if s.atomic {
		s.phase = phaseStopped
		return nil
	}
	stop := "SELECT lsn::text, labelfile, spcmapfile FROM pg_backup_stop(wait_for_archive => false)"
	if s.version < 150000 {
		stop = "SELECT lsn::text, labelfile, spcmapfile FROM pg_stop_backup(false, false)"
	}
	var spc *string
	if err := s.conn.QueryRow(ctx, stop).Scan(&s.stopLSN, &s.labelFile, &spc); err != nil {
		w.endSession(ctx, "Thaw failed")
		return classify(ctx, err, "postgresql %s: stop the backup", w.cfg.Name)
	}
	if spc != nil {
		s.spcMapFile = *spc
	}
	s.phase = phaseStopped
	if err := s.conn.QueryRow(ctx, "SELECT pg_walfile_name($1::pg_lsn)", s.stopLSN).Scan(&s.lastWAL); err != nil {
		w.endSession(ctx, "Thaw failed")
		return classify(ctx, err, "postgresql %s: pg_walfile_name", w.cfg.Name)
	}
	// Do not hold WAL forever for a PostSnapshot that does not come.
	s.mu.Lock()
	s.timer = time.AfterFunc(postSnapshotWindow, func() {
		s.log.Warn("no PostSnapshot after Thaw: ending the backup session", "waited", postSnapshotWindow)
		s.kill("no PostSnapshot in time")
	})
	s.mu.Unlock()
	w.log.Info("backup stopped", "stop_lsn", s.stopLSN, "wal", s.lastWAL)
	return nil
}

// postSnapshot makes each shadow copy recoverable to the stop point, then
// ends the session.
func (w *Writer) postSnapshot(ctx context.Context, req *writers.Request) error {
	s := w.current()
	if s == nil || s.phase != phaseStopped {
		return vsserr.New(vsserr.VSS_E_WRITERERROR_NONRETRYABLE, "postgresql %s: PostSnapshot without a stopped backup", w.cfg.Name)
	}
	defer w.endSession(ctx, "PostSnapshot done")
	if s.atomic {
		return w.finishAtomicShadow(s, req.ShadowPaths)
	}
	if err := w.finishShadow(s, req.ShadowPaths); err != nil {
		return err
	}
	w.lastStop = s.stopLSN
	return nil
}

func (w *Writer) finishShadow(s *session, shadows map[string]string) error {
	fail := func(code vsserr.Code, err error, format string, args ...any) error {
		return vsserr.Wrap(code, err, "postgresql %s: "+format, append([]any{w.cfg.Name}, args...)...)
	}
	l := s.layout
	shadowData, err := shadowOf(l.dataDir, shadows)
	if err != nil {
		return fail(vsserr.VSS_E_WRITERERROR_INCONSISTENTSNAPSHOT, err, "data directory")
	}
	if err := notLive(shadowData, l.dataDir); err != nil {
		return fail(vsserr.VSS_E_WRITERERROR_NONRETRYABLE, err, "shadow data directory")
	}
	fi, err := os.Stat(l.dataDir)
	if err != nil {
		return fail(vsserr.VSS_E_WRITERERROR_NONRETRYABLE, err, "data directory")
	}
	st := fi.Sys().(*syscall.Stat_t)
	own := owner{uid: int(st.Uid), gid: int(st.Gid)}

	// What must not be in a copy of a data directory.
	for _, name := range []string{"postmaster.pid", "postmaster.opts"} {
		if err := os.Remove(filepath.Join(shadowData, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fail(vsserr.VSS_E_WRITERERROR_NONRETRYABLE, err, "clean the shadow")
		}
	}

	// The WAL from the start through the stop segment, complete now that
	// pg_backup_stop switched segments; the slot kept every one of them.
	liveWAL := filepath.Join(l.dataDir, "pg_wal")
	shadowWAL := filepath.Join(shadowData, "pg_wal")
	if l.walDir != "" {
		liveWAL = l.walDir
		if shadowWAL, err = shadowOf(l.walDir, shadows); err != nil {
			return fail(vsserr.VSS_E_WRITERERROR_INCONSISTENTSNAPSHOT, err, "WAL directory")
		}
		// The shadow's pg_wal link still points at the live WAL: a
		// server started on the shadow would write into it.
		if err := relink(filepath.Join(shadowData, "pg_wal"), shadowWAL, own); err != nil {
			return fail(vsserr.VSS_E_WRITERERROR_NONRETRYABLE, err, "point the shadow's pg_wal at its WAL directory")
		}
	}
	if err := notLive(shadowWAL, liveWAL); err != nil {
		return fail(vsserr.VSS_E_WRITERERROR_NONRETRYABLE, err, "shadow WAL directory")
	}
	segs, err := walSegments(s.firstWAL, s.lastWAL, s.segSize)
	if err != nil {
		return fail(vsserr.VSS_E_WRITERERROR_NONRETRYABLE, err, "WAL range")
	}
	t0 := time.Now()
	for _, seg := range segs {
		if err := copyFile(filepath.Join(liveWAL, seg), filepath.Join(shadowWAL, seg), own); err != nil {
			return fail(vsserr.VSS_E_WRITERERROR_NONRETRYABLE, err, "copy WAL segment %s", seg)
		}
	}
	if err := syncDir(shadowWAL); err != nil {
		return fail(vsserr.VSS_E_WRITERERROR_NONRETRYABLE, err, "sync the shadow's WAL directory")
	}

	// tablespace_map: each tablespace's link pointing into its shadow.
	if strings.TrimSpace(s.spcMapFile) != "" {
		m, err := rewriteTablespaceMap(s.spcMapFile, func(_, p string) (string, error) {
			sp, err := shadowOf(p, shadows)
			if err != nil {
				return "", vsserr.Wrap(vsserr.VSS_E_WRITERERROR_INCONSISTENTSNAPSHOT, err, "tablespace")
			}
			return sp, notLive(sp, p)
		})
		if err != nil {
			return fail(vsserr.CodeOf(err), err, "tablespace_map")
		}
		if err := writeFileSync(filepath.Join(shadowData, "tablespace_map"), []byte(m), own); err != nil {
			return fail(vsserr.VSS_E_WRITERERROR_NONRETRYABLE, err, "write tablespace_map")
		}
	}
	// backup_label last: its presence makes the shadow a backup.
	if err := writeFileSync(filepath.Join(shadowData, "backup_label"), []byte(s.labelFile), own); err != nil {
		return fail(vsserr.VSS_E_WRITERERROR_NONRETRYABLE, err, "write backup_label")
	}
	if err := syncDir(shadowData); err != nil {
		return fail(vsserr.VSS_E_WRITERERROR_NONRETRYABLE, err, "sync the shadow's data directory")
	}
	w.log.Info("shadow finished", "data_dir", shadowData, "wal_segments", len(segs),
		"first", s.firstWAL, "last", s.lastWAL, "copy_took", time.Since(t0).Round(time.Millisecond))
	return nil
}

// notLive refuses a shadow path that is the live path itself (a set whose
// shadow paths are the volumes: writing a backup_label into a live data
// directory would break its next crash recovery).
func notLive(shadow, live string) error {
	a, err := os.Stat(shadow)
	if err != nil {
		return fmt.Errorf("shadow %s: %w", shadow, err)
	}
	if b, err := os.Stat(live); err == nil && os.SameFile(a, b) {
		return fmt.Errorf("shadow %s is the live %s", shadow, live)
	}
	return nil
}

type owner struct{ uid, gid int }

func (o owner) apply(f *os.File) error {
	if os.Geteuid() != 0 {
		return nil
	}
	return f.Chown(o.uid, o.gid)
}

// writeFileSync writes data to path through a temporary file (mode 0600,
// owned by o), synced and renamed over path.
func writeFileSync(path string, data []byte, o owner) error {
	return replaceFile(path, o, func(f *os.File) error {
		_, err := f.Write(data)
		return err
	})
}

// copyFile copies src over dst (a reflink clone when the filesystem can,
// a copy otherwise), synced, mode 0600, owned by o.
func copyFile(src, dst string, o owner) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	return replaceFile(dst, o, func(f *os.File) error {
		if err := unix.IoctlFileClone(int(f.Fd()), int(in.Fd())); err == nil {
			return nil
		}
		if _, err := in.Seek(0, io.SeekStart); err != nil {
			return err
		}
		_, err := io.Copy(f, in)
		return err
	})
}

func replaceFile(path string, o owner, fill func(*os.File) error) error {
	tmp := path + ".vss-tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	err = fill(f)
	if err == nil {
		err = f.Chmod(0o600)
	}
	if err == nil {
		err = o.apply(f)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// relink makes link a symbolic link to target (owned by o), unless it
// already resolves to target.
func relink(link, target string, o owner) error {
	if a, err := os.Stat(link); err == nil {
		if b, err := os.Stat(target); err == nil && os.SameFile(a, b) {
			return nil
		}
	}
	fi, err := os.Lstat(link)
	if err != nil {
		return err
	}
	if fi.Mode()&os.ModeSymlink == 0 {
		return fmt.Errorf("%s is not a symbolic link", link)
	}
	tmp := link + ".vss-tmp"
	_ = os.Remove(tmp)
	if err := os.Symlink(target, tmp); err != nil {
		return err
	}
	if os.Geteuid() == 0 {
		if err := os.Lchown(tmp, o.uid, o.gid); err != nil {
			_ = os.Remove(tmp)
			return err
		}
	}
	if err := os.Rename(tmp, link); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return syncDir(filepath.Dir(link))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// classify gives a database error its VSS writer error code.
func classify(ctx context.Context, err error, format string, args ...any) error {
	code := vsserr.VSS_E_WRITERERROR_RETRYABLE
	var pe *pgconn.PgError
	switch {
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded):
		code = vsserr.VSS_E_WRITERERROR_TIMEOUT
	case errors.As(err, &pe):
		switch {
		case strings.HasPrefix(pe.Code, "53"): // insufficient resources (all slots in use)
			code = vsserr.VSS_E_WRITERERROR_OUTOFRESOURCES
		case strings.HasPrefix(pe.Code, "08"), strings.HasPrefix(pe.Code, "57"), strings.HasPrefix(pe.Code, "40"), pe.Code == "55P03":
			code = vsserr.VSS_E_WRITERERROR_RETRYABLE // connection, shutdown, serialization, lock
		default: // privileges, wal_level, unsupported: retrying does not help
			code = vsserr.VSS_E_WRITERERROR_NONRETRYABLE
		}
	}
	return vsserr.Wrap(code, err, format, args...)
}

// finishAtomicShadow removes from the shadow of an atomic set what must not
// be in a copy of a data directory; the server started on it does crash
// recovery to the snapshot instant.
func (w *Writer) finishAtomicShadow(s *session, shadows map[string]string) error {
	shadowData, err := shadowOf(s.layout.dataDir, shadows)
	if err != nil {
		return vsserr.Wrap(vsserr.VSS_E_WRITERERROR_INCONSISTENTSNAPSHOT, err, "postgresql %s: data directory", w.cfg.Name)
	}
	if err := notLive(shadowData, s.layout.dataDir); err != nil {
		return vsserr.Wrap(vsserr.VSS_E_WRITERERROR_NONRETRYABLE, err, "postgresql %s: shadow data directory", w.cfg.Name)
	}
	for _, name := range []string{"postmaster.pid", "postmaster.opts"} {
		if err := os.Remove(filepath.Join(shadowData, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return vsserr.Wrap(vsserr.VSS_E_WRITERERROR_NONRETRYABLE, err, "postgresql %s: %s in the shadow", w.cfg.Name, name)
		}
	}
	return nil
}
