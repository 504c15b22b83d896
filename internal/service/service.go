// Package service is the shadow copy service: it owns a state directory
// (the catalog, the audit log, a lock), makes shadow copy sets through the
// coordinator, and deletes, reverts and accounts for shadow copies. vssd
// runs it behind the API; the CLIs run the same service in their own
// process when no daemon answers (embedded mode).
package service

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/linuxvss/vss/internal/catalog"
	"github.com/linuxvss/vss/internal/config"
	"github.com/linuxvss/vss/internal/coordinator"
	"github.com/linuxvss/vss/internal/provider"
	"github.com/linuxvss/vss/internal/provider/btrfs"
	"github.com/linuxvss/vss/internal/provider/fullcopy"
	"github.com/linuxvss/vss/internal/provider/reflink"
	"github.com/linuxvss/vss/internal/vsserr"
	"github.com/linuxvss/vss/internal/writers"
)

// Options configure a Service.
type Options struct {
	Config config.Config
	// LockWait is how long Open waits for another process that owns the
	// state directory.
	LockWait time.Duration
	// Providers, in order of preference for automatic selection; nil means
	// btrfs, reflink, copy.
	Providers []provider.Provider
	// Writers returns extra writers that take part in every set, besides
	// the registered ones (tests use it for in-process writers).
	Writers func() []coordinator.Writer
	// WriterSources build the configured writers (built-in and hook) when
	// the service opens; see RegisterConfigured.
	WriterSources []WriterSource
	// Fault is handed to the coordinator (and used by delete and revert).
	Fault func(ctx context.Context, point string) error
	// Log receives the service log; nil means slog.Default().
	Log *slog.Logger
}

// Service is an open shadow copy service.
type Service struct {
	opts      Options
	cfg       config.Config
	log       *slog.Logger
	lock      *os.File
	cat       *catalog.Catalog
	coord     *coordinator.Coordinator
	providers []provider.Provider
	machine   string
	auditMu   sync.Mutex
	audit     *os.File
	sess      sessions
	recovered Recovery
	writers   *writers.Registry
	backups   backups
	// pendingRegs are configured writers not reachable yet.
	pendingMu   sync.Mutex
	pendingRegs []writers.Registration
	// mu serialises the changes that are not set creations (deletes,
	// storage changes, reverts) with each other and with the short
	// catalog steps of a creation.
	mu sync.Mutex
	// bg is the background work (the retried release of auto-release
	// shadows), stopped by Close.
	bg background
}

// ErrBusy says another process owns the state directory.
var ErrBusy = errors.New("another shadow copy service owns the state directory")

// DefaultProviders returns the providers in their order of preference.
func DefaultProviders() []provider.Provider {
	return []provider.Provider{btrfs.New(), reflink.New(), fullcopy.New()}
}

