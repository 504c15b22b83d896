// Package daemon is vssd: it loads the configuration, opens the shadow
// copy service on its state directory, serves the API on the unix socket
// (or on the socket systemd passes), enforces the storage limits every
// minute, and shuts down in order on SIGTERM or SIGINT.
package daemon

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/linuxvss/vss/internal/apiserver"
	"github.com/linuxvss/vss/internal/apiserver/systemd"
	"github.com/linuxvss/vss/internal/config"
	"github.com/linuxvss/vss/internal/fault"
	"github.com/linuxvss/vss/internal/service"
	"github.com/linuxvss/vss/internal/writers/builtin"
)

// Timings of the daemon.
const (
	// EnforceInterval is how often storage limits are enforced
	// (copy-on-write shadows grow as their volume changes).
	EnforceInterval = 60 * time.Second
	// ShutdownGrace is how long calls in progress may run after a stop
	// signal before they are cancelled.
	ShutdownGrace = 30 * time.Second
)

// Exit statuses.
const (
	ExitOK    = 0
	ExitError = 1
	ExitUsage = 2
)

// Env is what the daemon runs with.
type Env struct {
	Args []string
	// Stdout receives --version; Stderr the log. nil means os.Stdout and
	// os.Stderr.
	Stdout io.Writer
	Stderr io.Writer
	// Getenv reads the environment; nil means os.Getenv.
	Getenv func(string) string
	// Signals delivers the stop signals; nil means SIGTERM and SIGINT of
	// this process.
	Signals <-chan os.Signal
	// Exit ends the process at a second stop signal; nil means os.Exit.
	Exit func(code int)
	// Version is what Info reports.
	Version string
}

// options are the command line.
type options struct {
	socket, stateDir, configPath, logLevel string
	version                                bool
}

func parse(env Env) (options, error) {
	var o options
	fs := flag.NewFlagSet("vssd", flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	fs.StringVar(&o.socket, "socket", "", "unix socket of the API (default /run/vss/vssd.sock, or VSS_SOCKET)")
	fs.StringVar(&o.stateDir, "state-dir", "", "state directory (default /var/lib/vss, or VSS_STATE_DIR)")
	fs.StringVar(&o.configPath, "config", "", "configuration file (default /etc/vss/vssd.toml, or VSS_CONFIG)")
	fs.StringVar(&o.logLevel, "log-level", "", "debug, info, warn or error (default: the configuration's, info)")
	fs.BoolVar(&o.version, "version", false, "print the version and exit")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: vssd [options]\n\nvssd is the shadow copy service: it serves the vss.v1 API on a unix socket.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(env.Args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return o, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	getenv := env.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	for _, f := range []struct {
		v   *string
		env string
	}{{&o.socket, "VSS_SOCKET"}, {&o.stateDir, "VSS_STATE_DIR"}, {&o.configPath, "VSS_CONFIG"}} {
		if *f.v == "" {
			*f.v = getenv(f.env)
		}
	}
	return o, nil
}

// loadConfig reads the configuration and applies the options over it.
func loadConfig(o options) (config.Config, error) {
	cfg, err := config.Load(o.configPath) // the default file is optional
	if err != nil {
		return cfg, err
	}
	for _, f := range []struct {
		dst *string
		v   string
	}{{&cfg.StateDir, o.stateDir}, {&cfg.Socket, o.socket}} {
		if f.v == "" {
			continue
		}
		a, err := filepath.Abs(f.v)
		if err != nil {
			return cfg, fmt.Errorf("%q: %w", f.v, err)
		}
		*f.dst = a
	}
	if o.logLevel != "" {
		cfg.LogLevel = o.logLevel
	}
	if err := cfg.Check(); err != nil {
		return cfg, fmt.Errorf("configuration: %w", err)
	}
	return cfg, nil
}

// Main runs vssd until ctx is done or a stop signal arrives, and returns
// its exit status.
func Main(ctx context.Context, env Env) int {
	if env.Stdout == nil {
		env.Stdout = os.Stdout
	}
	if env.Stderr == nil {
		env.Stderr = os.Stderr
	}
	o, err := parse(env)
	if errors.Is(err, flag.ErrHelp) {
		return ExitOK
	}
	if err != nil {
		fmt.Fprintf(env.Stderr, "vssd: %v\n", err)
		return ExitUsage
	}
	if o.version {
		fmt.Fprintf(env.Stdout, "vssd %s\n", env.Version)
		return ExitOK
	}
	cfg, err := loadConfig(o)
	if err != nil {
		fmt.Fprintf(env.Stderr, "vssd: %v\n", err)
		return ExitUsage
	}
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel)) // Check accepted it
	log := slog.New(slog.NewTextHandler(env.Stderr, &slog.HandlerOptions{Level: level}))

	stop, stopSignals := watchSignals(ctx, env, log)
	defer stopSignals()

	d := &daemon{cfg: cfg, log: log, version: env.Version}
	return d.run(ctx, stop)
}

