package apiserver

import (
	"context"
	"os"

	vssv1 "github.com/linuxvss/vss/api/vss/v1"
	"github.com/linuxvss/vss/internal/apiserver/wire"
	"github.com/linuxvss/vss/internal/service"
)

// admin implements the Admin service over the service. Its methods return
// plain service errors; the interceptor turns them into statuses. A
// response returned together with an error travels as a detail of the
// status (what was done before the failure).
type admin struct {
	vssv1.UnimplementedAdminServer
	svc *service.Service
	srv *Server
}

func (a *admin) Info(ctx context.Context, _ *vssv1.InfoRequest) (*vssv1.InfoResponse, error) {
	return &vssv1.InfoResponse{
		Version:  a.srv.opts.Version,
		Pid:      int32(os.Getpid()),
		StateDir: a.svc.Config().StateDir,
		Socket:   a.srv.opts.Socket,
	}, nil
}

func (a *admin) CreateShadowSet(ctx context.Context, req *vssv1.CreateShadowSetRequest) (*vssv1.CreateShadowSetResponse, error) {
	r, err := wire.CreateRequestFromProto(req)
	if err != nil {
		return nil, err
	}
	res, err := a.svc.CreateShadowSet(ctx, r)
	return wire.CreateResultToProto(res), err
}

func (a *admin) ListShadows(ctx context.Context, req *vssv1.ListShadowsRequest) (*vssv1.ListShadowsResponse, error) {
	sel, err := wire.SelectionFromProto(req.GetSelection())
	if err != nil {
		return nil, err
	}
	sh, err := a.svc.ListShadows(ctx, sel)
	if err != nil {
		return nil, err
	}
	return &vssv1.ListShadowsResponse{Shadows: wire.ShadowsToProto(sh)}, nil
}

func (a *admin) Select(ctx context.Context, req *vssv1.SelectRequest) (*vssv1.SelectResponse, error) {
	sel, err := wire.SelectionFromProto(req.GetSelection())
	if err != nil {
		return nil, err
	}
	sh, err := a.svc.Select(ctx, sel)
	if err != nil {
		return nil, err
	}
	return &vssv1.SelectResponse{Shadows: wire.ShadowsToProto(sh)}, nil
}

func (a *admin) DeleteShadows(ctx context.Context, req *vssv1.DeleteShadowsRequest) (*vssv1.DeleteShadowsResponse, error) {
	ids, err := wire.IDsFromProto("ids", req.GetIds())
	if err != nil {
		return nil, err
	}
	n, err := a.svc.DeleteShadows(ctx, ids)
	return &vssv1.DeleteShadowsResponse{Deleted: int64(n)}, err
}

func (a *admin) RevertShadow(ctx context.Context, req *vssv1.RevertShadowRequest) (*vssv1.RevertShadowResponse, error) {
	id, err := wire.IDFromProto("id", req.GetId())
	if err != nil {
		return nil, err
	}
	if err := a.svc.RevertShadow(ctx, id, req.GetForce()); err != nil {
		return nil, err
	}
	return &vssv1.RevertShadowResponse{}, nil
}

func (a *admin) QueryReverts(ctx context.Context, req *vssv1.QueryRevertsRequest) (*vssv1.QueryRevertsResponse, error) {
	rs, err := a.svc.QueryReverts(ctx, req.GetFor())
	if err != nil {
		return nil, err
	}
	return &vssv1.QueryRevertsResponse{Reverts: wire.RevertsToProto(rs)}, nil
}

func (a *admin) ListVolumes(ctx context.Context, _ *vssv1.ListVolumesRequest) (*vssv1.ListVolumesResponse, error) {
	vs, err := a.svc.ListVolumes(ctx)
	if err != nil {
		return nil, err
	}
	return &vssv1.ListVolumesResponse{Volumes: wire.VolumesToProto(vs)}, nil
}

