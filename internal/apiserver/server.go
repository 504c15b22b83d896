// Package apiserver serves the vss.v1 Admin API of a shadow copy service
// on a unix socket. Every connection is a requester session identified by
// the kernel's peer credentials (SO_PEERCRED); every call runs with that
// caller in its context (service.WithCaller) and is checked against it.
// When a connection closes, its session ends and its auto-release shadows
// are released.
package apiserver

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/peer"
	"google.golang.org/protobuf/proto"

	vssv1 "github.com/linuxvss/vss/api/vss/v1"
	"github.com/linuxvss/vss/internal/apiserver/wire"
	"github.com/linuxvss/vss/internal/service"
	"github.com/linuxvss/vss/internal/vsserr"
)

// Options configure a Server.
type Options struct {
	// Version is what Info reports.
	Version string
	// Socket is the socket path Info reports.
	Socket string
	// Log receives the server log; nil means slog.Default().
	Log *slog.Logger
}

// Server serves the Admin API of one service.
type Server struct {
	svc  *service.Service
	opts Options
	log  *slog.Logger
	grpc *grpc.Server
	acl  *ACL

	// ends counts the sessions being ended; after stopped, none starts.
	mu      sync.Mutex
	ends    sync.WaitGroup
	stopped bool
}

// New returns a server of svc's Admin API.
func New(svc *service.Service, o Options) *Server {
	s := &Server{svc: svc, opts: o, log: o.Log, acl: NewACL(svc.Config().Access)}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.grpc = grpc.NewServer(
		grpc.Creds(peerCreds{}),
		grpc.UnaryInterceptor(s.intercept),
		grpc.StreamInterceptor(s.interceptStream),
		grpc.MaxRecvMsgSize(wire.MaxMessageSize),
		grpc.WaitForHandlers(true),
	)
	vssv1.RegisterAdminServer(s.grpc, &admin{svc: svc, srv: s})
	vssv1.RegisterRequesterServer(s.grpc, &requester{svc: svc})
	vssv1.RegisterWritersServer(s.grpc, &writerHub{svc: svc, log: s.log})
	return s
}

// Serve accepts connections on l until Shutdown; it returns nil after
// Shutdown and the accept error otherwise.
func (s *Server) Serve(l net.Listener) error {
	err := s.grpc.Serve(&credListener{Listener: l, log: s.log, end: s.endSession})
	if errors.Is(err, grpc.ErrServerStopped) {
		return nil
	}
	return err
}

// Shutdown stops accepting connections and lets the calls in progress
// finish until ctx is done; then it cancels what still runs. It returns
// when every connection is closed and every session has ended (its
// auto-release shadows released), so that the service can be closed.
func (s *Server) Shutdown(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		s.grpc.GracefulStop()
		close(done)
	}()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = ctx.Err()
		s.log.Warn("calls still running after the shutdown grace period; cancelling them")
		s.grpc.Stop()
		<-done
	}
	s.mu.Lock()
	s.stopped = true
	s.mu.Unlock()
	s.ends.Wait()
	return err
}

// endSession ends a closed connection's session once its calls have
// returned. A connection that made no shadows has no session to end.
func (s *Server) endSession(sess *session) {
	sess.mu.Lock()
	sess.closed = true
	used := sess.used
	sess.mu.Unlock()
	if !used {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		// Too late to touch the service; the next start releases the
		// session's auto-release shadows.
		s.log.Warn("a session ended after the server stopped", "session", sess.caller.Session)
		return
	}
	s.ends.Add(1)
	go func() {
		defer s.ends.Done()
		sess.calls.Wait()
		ctx := service.WithCaller(context.Background(), sess.caller)
		s.svc.EndBackups(ctx, sess.caller.Session)
		if err := s.svc.EndSession(ctx, sess.caller.Session); err != nil {
			s.log.Error("ending a session", "session", sess.caller.Session, "pid", sess.caller.Pid, "err", err)
		}
	}()
}

