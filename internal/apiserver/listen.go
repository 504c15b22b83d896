package apiserver

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"time"
)

// ErrInUse says a live server already answers on the socket path.
var ErrInUse = errors.New("address already in use")

// probeTimeout bounds the dial that checks whether a server answers.
const probeTimeout = time.Second

// Listen listens on a unix socket at path, the way tailscale's safesocket
// does: if something answers on path, it fails with ErrInUse; otherwise it
// removes a stale socket left by a server that died, creates the parent
// directory (0755), listens, and makes the socket 0666. Who may do what is
// decided per call from the caller's credentials, not by the file mode.
// Closing the listener removes the socket file.
func Listen(path string) (net.Listener, error) {
	if path == "" || !filepath.IsAbs(path) {
		return nil, fmt.Errorf("socket path must be absolute, not %q", path)
	}
	if c, err := net.DialTimeout("unix", path, probeTimeout); err == nil {
		c.Close()
		return nil, fmt.Errorf("%s: %w (is another vssd running?)", path, ErrInUse)
	}
	switch fi, err := os.Lstat(path); {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("socket %s: %w", path, err)
	case fi.Mode().Type() != fs.ModeSocket:
		return nil, fmt.Errorf("socket %s: exists and is not a socket; not removing it", path)
	default:
		// Nothing answers: a server died and left its socket behind.
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("removing the stale socket: %w", err)
		}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("socket directory: %w", err)
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o666); err != nil {
		l.Close()
		return nil, fmt.Errorf("socket %s: %w", path, err)
	}
	return l, nil
}
