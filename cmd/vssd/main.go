// Command vssd is the shadow copy service daemon: it serves the vss.v1 API
// on a unix socket (default /run/vss/vssd.sock) for vssadmin and other
// requesters. See `vssd -h` and dist/systemd/ for its units.
package main

import (
	"context"
	"os"

	"github.com/linuxvss/vss/internal/apiserver/daemon"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "devel"

func main() {
	os.Exit(daemon.Main(context.Background(), daemon.Env{Args: os.Args[1:], Stdout: os.Stdout, Stderr: os.Stderr, Version: version}))
}
