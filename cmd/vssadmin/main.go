// Command vssadmin administers shadow copies: create, list, delete and
// revert them, and manage their storage. See `vssadmin help`.
package main

import (
	"context"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/linuxvss/vss/internal/cli/vssadmin"
)

func main() {
	// A short-lived process: collect garbage less often (listings of
	// thousands of shadows allocate tens of megabytes, all of it live).
	debug.SetGCPercent(400)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := vssadmin.Main(ctx, vssadmin.Env{Args: os.Args[1:], Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr})
	stop()
	os.Exit(code)
}
