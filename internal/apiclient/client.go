// Package apiclient is the client of vssd's Admin API over its unix
// socket. A *Client is a vssadmin backend: it has the methods of the
// embedded service, returns the same values, and turns the daemon's
// errors back into *vsserr.Error with the same code and text.
package apiclient

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"

	vssv1 "github.com/linuxvss/vss/api/vss/v1"
	"github.com/linuxvss/vss/internal/apiserver/wire"
	"github.com/linuxvss/vss/internal/catalog"
	"github.com/linuxvss/vss/internal/config"
	"github.com/linuxvss/vss/internal/provider"
	"github.com/linuxvss/vss/internal/service"
	"github.com/linuxvss/vss/internal/vsserr"
)

// ErrNoDaemon says no daemon answers on the socket.
var ErrNoDaemon = errors.New("no vssd answers")

// ErrOtherStateDir says the daemon serves another state directory than the
// one asked for.
var ErrOtherStateDir = errors.New("vssd serves another state directory")

// DefaultTimeout is how long Dial waits for the daemon by default.
const DefaultTimeout = time.Second

// Client is a connection to vssd. Its methods may be called concurrently.
type Client struct {
	socket string
	conn   *grpc.ClientConn
	api    vssv1.AdminClient

	mu      sync.Mutex
	dialErr error // the last error of dialling the socket
}

// Info describes the daemon.
type Info struct {
	Version  string
	Pid      int32
	StateDir string
	Socket   string
}

// Dial connects to the daemon on the unix socket at path, waiting at most
// timeout (DefaultTimeout when 0) or until ctx is done. It fails with an
// error wrapping ErrNoDaemon when nothing answers there.
func Dial(ctx context.Context, path string, timeout time.Duration) (*Client, error) {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	c := &Client{socket: path}
	dialer := func(ctx context.Context, _ string) (net.Conn, error) {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "unix", path)
		c.mu.Lock()
		c.dialErr = err
		c.mu.Unlock()
		return conn, err
	}
	conn, err := grpc.NewClient("passthrough:///vssd",
		grpc.WithContextDialer(dialer),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(wire.MaxMessageSize)),
	)
	if err != nil {
		return nil, vsserr.Wrap(vsserr.VSS_E_UNEXPECTED, err, "vssd client")
	}
	c.conn, c.api = conn, vssv1.NewAdminClient(conn)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn.Connect()
	for {
		s := conn.GetState()
		if s == connectivity.Ready {
			return c, nil
		}
		if s == connectivity.TransientFailure || s == connectivity.Shutdown {
			conn.Close()
			return nil, c.noDaemon(nil)
		}
		if !conn.WaitForStateChange(ctx, s) {
			conn.Close()
			return nil, c.noDaemon(ctx.Err())
		}
	}
}

// DialServing connects to the daemon on socket and checks, each within
// timeout, that it answers Info and, when stateDir is not "", that it
// serves that state directory. The error wraps ErrNoDaemon or
// ErrOtherStateDir.
func DialServing(ctx context.Context, socket, stateDir string, timeout time.Duration) (*Client, Info, error) {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	c, err := Dial(ctx, socket, timeout)
	if err != nil {
		return nil, Info{}, err
	}
	ictx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	info, err := c.Info(ictx)
	if err != nil {
		c.Close()
		return nil, Info{}, fmt.Errorf("%w at %s: Info: %w", ErrNoDaemon, socket, err)
	}
	if stateDir != "" && !sameDir(stateDir, info.StateDir) {
		c.Close()
		return nil, info, fmt.Errorf("%w: %s serves %s, not %s", ErrOtherStateDir, socket, info.StateDir, stateDir)
	}
	return c, info, nil
}

// sameDir reports whether a and b name the same directory.
func sameDir(a, b string) bool {
	ai, aerr := os.Stat(a)
	bi, berr := os.Stat(b)
	if aerr == nil && berr == nil {
		return os.SameFile(ai, bi)
	}
	return filepath.Clean(abs(a)) == filepath.Clean(abs(b))
}

// noDaemon returns the error of a failed Dial, with the dial error as its
// cause when there is one.
func (c *Client) noDaemon(err error) error {
	c.mu.Lock()
	if c.dialErr != nil {
		err = c.dialErr
	}
	c.mu.Unlock()
	if err == nil {
		err = errors.New("the connection failed")
	}
	return vsserr.Wrap(vsserr.VSS_E_UNEXPECTED, fmt.Errorf("%w at %s: %w", ErrNoDaemon, c.socket, err), "connecting to vssd")
}

// Close closes the connection; the daemon ends its session.
func (c *Client) Close() error { return c.conn.Close() }

// Info asks the daemon who it is.
func (c *Client) Info(ctx context.Context) (Info, error) {
	r, err := c.api.Info(ctx, &vssv1.InfoRequest{})
	if err != nil {
		return Info{}, fail(err, nil)
	}
	return Info{Version: r.GetVersion(), Pid: r.GetPid(), StateDir: r.GetStateDir(), Socket: r.GetSocket()}, nil
}

