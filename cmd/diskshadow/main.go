// Command diskshadow is DiskShadow for Linux: an interactive shell
// (DISKSHADOW> prompt) and script interpreter (diskshadow -s FILE) for
// shadow copy sets. See `diskshadow -h` and `help` at the prompt.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/linuxvss/vss/internal/cli/diskshadow"
)

func main() {
	// SIGTERM and SIGHUP end the run (the session is ended, volatile shadow
	// copies released); Ctrl-C stops only the running command.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGHUP)
	interrupt := make(chan os.Signal, 1)
	signal.Notify(interrupt, os.Interrupt)
	code := diskshadow.Main(ctx, diskshadow.Env{Args: os.Args[1:], Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Interrupt: interrupt})
	signal.Stop(interrupt)
	stop()
	os.Exit(code)
}
