package diskshadow

import (
	"context"

	"github.com/google/uuid"

	"github.com/linuxvss/vss/internal/catalog"
	"github.com/linuxvss/vss/internal/provider"
	"github.com/linuxvss/vss/internal/requester"
	"github.com/linuxvss/vss/internal/service"
)

// Backend is what diskshadow needs of the service: the embedded service or
// a client of a running vssd. Sessions (begin backup, create, end backup,
// restores) go through its Requester.
type Backend interface {
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
