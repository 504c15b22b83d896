// Package clisvc opens the shadow copy service for the command-line tools
// that run requester sessions (diskshadow, wbadmin): the vssd answering on
// the socket, or the service in the tool's own process (embedded mode), as
// vssadmin chooses.
package clisvc

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"time"

	"github.com/google/uuid"

	"github.com/linuxvss/vss/internal/apiclient"
	"github.com/linuxvss/vss/internal/catalog"
	"github.com/linuxvss/vss/internal/config"
	"github.com/linuxvss/vss/internal/fault"
	"github.com/linuxvss/vss/internal/provider"
	"github.com/linuxvss/vss/internal/requester"
	"github.com/linuxvss/vss/internal/service"
	"github.com/linuxvss/vss/internal/vsserr"
	"github.com/linuxvss/vss/internal/writers/builtin"
)

// Service is what the tools need of the shadow copy service: requester
// sessions and the administration calls around them.
type Service interface {
	Requester() requester.Requester
	ListShadows(ctx context.Context, sel service.Selection) ([]catalog.Shadow, error)
	DeleteShadows(ctx context.Context, ids []uuid.UUID) (int, error)
	RevertShadow(ctx context.Context, id uuid.UUID, force bool) error
	ListProviders(ctx context.Context) ([]provider.Info, error)
	ListWriters(ctx context.Context) ([]service.WriterStatus, error)
	// Expose mounts a shadow copy read-only at path (an empty or new
	// directory) and records it; Unexpose undoes it (path is the mount
	// point).
	Expose(ctx context.Context, id uuid.UUID, path string) (catalog.Shadow, error)
	Unexpose(ctx context.Context, path string) (catalog.Shadow, error)
	// BreakSet takes a set's shadow copies out of the service: they stay
	// on disk as ordinary directories (read-only, or writable), no longer
	// in the catalog; it returns them with their new paths.
	BreakSet(ctx context.Context, setID uuid.UUID, writable bool) ([]catalog.Shadow, error)
	Close() error
}

// Embedded is the service running in this process.
type Embedded struct {
	*service.Service
	req requester.Requester
}

// NewEmbedded wraps a service opened in this process.
func NewEmbedded(s *service.Service) *Embedded {
	return &Embedded{Service: s, req: requester.Embedded(s)}
}

// Requester returns the requester of the service in this process.
func (e *Embedded) Requester() requester.Requester { return e.req }

// Daemon is a connection to vssd. Requester sessions live on
// the connection: closing it ends them.
type Daemon struct {
	*apiclient.Client
	req requester.Requester
}

// NewDaemon wraps a client of vssd.
func NewDaemon(c *apiclient.Client) *Daemon {
	return &Daemon{Client: c, req: requester.Remote(c)}
}

// Requester returns the requester of vssd.
func (d *Daemon) Requester() requester.Requester { return d.req }

var (
	_ Service = (*Embedded)(nil)
	_ Service = (*Daemon)(nil)
)

// Globals are the options that choose the service, as vssadmin's.
type Globals struct {
	StateDir string
	Socket   string
	Config   string
	Embedded bool
	Verbose  bool
}

// FaultHook returns the fault hook of this build: VSS_FAULT with the
// faultinject build tag (tests), nil otherwise.
var FaultHook = fault.FromEnv

// Connect chooses the service for the global options: unless --embedded,
// the vssd answering on the socket (--socket, else VSS_SOCKET, else the
// configuration's) within a second, when it serves the state directory
// asked for (--state-dir or VSS_STATE_DIR, if given); otherwise the service
// opened in this process on the state directory. Exactly one of the
// results is not nil. tool names the program in errors.
func Connect(ctx context.Context, g *Globals, tool string) (*service.Service, *apiclient.Client, error) {
	cfg, err := config.Load(g.Config)
	if err != nil {
		return nil, nil, err
	}
	stateDir := g.StateDir
	if stateDir == "" {
		stateDir = os.Getenv("VSS_STATE_DIR")
	}
	if stateDir != "" {
		cfg.StateDir = stateDir
	}
	level := slog.LevelWarn
	if g.Verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	if !g.Embedded {
		socket := g.Socket
		if socket == "" {
			socket = os.Getenv("VSS_SOCKET")
		}
		if socket == "" {
			socket = cfg.Socket
		}
		c, info, err := apiclient.DialServing(ctx, socket, stateDir, time.Second)
		if err == nil {
			log.Debug("using vssd", "socket", socket, "pid", info.Pid, "version", info.Version, "state_dir", info.StateDir)
			return nil, c, nil
		}
		log.Debug("running the service in this process", "reason", err)
	}
	if os.Geteuid() != 0 {
		return nil, nil, vsserr.New(vsserr.E_ACCESSDENIED, "run %s as root, or start vssd and be allowed by its access configuration", tool)
	}
	s, err := service.Open(ctx, service.Options{Config: cfg, LockWait: 10 * time.Second, Log: log, Fault: FaultHook(), WriterSources: builtin.Sources(log)})
	if errors.Is(err, service.ErrBusy) {
		return nil, nil, vsserr.Wrap(vsserr.VSS_E_SNAPSHOT_SET_IN_PROGRESS, err, "the shadow copy service is busy")
	}
	if err != nil {
		return nil, nil, err
	}
	return s, nil, nil
}

// Open returns the service Connect chooses, with its requester.
func Open(ctx context.Context, g *Globals, tool string) (Service, error) {
	s, c, err := Connect(ctx, g, tool)
	if err != nil {
		return nil, err
	}
	if c != nil {
		return NewDaemon(c), nil
	}
	return NewEmbedded(s), nil
}