// fail decodes the error of a call.
func fail(err error, partial *vssv1.CreateShadowSetResponse) error {
	_, e := wire.FromStatus(err, partial)
	return e
}

// abs makes a relative path absolute in this process's working directory,
// as an embedded service would resolve it; the daemon's is another.
func abs(path string) string {
	if path == "" || filepath.IsAbs(path) {
		return path
	}
	if a, err := filepath.Abs(path); err == nil {
		return a
	}
	return path
}

// CreateShadowSet makes a shadow copy set. On failure the result may hold
// the older shadows deleted to make room, as the service's does.
func (c *Client) CreateShadowSet(ctx context.Context, req service.CreateRequest) (*service.CreateResult, error) {
	if len(req.Volumes) > 0 {
		vols := make([]string, len(req.Volumes))
		for i, v := range req.Volumes {
			vols[i] = abs(v)
		}
		req.Volumes = vols
	}
	r, err := c.api.CreateShadowSet(ctx, wire.CreateRequestToProto(req))
	if err != nil {
		partial := &vssv1.CreateShadowSetResponse{}
		has, e := wire.FromStatus(err, partial)
		if !has {
			return nil, e
		}
		res, derr := wire.CreateResultFromProto(partial)
		if derr != nil {
			return nil, e
		}
		return res, e
	}
	return wire.CreateResultFromProto(r)
}

// ListShadows lists the shadows a selection names.
func (c *Client) ListShadows(ctx context.Context, sel service.Selection) ([]catalog.Shadow, error) {
	sel.For = abs(sel.For)
	r, err := c.api.ListShadows(ctx, &vssv1.ListShadowsRequest{Selection: wire.SelectionToProto(sel)})
	if err != nil {
		return nil, fail(err, nil)
	}
	return wire.ShadowsFromProto(r.GetShadows())
}

// Select returns the shadows a selection names, without changing anything.
func (c *Client) Select(ctx context.Context, sel service.Selection) ([]catalog.Shadow, error) {
	sel.For = abs(sel.For)
	r, err := c.api.Select(ctx, &vssv1.SelectRequest{Selection: wire.SelectionToProto(sel)})
	if err != nil {
		return nil, fail(err, nil)
	}
	return wire.ShadowsFromProto(r.GetShadows())
}

// DeleteShadows deletes the given shadows and returns how many went.
func (c *Client) DeleteShadows(ctx context.Context, ids []uuid.UUID) (int, error) {
	r, err := c.api.DeleteShadows(ctx, &vssv1.DeleteShadowsRequest{Ids: wire.IDsToProto(ids)})
	if err != nil {
		partial := &vssv1.DeleteShadowsResponse{}
		_, e := wire.FromStatus(err, partial)
		return int(partial.GetDeleted()), e
	}
	return int(r.GetDeleted()), nil
}

// RevertShadow makes the shadow's volume identical to the shadow.
func (c *Client) RevertShadow(ctx context.Context, id uuid.UUID, force bool) error {
	if _, err := c.api.RevertShadow(ctx, &vssv1.RevertShadowRequest{Id: wire.IDToProto(id), Force: force}); err != nil {
		return fail(err, nil)
	}
	return nil
}

// QueryReverts lists the reverts in progress (of forPath, if given).
func (c *Client) QueryReverts(ctx context.Context, forPath string) ([]catalog.Revert, error) {
	r, err := c.api.QueryReverts(ctx, &vssv1.QueryRevertsRequest{For: abs(forPath)})
	if err != nil {
		return nil, fail(err, nil)
	}
	return wire.RevertsFromProto(r.GetReverts())
}

// ListVolumes lists the volumes eligible for shadow copies.
func (c *Client) ListVolumes(ctx context.Context) ([]service.VolumeInfo, error) {
	r, err := c.api.ListVolumes(ctx, &vssv1.ListVolumesRequest{})
	if err != nil {
		return nil, fail(err, nil)
	}
	return wire.VolumesFromProto(r.GetVolumes())
}

// ListProviders lists the registered providers.
func (c *Client) ListProviders(ctx context.Context) ([]provider.Info, error) {
	r, err := c.api.ListProviders(ctx, &vssv1.ListProvidersRequest{})
	if err != nil {
		return nil, fail(err, nil)
	}
	return wire.ProvidersFromProto(r.GetProviders())
}

// ListWriters lists the subscribed writers.
func (c *Client) ListWriters(ctx context.Context) ([]service.WriterStatus, error) {
	r, err := c.api.ListWriters(ctx, &vssv1.ListWritersRequest{})
	if err != nil {
		return nil, fail(err, nil)
	}
	return wire.WritersFromProto(r.GetWriters())
}

