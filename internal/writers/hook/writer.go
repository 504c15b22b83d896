package hook

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/linuxvss/vss/internal/vsserr"
	"github.com/linuxvss/vss/internal/writers"
	"github.com/linuxvss/vss/pkg/vssmeta"
)

// DefaultFreezeWindow is how long a guarded freeze lasts at most when the
// Freeze request carries no deadline.
const DefaultFreezeWindow = 60 * time.Second

// Writer is a hook writer. It implements writers.Writer and
// writers.Closer; its methods are safe for concurrent use (events are
// handled one at a time).
type Writer struct {
	cfg *Config
	log *slog.Logger

	mu      sync.Mutex
	guard   *guard    // holds the thaw command while frozen
	aborted uuid.UUID // the set whose abort command ran
}

var (
	_ writers.Writer = (*Writer)(nil)
	_ writers.Closer = (*Writer)(nil)
)

// New returns the writer of a parsed file. A nil log means slog.Default().
func New(cfg *Config, log *slog.Logger) *Writer {
	if log == nil {
		log = slog.Default()
	}
	return &Writer{cfg: cfg, log: log.With("writer", cfg.Name, "file", cfg.File)}
}

// Config returns the writer's configuration (do not modify it).
func (w *Writer) Config() *Config { return w.cfg }

// Name returns the writer name.
func (w *Writer) Name() string { return w.cfg.Name }

// OnError returns the writer's on-error policy: "fail", "continue" or
// "crash-consistent" (the words of writers.Policy). The writer only
// reports errors; the service applies the policy.
func (w *Writer) OnError() string { return w.cfg.OnError }

// Identify returns the Writer Metadata Document described by the file. No
// command runs.
func (w *Writer) Identify(ctx context.Context) (*vssmeta.WriterMetadata, error) {
	c := w.cfg
	md := &vssmeta.WriterMetadata{
		WriterID:     c.ClassID,
		InstanceID:   c.InstanceID,
		Name:         c.Name,
		InstanceName: c.InstanceName,
		Usage:        c.Usage,
		Source:       c.Source,
		Restore: vssmeta.RestoreMethodInfo{
			Method:        vssmeta.RestoreIfCanReplace,
			WriterRestore: vssmeta.WriterRestoreNever,
		},
	}
	if w.has(writers.PreRestore) || w.has(writers.PostRestore) {
		md.Restore.WriterRestore = vssmeta.WriterRestoreAlways
	}
	for _, comp := range c.Components {
		comp.Files = slices.Clone(comp.Files)
		comp.NotifyOnBackupComplete = w.has(writers.BackupComplete)
		md.Components = append(md.Components, comp)
	}
	return md, nil
}

func (w *Writer) has(ev writers.Event) bool {
	_, ok := w.cfg.Events[ev]
	return ok
}

// spec prepares the command of ev for req.
func (w *Writer) spec(ev writers.Event, req *writers.Request) (runSpec, error) {
	c := w.cfg.Events[ev]
	cred, err := lookupUser(w.cfg.User)
	if err != nil {
		return runSpec{}, vsserr.Wrap(vsserr.VSS_E_WRITERERROR_NONRETRYABLE, err, "hook writer %s", w.cfg.Name)
	}
	return runSpec{
		Writer:  w.cfg.Name,
		Event:   eventWord(ev),
		Argv:    c.Argv,
		Env:     environment(w.cfg.Name, ev, req),
		Timeout: c.Timeout,
		Cred:    cred,
	}, nil
}

// runEvent runs the command of ev, if the file gives one.
func (w *Writer) runEvent(ctx context.Context, ev writers.Event, req *writers.Request) error {
	if !w.has(ev) {
		return nil
	}
	s, err := w.spec(ev, req)
	if err != nil {
		return err
	}
	return run(ctx, w.log, s)
}

