package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// command is a program to run.
type command struct {
	name string
	args []string
	// env is added to this process's environment.
	env []string
	// stdout receives the output; nil keeps it (returned by run).
	stdout io.Writer
	// usage, when not nil, receives the resource usage of the process
	// and its waited-for children (ru_inblock: bytes read from storage).
	usage *syscall.Rusage
}

func cmd(name string, args ...string) command { return command{name: name, args: args} }

// String returns the command line.
func (c command) String() string { return strings.Join(append([]string{c.name}, c.args...), " ") }

// run runs the command and returns its wall time, from just before it is
// started to just after it has exited, and its output. A cancelled ctx
// interrupts it (SIGINT, then SIGKILL after 10 s).
func (c command) run(ctx context.Context) (time.Duration, []byte, error) {
	x := exec.CommandContext(ctx, c.name, c.args...)
	x.Cancel = func() error { return x.Process.Signal(os.Interrupt) }
	x.WaitDelay = 10 * time.Second
	if c.env != nil {
		x.Env = append(os.Environ(), c.env...)
	}
	var out, errb bytes.Buffer
	x.Stdout = &out
	if c.stdout != nil {
		x.Stdout = c.stdout
	}
	x.Stderr = &errb
	start := time.Now()
	err := x.Run()
	d := time.Since(start)
	if c.usage != nil && x.ProcessState != nil {
		if u, ok := x.ProcessState.SysUsage().(*syscall.Rusage); ok {
			*c.usage = *u
		}
	}
	if err != nil {
		if ctx.Err() != nil {
			return d, out.Bytes(), fmt.Errorf("%s: %w", c, ctx.Err())
		}
		return d, out.Bytes(), fmt.Errorf("%s: %w: %s", c, err, strings.TrimSpace(errb.String()))
	}
	return d, out.Bytes(), nil
}

// runQuiet runs an untimed helper command.
func runQuiet(ctx context.Context, name string, args ...string) error {
	_, _, err := cmd(name, args...).run(ctx)
	return err
}