func (a *admin) ListProviders(ctx context.Context, _ *vssv1.ListProvidersRequest) (*vssv1.ListProvidersResponse, error) {
	ps, err := a.svc.ListProviders(ctx)
	if err != nil {
		return nil, err
	}
	return &vssv1.ListProvidersResponse{Providers: wire.ProvidersToProto(ps)}, nil
}

func (a *admin) ListWriters(ctx context.Context, _ *vssv1.ListWritersRequest) (*vssv1.ListWritersResponse, error) {
	ws, err := a.svc.ListWriters(ctx)
	if err != nil {
		return nil, err
	}
	return &vssv1.ListWritersResponse{Writers: wire.WritersToProto(ws)}, nil
}

func (a *admin) AddShadowStorage(ctx context.Context, req *vssv1.AddShadowStorageRequest) (*vssv1.AddShadowStorageResponse, error) {
	if err := a.svc.AddShadowStorage(ctx, req.GetFor(), req.GetOn(), wire.MaxSizeFromProto(req.GetMax())); err != nil {
		return nil, err
	}
	return &vssv1.AddShadowStorageResponse{}, nil
}

func (a *admin) ResizeShadowStorage(ctx context.Context, req *vssv1.ResizeShadowStorageRequest) (*vssv1.ResizeShadowStorageResponse, error) {
	evicted, err := a.svc.ResizeShadowStorage(ctx, req.GetFor(), req.GetOn(), wire.MaxSizeFromProto(req.GetMax()))
	return &vssv1.ResizeShadowStorageResponse{Evicted: wire.ShadowsToProto(evicted)}, err
}

func (a *admin) ListShadowStorage(ctx context.Context, req *vssv1.ListShadowStorageRequest) (*vssv1.ListShadowStorageResponse, error) {
	st, err := a.svc.ListShadowStorage(ctx, req.GetFor(), req.GetOn())
	if err != nil {
		return nil, err
	}
	return &vssv1.ListShadowStorageResponse{Storage: wire.StorageInfoToProto(st)}, nil
}

func (a *admin) StorageShadows(ctx context.Context, req *vssv1.StorageShadowsRequest) (*vssv1.StorageShadowsResponse, error) {
	sh, err := a.svc.StorageShadows(ctx, req.GetFor(), req.GetOn())
	if err != nil {
		return nil, err
	}
	return &vssv1.StorageShadowsResponse{Shadows: wire.ShadowsToProto(sh)}, nil
}

func (a *admin) DeleteShadowStorage(ctx context.Context, req *vssv1.DeleteShadowStorageRequest) (*vssv1.DeleteShadowStorageResponse, error) {
	deleted, err := a.svc.DeleteShadowStorage(ctx, req.GetFor(), req.GetOn())
	return &vssv1.DeleteShadowStorageResponse{Deleted: wire.ShadowsToProto(deleted)}, err
}

func (a *admin) Expose(ctx context.Context, req *vssv1.ExposeRequest) (*vssv1.ExposeResponse, error) {
	id, err := wire.IDFromProto("shadow_id", req.GetShadowId())
	if err != nil {
		return nil, err
	}
	sh, err := a.svc.Expose(ctx, id, req.GetPath())
	if err != nil {
		return nil, err
	}
	return &vssv1.ExposeResponse{Shadow: wire.ShadowToProto(sh)}, nil
}

func (a *admin) Unexpose(ctx context.Context, req *vssv1.UnexposeRequest) (*vssv1.ExposeResponse, error) {
	sh, err := a.svc.Unexpose(ctx, req.GetPath())
	if err != nil {
		return nil, err
	}
	return &vssv1.ExposeResponse{Shadow: wire.ShadowToProto(sh)}, nil
}

func (a *admin) BreakSet(ctx context.Context, req *vssv1.BreakSetRequest) (*vssv1.BreakSetResponse, error) {
	id, err := wire.IDFromProto("set_id", req.GetSetId())
	if err != nil {
		return nil, err
	}
	shs, err := a.svc.BreakSet(ctx, id, req.GetWritable())
	return &vssv1.BreakSetResponse{Shadows: wire.ShadowsToProto(shs)}, err
}
