package apiserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"syscall"

	"github.com/google/uuid"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/credentials"

	"github.com/linuxvss/vss/internal/service"
)

// PeerAuth is the grpc AuthInfo of a connection: the credentials of the
// process that connected (SO_PEERCRED, read when the connection was
// accepted) and the requester session the connection is.
type PeerAuth struct {
	credentials.CommonAuthInfo
	Caller service.Caller
	sess   *session
}

// AuthType names the authentication: the kernel's peer credentials.
func (*PeerAuth) AuthType() string { return "peercred" }

// peerCred reads the credentials of the process at the other end of a unix
// socket connection.
func peerCred(c net.Conn) (*unix.Ucred, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil, fmt.Errorf("%T is not a unix socket connection", c)
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil, err
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return nil, err
	}
	if cerr != nil {
		return nil, fmt.Errorf("SO_PEERCRED: %w", cerr)
	}
	return cred, nil
}

// session is one connection's requester session. Calls enter and leave
// it; when the connection closes, the session ends once its last call has
// returned (service.EndSession releases its auto-release shadows).
type session struct {
	caller service.Caller
	mu     sync.Mutex
	calls  sync.WaitGroup
	closed bool
	used   bool // a call that may own shadows was made
}

// enter registers a call; ok is false when the connection is gone, first
// is true for the first call that may own shadows.
func (s *session) enter(mayOwn bool) (ok, first bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false, false
	}
	s.calls.Add(1)
	first = mayOwn && !s.used
	s.used = s.used || mayOwn
	return true, first
}

func (s *session) leave() { s.calls.Done() }

// sessionConn is an accepted connection with its caller.
type sessionConn struct {
	net.Conn
	auth *PeerAuth
	sess *session
	once sync.Once
	end  func(*session)
}

// Close closes the connection and ends its session.
func (c *sessionConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.end(c.sess) })
	return err
}

// credListener reads the peer credentials of every connection it accepts.
type credListener struct {
	net.Listener
	log *slog.Logger
	end func(*session)
}

// Accept returns the next connection whose credentials could be read;
// connections whose credentials cannot be read are refused.
func (l *credListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		cred, err := peerCred(c)
		if err != nil {
			l.log.Warn("refusing a connection whose credentials cannot be read", "err", err)
			c.Close()
			continue
		}
		caller := service.Caller{Uid: cred.Uid, Gid: cred.Gid, Pid: cred.Pid, Session: uuid.NewString()}
		sess := &session{caller: caller}
		auth := &PeerAuth{CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity}, Caller: caller, sess: sess}
		l.log.Debug("connection", "uid", caller.Uid, "gid", caller.Gid, "pid", caller.Pid, "session", caller.Session)
		return &sessionConn{Conn: c, auth: auth, sess: sess, end: l.end}, nil
	}
}

// peerCreds is the grpc TransportCredentials of the socket: no handshake,
// the AuthInfo of the connection as credListener accepted it.
type peerCreds struct{}

var errNotAccepted = errors.New("connection not accepted by the peer-credential listener")

// ServerHandshake returns the connection's AuthInfo.
func (peerCreds) ServerHandshake(c net.Conn) (net.Conn, credentials.AuthInfo, error) {
	sc, ok := c.(*sessionConn)
	if !ok {
		return nil, nil, errNotAccepted
	}
	return sc, sc.auth, nil
}

// ClientHandshake is not used: these are server credentials.
func (peerCreds) ClientHandshake(context.Context, string, net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errors.New("peerCreds are server credentials")
}

// Info describes the protocol.
func (peerCreds) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "peercred"}
}

// Clone returns the credentials (they hold no state).
func (peerCreds) Clone() credentials.TransportCredentials { return peerCreds{} }

// OverrideServerName does nothing.
func (peerCreds) OverrideServerName(string) error { return nil }