// watchSignals returns a channel closed at the first stop signal (or when
// ctx is done); a second signal ends the process at once.
func watchSignals(ctx context.Context, env Env, log *slog.Logger) (<-chan struct{}, func()) {
	sigs := env.Signals
	release := func() {}
	if sigs == nil {
		ch := make(chan os.Signal, 2)
		signal.Notify(ch, syscall.SIGTERM, syscall.SIGINT)
		sigs, release = ch, func() { signal.Stop(ch) }
	}
	exit := env.Exit
	if exit == nil {
		exit = os.Exit
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		select {
		case sig := <-sigs:
			log.Info("stopping", "signal", sig)
		case <-ctx.Done():
			log.Info("stopping", "reason", ctx.Err())
		case <-done:
			return
		}
		close(stop)
		select {
		case sig := <-sigs:
			log.Warn("second stop signal: exiting at once", "signal", sig)
			exit(ExitError)
		case <-done:
		}
	}()
	return stop, func() { close(done); release() }
}

// daemon is one run of vssd.
type daemon struct {
	cfg     config.Config
	log     *slog.Logger
	version string
}

func (d *daemon) run(ctx context.Context, stop <-chan struct{}) int {
	log := d.log
	svc, err := service.Open(ctx, service.Options{Config: d.cfg, LockWait: 0, Log: log, Fault: fault.FromEnv(), WriterSources: builtin.Sources(log)})
	if err != nil {
		if errors.Is(err, service.ErrBusy) {
			log.Error("another process owns the state directory (another vssd, or a vssadmin running the service embedded); stop it first",
				"state_dir", d.cfg.StateDir, "err", err)
		} else {
			log.Error("opening the shadow copy service", "state_dir", d.cfg.StateDir, "err", err)
		}
		return ExitError
	}
	defer func() {
		if err := svc.Close(); err != nil {
			log.Error("closing the shadow copy service", "err", err)
		}
	}()
	logRecovery(log, svc.LastRecovery())

	lis, socket, err := d.listen()
	if err != nil {
		log.Error("cannot serve the API", "err", err)
		return ExitError
	}
	srv := apiserver.New(svc, apiserver.Options{Version: d.version, Socket: socket, Log: log})
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()

	enforceCtx, stopEnforcing := context.WithCancel(context.WithoutCancel(ctx))
	var enforcing sync.WaitGroup
	enforcing.Add(1)
	go func() {
		defer enforcing.Done()
		enforceLimits(enforceCtx, svc, log, EnforceInterval)
	}()

	notify(log, "READY=1\nSTATUS=serving on "+socket+"\nMAINPID="+strconv.Itoa(os.Getpid()))
	log.Info("vssd ready", "version", d.version, "pid", os.Getpid(), "socket", socket, "state_dir", d.cfg.StateDir)

	code := ExitOK
	select {
	case <-stop:
	case err := <-served:
		log.Error("serving the API", "err", err)
		code = ExitError
	}
	notify(log, "STOPPING=1")
	stopEnforcing()
	grace, cancel := context.WithTimeout(context.WithoutCancel(ctx), ShutdownGrace)
	defer cancel()
	if err := srv.Shutdown(grace); err != nil {
		log.Warn("calls were cancelled at shutdown", "err", err)
	}
	enforcing.Wait()
	log.Info("vssd stopped")
	return code
}

// listen returns the socket systemd passed, or listens on the configured
// path.
func (d *daemon) listen() (net.Listener, string, error) {
	ls, err := systemd.Listeners()
	if err != nil {
		return nil, "", err
	}
	if len(ls) > 0 {
		for _, extra := range ls[1:] {
			d.log.Warn("ignoring an extra socket-activation socket", "addr", extra.Addr())
			extra.Close()
		}
		addr := ls[0].Addr()
		if addr.Network() != "unix" {
			ls[0].Close()
			return nil, "", fmt.Errorf("the socket systemd passed is %s %s, not a unix socket", addr.Network(), addr)
		}
		d.log.Info("socket-activated", "socket", addr.String())
		return ls[0], addr.String(), nil
	}
	l, err := apiserver.Listen(d.cfg.Socket)
	if err != nil {
		return nil, "", err
	}
	return l, d.cfg.Socket, nil
}

// enforceLimits deletes the oldest shadows of associations past their
// limit every interval until ctx is done.
func enforceLimits(ctx context.Context, svc *service.Service, log *slog.Logger, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		evicted, err := svc.EnforceLimits(ctx)
		for _, sh := range evicted {
			log.Info("deleted a shadow copy past its storage limit", "shadow", sh.ID, "volume", sh.VolumePath)
		}
		if err != nil && ctx.Err() == nil {
			log.Warn("enforcing the shadow storage limits", "err", err)
		}
	}
}

// notify tells systemd about the daemon's state, when systemd runs it.
func notify(log *slog.Logger, state string) {
	if _, err := systemd.Notify(state); err != nil {
		log.Warn("notifying systemd", "err", err)
	}
}

func logRecovery(log *slog.Logger, r service.Recovery) {
	if len(r.Thawed)+len(r.RolledBack)+len(r.FinishedDelete)+len(r.Reverted)+len(r.Released)+len(r.Orphans)+len(r.Missing) == 0 {
		return
	}
	log.Warn("recovered what the previous run left",
		"thawed", r.Thawed, "rolled_back_sets", len(r.RolledBack), "finished_deletes", len(r.FinishedDelete),
		"completed_reverts", r.Reverted, "released", len(r.Released), "removed_orphans", len(r.Orphans), "dropped_missing", len(r.Missing))
}
