package vssadmin

import (
	"context"

	"github.com/google/uuid"

	"github.com/linuxvss/vss/internal/catalog"
	"github.com/linuxvss/vss/internal/config"
	"github.com/linuxvss/vss/internal/provider"
	"github.com/linuxvss/vss/internal/service"
)

// Backend is what vssadmin needs of the service: the embedded service
// (*service.Service) or a client of a running vssd.
type Backend interface {
	CreateShadowSet(ctx context.Context, req service.CreateRequest) (*service.CreateResult, error)
	ListShadows(ctx context.Context, sel service.Selection) ([]catalog.Shadow, error)
	Select(ctx context.Context, sel service.Selection) ([]catalog.Shadow, error)
	DeleteShadows(ctx context.Context, ids []uuid.UUID) (int, error)
	RevertShadow(ctx context.Context, id uuid.UUID, force bool) error
	QueryReverts(ctx context.Context, forPath string) ([]catalog.Revert, error)
	ListVolumes(ctx context.Context) ([]service.VolumeInfo, error)
	ListProviders(ctx context.Context) ([]provider.Info, error)
	ListWriters(ctx context.Context) ([]service.WriterStatus, error)
	AddShadowStorage(ctx context.Context, forPath, onPath string, max config.MaxSize) error
	ResizeShadowStorage(ctx context.Context, forPath, onPath string, max config.MaxSize) ([]catalog.Shadow, error)
	ListShadowStorage(ctx context.Context, forPath, onPath string) ([]service.StorageInfo, error)
	StorageShadows(ctx context.Context, forPath, onPath string) ([]catalog.Shadow, error)
	DeleteShadowStorage(ctx context.Context, forPath, onPath string) ([]catalog.Shadow, error)
	Close() error
}

var _ Backend = (*service.Service)(nil)
