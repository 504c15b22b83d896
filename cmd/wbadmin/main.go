// Command wbadmin backs up and restores files through the shadow copy
// service, as Windows Server Backup's wbadmin does: every backup is read
// from a shadow copy set, never from the live volumes. See `wbadmin` with
// no arguments, and docs/backup-format.md for the format of a backup.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/linuxvss/vss/internal/cli/wbadmin"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := wbadmin.Main(ctx, wbadmin.Env{Args: os.Args[1:], Stdout: os.Stdout, Stderr: os.Stderr})
	stop()
	os.Exit(code)
}