// Handle delivers one event: it runs the event's command, with the
// guarded freeze described in the package documentation.
func (w *Writer) Handle(ctx context.Context, ev writers.Event, req *writers.Request) error {
	if req == nil {
		req = &writers.Request{}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	switch ev {
	case writers.Identify:
		return vsserr.New(vsserr.E_INVALIDARG, "hook writer %s: Identify is not an event", w.cfg.Name)
	case writers.Freeze:
		return w.freeze(ctx, req)
	case writers.Thaw:
		return w.thaw(ctx, req)
	case writers.Abort:
		return w.abort(ctx, req)
	case writers.PrepareSnapshot, writers.BackupShutdown:
		if w.guard != nil {
			w.log.Warn("a freeze was never thawed: thawing it now", "event", ev.String())
			w.endGuard(ctx, eventWord(ev))
		}
	}
	return w.runEvent(ctx, ev, req)
}

// freeze starts the guard, when there is a thaw command, then runs the
// freeze command.
func (w *Writer) freeze(ctx context.Context, req *writers.Request) error {
	if w.guard != nil {
		w.log.Warn("a previous freeze was never thawed: thawing it now")
		w.endGuard(ctx, "stale")
	}
	if !w.has(writers.Freeze) {
		return nil
	}
	fs, err := w.spec(writers.Freeze, req)
	if err != nil {
		return err
	}
	if w.has(writers.Thaw) {
		ts, err := w.spec(writers.Thaw, req)
		if err != nil {
			return err
		}
		deadline := req.Deadline
		if deadline.IsZero() {
			deadline = time.Now().Add(DefaultFreezeWindow)
		}
		start := time.Now()
		g, err := startGuard(ctx, ts, deadline)
		if err != nil {
			return vsserr.Wrap(vsserr.VSS_E_WRITERERROR_RETRYABLE, err, "hook writer %s: freeze not attempted", w.cfg.Name)
		}
		w.log.Debug("thaw guard started", "pid", g.cmd.Process.Pid, "took", time.Since(start), "deadline", deadline)
		w.guard = g
	}
	err = run(ctx, w.log, fs)
	if err != nil && w.guard != nil {
		// Undo whatever part of the freeze happened, at once; Abort (or
		// the next event) collects the result.
		w.log.Warn("freeze command failed: thawing", "err", err)
		w.guard.ask("freeze-failed", time.Time{})
	}
	return err
}

// endGuard has the guard thaw, waits for its result, and lets it go.
func (w *Writer) endGuard(ctx context.Context, reason string) (*guardResult, error) {
	g := w.guard
	w.guard = nil
	defer g.release()
	r, err := g.thaw(ctx, reason)
	switch {
	case err != nil:
		w.log.Error("no answer from the thaw guard; it thaws by itself", "reason", reason, "err", err)
		code := vsserr.VSS_E_WRITERERROR_NONRETRYABLE
		if errors.Is(err, context.DeadlineExceeded) {
			code = vsserr.VSS_E_WRITERERROR_TIMEOUT
		}
		return nil, vsserr.Wrap(code, err, "hook writer %s: thaw", w.cfg.Name)
	case r.Expired:
		w.log.Warn("the freeze deadline had passed: the guard had thawed by itself", "at", r.At, "reason", reason)
	default:
		w.log.Info("thawed through the guard", "reason", reason, "ok", r.Code == 0)
	}
	return r, nil
}

// thaw runs the thaw command, through the guard when there was a freeze.
func (w *Writer) thaw(ctx context.Context, req *writers.Request) error {
	if w.guard == nil {
		return w.runEvent(ctx, writers.Thaw, req)
	}
	r, err := w.endGuard(ctx, "thaw")
	if err != nil {
		return err
	}
	if r.Expired {
		msg := ""
		if r.Code != 0 {
			msg = "; and it failed: " + r.err().Error()
		}
		return vsserr.New(vsserr.VSS_E_WRITERERROR_TIMEOUT,
			"hook writer %s: the freeze deadline passed before Thaw; the guard ran the thaw command by itself at %s%s",
			w.cfg.Name, r.At.Format(time.RFC3339Nano), msg)
	}
	return r.err()
}

// abort thaws through the guard when frozen, then runs the abort command
// (once per set).
func (w *Writer) abort(ctx context.Context, req *writers.Request) error {
	var first error
	if w.guard != nil {
		r, err := w.endGuard(ctx, "abort")
		if err == nil {
			err = r.err()
		}
		first = err
	}
	if req.SetID != uuid.Nil && req.SetID == w.aborted {
		return first
	}
	err := w.runEvent(ctx, writers.Abort, req)
	w.aborted = req.SetID
	if first == nil {
		return err
	}
	if err != nil {
		w.log.Error("abort command failed", "err", err)
	}
	return first
}

// Close thaws through the guard if a freeze is still held.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.guard == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), w.cfg.Events[writers.Thaw].Timeout+5*time.Second)
	defer cancel()
	r, err := w.endGuard(ctx, "close")
	if err == nil {
		err = r.err()
	}
	return err
}