// makesShadows are the calls that can leave something a session owns (the
// auto-release shadows, requester sessions); a connection that made none
// has no session to end.
func makesShadows(method string) bool {
	return method == vssv1.Admin_CreateShadowSet_FullMethodName || strings.HasPrefix(method, "/vss.v1.Requester/")
}

// denied returns the access-denied error of a refused call.
func denied(c service.Caller, method string) error {
	r := RightOf(method)
	if r == RightRoot {
		return vsserr.New(vsserr.E_ACCESSDENIED, "uid %d may not call %s: only root may", c.Uid, method)
	}
	return vsserr.New(vsserr.E_ACCESSDENIED, "uid %d may not call %s: it needs the %q right (access.%s in the service configuration)", c.Uid, method, r, r)
}

// authOf returns the peer credentials of a call.
func authOf(ctx context.Context) *PeerAuth {
	p, _ := peer.FromContext(ctx)
	if p == nil {
		return nil
	}
	auth, _ := p.AuthInfo.(*PeerAuth)
	return auth
}

// interceptStream checks the access of a streaming call (a writer's
// registration) and puts the caller in its context.
func (s *Server) interceptStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	auth := authOf(ss.Context())
	if auth == nil {
		return wire.ToStatus(vsserr.New(vsserr.E_ACCESSDENIED, "the caller's credentials are unknown"), nil)
	}
	c := auth.Caller
	if !s.acl.Allowed(RightOf(info.FullMethod), c) {
		err := denied(c, info.FullMethod)
		s.log.Warn("call denied", "method", info.FullMethod, "uid", c.Uid, "pid", c.Pid, "err", err)
		s.auditDenied(ss.Context(), c, info.FullMethod, err)
		return wire.ToStatus(err, nil)
	}
	return handler(srv, &callerStream{ServerStream: ss, ctx: service.WithCaller(ss.Context(), c)})
}

// auditDenied records a refused call that would have changed something
// (refused listings are only logged): who tried to delete shadow copies is
// what an administrator wants to know.
func (s *Server) auditDenied(ctx context.Context, c service.Caller, method string, err error) {
	if RightOf(method) == RightList {
		return
	}
	s.svc.Audit(service.WithCaller(ctx, c), "denied", map[string]any{"method": method}, err)
}

// callerStream is a stream whose context carries the caller.
type callerStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (c *callerStream) Context() context.Context { return c.ctx }

// intercept runs every call: it puts the caller in the context, checks
// access, logs, and turns errors into statuses that carry the VSS code.
func (s *Server) intercept(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	start := time.Now()
	auth := authOf(ctx)
	if auth == nil {
		return nil, wire.ToStatus(vsserr.New(vsserr.E_ACCESSDENIED, "the caller's credentials are unknown"), nil)
	}
	c := auth.Caller
	log := s.log.With("method", info.FullMethod, "uid", c.Uid, "gid", c.Gid, "pid", c.Pid, "session", c.Session)
	if !s.acl.Allowed(RightOf(info.FullMethod), c) {
		err := denied(c, info.FullMethod)
		log.Warn("call denied", "err", err)
		s.auditDenied(ctx, c, info.FullMethod, err)
		return nil, wire.ToStatus(err, nil)
	}
	// The first call that can make shadows begins the requester session.
	ok, first := auth.sess.enter(makesShadows(info.FullMethod))
	if !ok {
		return nil, wire.ToStatus(vsserr.Wrap(vsserr.VSS_E_UNEXPECTED, context.Canceled, "the connection closed"), nil)
	}
	if first {
		s.svc.BeginSession(c.Session)
	}
	defer auth.sess.leave()
	resp, err := handler(service.WithCaller(ctx, c), req)
	if err != nil {
		log.Debug("call failed", "code", vsserr.CodeOf(err), "err", err, "took", time.Since(start))
		partial, _ := resp.(proto.Message)
		return nil, wire.ToStatus(err, partial)
	}
	log.Debug("call", "took", time.Since(start))
	return resp, nil
}