// Open takes the state directory (waiting up to o.LockWait for another
// service to let it go), opens the catalog and finishes or rolls back what
// a crash interrupted.
func Open(ctx context.Context, o Options) (*Service, error) {
	cfg := o.Config
	if cfg.StateDir == "" {
		cfg = config.Default()
	}
	log := o.Log
	if log == nil {
		log = slog.Default()
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, vsserr.Wrap(vsserr.VSS_E_UNEXPECTED, err, "state directory %s", cfg.StateDir)
	}
	lock, err := lockStateDir(ctx, cfg.StateDir, o.LockWait)
	if err != nil {
		return nil, err
	}
	cat, err := catalog.Open(filepath.Join(cfg.StateDir, "catalog.db"))
	if err != nil {
		lock.Close()
		return nil, vsserr.Wrap(vsserr.VSS_E_UNEXPECTED, err, "catalog")
	}
	audit, err := os.OpenFile(filepath.Join(cfg.StateDir, "audit.log"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		cat.Close()
		lock.Close()
		return nil, vsserr.Wrap(vsserr.VSS_E_UNEXPECTED, err, "audit log")
	}
	host, _ := os.Hostname()
	s := &Service{opts: o, cfg: cfg, log: log, lock: lock, cat: cat, machine: host, audit: audit}
	s.providers = o.Providers
	if s.providers == nil {
		s.providers = DefaultProviders()
	}
	s.coord = coordinator.New(cat, coordinator.Options{
		FreezeTimeout: cfg.FreezeTimeout.Duration,
		CommitTimeout: cfg.CommitTimeout.Duration,
		Machine:       host,
		NeverFreeze:   []string{cfg.StateDir},
		Fault:         o.Fault,
		Log:           log,
	})
	if err := s.recover(ctx); err != nil {
		s.Close()
		return nil, err
	}
	timeouts, err := writerTimeouts(cfg)
	if err != nil {
		s.Close()
		return nil, vsserr.Wrap(vsserr.E_INVALIDARG, err, "configuration")
	}
	s.writers = writers.New(writers.Options{Timeouts: timeouts, Log: log})
	s.registerConfigured(ctx)
	return s, nil
}

// Close releases the auto-release shadows of this process's sessions and
// the state directory.
func (s *Service) Close() error {
	var errs []error
	s.bg.close()
	if s.writers != nil {
		s.writers.Close()
	}
	if s.cat != nil {
		errs = append(errs, s.cat.Close())
	}
	if s.audit != nil {
		errs = append(errs, s.audit.Close())
	}
	if s.lock != nil {
		errs = append(errs, s.lock.Close())
	}
	return errors.Join(errs...)
}

// Config returns the configuration in force.
func (s *Service) Config() config.Config { return s.cfg }

// lockStateDir takes an exclusive lock on the state directory.
func lockStateDir(ctx context.Context, dir string, wait time.Duration) (*os.File, error) {
	path := filepath.Join(dir, "lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, vsserr.Wrap(vsserr.VSS_E_UNEXPECTED, err, "state directory lock")
	}
	deadline := time.Now().Add(wait)
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			_ = f.Truncate(0)
			_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
			return f, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			f.Close()
			return nil, vsserr.Wrap(vsserr.VSS_E_UNEXPECTED, err, "locking %s", path)
		}
		if time.Now().After(deadline) {
			b := make([]byte, 32)
			n, _ := f.ReadAt(b, 0)
			f.Close()
			holder := strings.TrimSpace(string(b[:n]))
			return nil, fmt.Errorf("%w: %s is locked by process %s; start vssd to share it, or wait", ErrBusy, dir, holder)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Caller identifies who asks (the daemon fills it from SO_PEERCRED).
type Caller struct {
	Uid, Gid uint32
	Pid      int32
	// Session names the requester session that owns auto-release shadows.
	Session string
}

type callerKey struct{}

// WithCaller returns ctx carrying the caller's identity.
func WithCaller(ctx context.Context, c Caller) context.Context {
	return context.WithValue(ctx, callerKey{}, c)
}

// CallerOf returns the caller in ctx, or this process.
func CallerOf(ctx context.Context) Caller {
	if c, ok := ctx.Value(callerKey{}).(Caller); ok {
		return c
	}
	return Caller{Uid: uint32(os.Getuid()), Gid: uint32(os.Getgid()), Pid: int32(os.Getpid())}
}

// auditRecord is one line of the audit log.
type auditRecord struct {
	Time   time.Time `json:"time"`
	Uid    uint32    `json:"uid"`
	Gid    uint32    `json:"gid"`
	Pid    int32     `json:"pid"`
	Op     string    `json:"op"`
	Args   any       `json:"args,omitempty"`
	Result string    `json:"result"`
	Code   string    `json:"code,omitempty"`
	Error  string    `json:"error,omitempty"`
}

// auditf writes one line to the audit log: who did what, when, with what
// result. Every change goes through here.
func (s *Service) auditf(ctx context.Context, op string, args any, err error) {
	c := CallerOf(ctx)
	r := auditRecord{Time: time.Now().UTC(), Uid: c.Uid, Gid: c.Gid, Pid: c.Pid, Op: op, Args: args, Result: "success"}
	if err != nil {
		r.Result = "failure"
		r.Code = vsserr.CodeOf(err).String()
		r.Error = err.Error()
	}
	b, _ := json.Marshal(r)
	s.auditMu.Lock()
	defer s.auditMu.Unlock()
	if _, werr := s.audit.Write(append(b, '\n')); werr != nil {
		s.log.Error("writing the audit log", "err", werr)
	}
}

// providerByName finds a provider by name or GUID.
func (s *Service) providerByName(name string) (provider.Provider, error) {
	n := strings.Trim(strings.ToLower(strings.TrimSpace(name)), "{}'\"")
	for _, p := range s.providers {
		i := p.Info()
		if strings.ToLower(i.Name) == n || i.ID.String() == n || strings.ToLower(i.DisplayName) == n {
			return p, nil
		}
	}
	var names []string
	for _, p := range s.providers {
		names = append(names, p.Info().Name)
	}
	return nil, vsserr.New(vsserr.VSS_E_PROVIDER_NOT_REGISTERED, "no provider %q (registered: %s)", name, strings.Join(names, ", "))
}

// fault calls the fault hook (tests) at a named point; nil without one.
func (s *Service) fault(ctx context.Context, point string) error {
	if s.opts.Fault == nil {
		return nil
	}
	return s.opts.Fault(ctx, point)
}

// Audit writes one line to the audit log for a call the service itself did
// not see (a refused call).
func (s *Service) Audit(ctx context.Context, op string, args any, err error) {
	s.auditf(ctx, op, args, err)
}
