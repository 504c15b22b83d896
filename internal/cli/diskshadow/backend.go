package diskshadow

import (
	"context"

	"github.com/linuxvss/vss/internal/cli/clisvc"
)

// Backend is what diskshadow needs of the service: the embedded service or
// a client of a running vssd (clisvc.Service).
type Backend = clisvc.Service

// Globals are the options that choose the service, as vssadmin's.
type Globals = clisvc.Globals

// OpenBackend opens the service for the global options (clisvc.Open).
func OpenBackend(ctx context.Context, g *Globals) (Backend, error) {
	return clisvc.Open(ctx, g, "diskshadow")
}