// AddShadowStorage associates the shadows of forPath with storage on onPath.
func (c *Client) AddShadowStorage(ctx context.Context, forPath, onPath string, max config.MaxSize) error {
	_, err := c.api.AddShadowStorage(ctx, &vssv1.AddShadowStorageRequest{For: abs(forPath), On: abs(onPath), Max: wire.MaxSizeToProto(max)})
	if err != nil {
		return fail(err, nil)
	}
	return nil
}

// ResizeShadowStorage changes an association's limit and returns the
// shadows deleted to fit it.
func (c *Client) ResizeShadowStorage(ctx context.Context, forPath, onPath string, max config.MaxSize) ([]catalog.Shadow, error) {
	r, err := c.api.ResizeShadowStorage(ctx, &vssv1.ResizeShadowStorageRequest{For: abs(forPath), On: abs(onPath), Max: wire.MaxSizeToProto(max)})
	if err != nil {
		partial := &vssv1.ResizeShadowStorageResponse{}
		has, e := wire.FromStatus(err, partial)
		if !has {
			return nil, e
		}
		evicted, _ := wire.ShadowsFromProto(partial.GetEvicted())
		return evicted, e
	}
	return wire.ShadowsFromProto(r.GetEvicted())
}

// ListShadowStorage lists associations, filtered by the volume they are
// for or the volume they are on.
func (c *Client) ListShadowStorage(ctx context.Context, forPath, onPath string) ([]service.StorageInfo, error) {
	r, err := c.api.ListShadowStorage(ctx, &vssv1.ListShadowStorageRequest{For: abs(forPath), On: abs(onPath)})
	if err != nil {
		return nil, fail(err, nil)
	}
	return wire.StorageInfoFromProto(r.GetStorage())
}

// StorageShadows returns the shadows associations hold.
func (c *Client) StorageShadows(ctx context.Context, forPath, onPath string) ([]catalog.Shadow, error) {
	r, err := c.api.StorageShadows(ctx, &vssv1.StorageShadowsRequest{For: abs(forPath), On: abs(onPath)})
	if err != nil {
		return nil, fail(err, nil)
	}
	return wire.ShadowsFromProto(r.GetShadows())
}

// DeleteShadowStorage deletes associations and the shadows they hold.
func (c *Client) DeleteShadowStorage(ctx context.Context, forPath, onPath string) ([]catalog.Shadow, error) {
	r, err := c.api.DeleteShadowStorage(ctx, &vssv1.DeleteShadowStorageRequest{For: abs(forPath), On: abs(onPath)})
	if err != nil {
		partial := &vssv1.DeleteShadowStorageResponse{}
		has, e := wire.FromStatus(err, partial)
		if !has {
			return nil, e
		}
		deleted, _ := wire.ShadowsFromProto(partial.GetDeleted())
		return deleted, e
	}
	return wire.ShadowsFromProto(r.GetDeleted())
}

// Conn returns the client's connection, for the other services of the API
// (Requester, Writers).
func (c *Client) Conn() *grpc.ClientConn { return c.conn }

// Expose mounts a persistent shadow copy read-only at path.
func (c *Client) Expose(ctx context.Context, id uuid.UUID, path string) (catalog.Shadow, error) {
	r, err := c.api.Expose(ctx, &vssv1.ExposeRequest{ShadowId: wire.IDToProto(id), Path: abs(path)})
	return exposed(r, err)
}

// exposed decodes the shadow of an Expose or Unexpose reply.
func exposed(r *vssv1.ExposeResponse, err error) (catalog.Shadow, error) {
	if err != nil {
		return catalog.Shadow{}, fail(err, nil)
	}
	sh, err := wire.ShadowsFromProto([]*vssv1.Shadow{r.GetShadow()})
	if err != nil {
		return catalog.Shadow{}, err
	}
	return sh[0], nil
}

// Unexpose undoes Expose.
func (c *Client) Unexpose(ctx context.Context, path string) (catalog.Shadow, error) {
	if filepath.IsAbs(path) || strings.Contains(path, "/") {
		path = abs(path)
	}
	return exposed(c.api.Unexpose(ctx, &vssv1.UnexposeRequest{Path: path}))
}

// BreakSet takes a set's shadow copies out of the service.
func (c *Client) BreakSet(ctx context.Context, setID uuid.UUID, writable bool) ([]catalog.Shadow, error) {
	r, err := c.api.BreakSet(ctx, &vssv1.BreakSetRequest{SetId: wire.IDToProto(setID), Writable: writable})
	if err != nil {
		partial := &vssv1.BreakSetResponse{}
		has, e := wire.FromStatus(err, partial)
		if !has {
			return nil, e
		}
		shs, _ := wire.ShadowsFromProto(partial.GetShadows())
		return shs, e
	}
	return wire.ShadowsFromProto(r.GetShadows())
}
