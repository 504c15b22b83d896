package fsfreeze

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/linuxvss/vss/internal/volume"
)

// guardEnv marks a process started as a guard. Every binary that links this
// package becomes a guard when started with it (see init).
const guardEnv = "_VSS_FREEZE_GUARD"

func init() {
	if os.Getenv(guardEnv) == "1" {
		os.Exit(runGuard(os.Stdin, os.Stdout))
	}
}

// Guard is a running guard process.
type Guard struct {
	mu     sync.Mutex
	cmd    *exec.Cmd
	in     *os.File // our end of its stdin
	out    *os.File // our end of its stdout
	rd     *bufio.Reader
	frozen []string
	done   chan struct{}
}

// StartGuard starts a guard process. Start it before the hold (its start-up
// costs a fork and exec), freeze and thaw through it inside the hold, and
// Close it afterwards.
func StartGuard(ctx context.Context) (*Guard, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("freeze guard: %w", err)
	}
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return nil, err
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), guardEnv+"=1")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, nil
	// Its own session: a Ctrl-C on our terminal does not reach it, and it
	// outlives us when we are killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		inR.Close()
		inW.Close()
		outR.Close()
		outW.Close()
		return nil, fmt.Errorf("freeze guard: %w", err)
	}
	inR.Close()
	outW.Close()
	g := &Guard{cmd: cmd, in: inW, out: outR, rd: bufio.NewReader(outR), done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(g.done) }()
	if err := g.expect(ctx, "READY"); err != nil {
		g.kill()
		return nil, fmt.Errorf("freeze guard did not start: %w", err)
	}
	return g, nil
}

// Pid returns the guard's process ID.
func (g *Guard) Pid() int { return g.cmd.Process.Pid }

func (g *Guard) send(line string) error {
	_, err := io.WriteString(g.in, line+"\n")
	return err
}

func (g *Guard) expect(ctx context.Context, want string) error {
	if dl, ok := ctx.Deadline(); ok {
		_ = g.out.SetReadDeadline(dl)
	} else {
		_ = g.out.SetReadDeadline(time.Time{})
	}
	line, err := g.rd.ReadString('\n')
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return context.DeadlineExceeded
		}
		return fmt.Errorf("freeze guard: %w", err)
	}
	line = strings.TrimSpace(line)
	if line == want {
		return nil
	}
	if msg, ok := strings.CutPrefix(line, "ERR "); ok {
		return guardError(msg)
	}
	return fmt.Errorf("freeze guard: unexpected answer %q", line)
}

func guardError(msg string) error {
	switch {
	case strings.HasPrefix(msg, "busy "):
		return fmt.Errorf("%s: %w", strings.TrimPrefix(msg, "busy "), ErrAlreadyFrozen)
	case strings.HasPrefix(msg, "unsupported "):
		return fmt.Errorf("%s: %w", strings.TrimPrefix(msg, "unsupported "), ErrNotSupported)
	}
	return errors.New(msg)
}

// Freeze freezes the filesystems mounted at paths, in order, and has the
// guard thaw them by itself at deadline. On error the ones already frozen
// stay frozen until Thaw or Close.
func (g *Guard) Freeze(ctx context.Context, deadline time.Time, paths ...string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, p := range paths {
		if strings.ContainsAny(p, "\n") {
			return fmt.Errorf("freeze: bad path %q", p)
		}
		if err := g.send(fmt.Sprintf("FREEZE %d %s", deadline.UnixNano(), p)); err != nil {
			return fmt.Errorf("freeze guard: %w", err)
		}
		if err := g.expect(ctx, "OK"); err != nil {
			return err
		}
		g.frozen = append(g.frozen, p)
	}
	return nil
}

// ErrExpired is returned by Thaw when the guard had to thaw by itself
// because the deadline passed: the hold did not last until the commit ended.
var ErrExpired = errors.New("the freeze deadline passed; the guard thawed the filesystems by itself")

// Thaw thaws everything the guard froze.
func (g *Guard) Thaw(ctx context.Context) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if err := g.send("THAW"); err != nil {
		return fmt.Errorf("freeze guard: %w", err)
	}
	err := g.expect(ctx, "OK")
	if err != nil && strings.Contains(err.Error(), "expired") {
		err = ErrExpired
	}
	if err == nil || errors.Is(err, ErrExpired) {
		g.frozen = nil
	}
	return err
}

// Close thaws whatever is still frozen and ends the guard. If the guard does
// not answer, Close thaws in this process and kills it.
func (g *Guard) Close() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	var errs []error
	if g.send("EXIT") == nil {
		select {
		case <-g.done:
		case <-time.After(5 * time.Second):
			errs = append(errs, errors.New("freeze guard did not exit"))
		}
	}
	select {
	case <-g.done:
	default:
		g.kill()
	}
	// Whatever happened to the guard, nothing may stay frozen.
	for i := len(g.frozen) - 1; i >= 0; i-- {
		if err := Thaw(g.frozen[i]); err != nil {
			errs = append(errs, err)
		}
	}
	g.frozen = nil
	g.in.Close()
	g.out.Close()
	return errors.Join(errs...)
}

func (g *Guard) kill() {
	_ = g.cmd.Process.Kill()
	<-g.done
}

// runGuard is the guard process: it reads commands on in and answers on out.
func runGuard(in io.Reader, out io.Writer) int {
	// Signals do not end a guard while it holds a freeze; EOF on stdin (its
	// parent is gone) or its deadline does.
	signal.Ignore(syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGPIPE, syscall.SIGQUIT)
	var mu sync.Mutex
	var frozen []string
	expired := false
	var timer *time.Timer
	thawAll := func() []string {
		var failed []string
		for i := len(frozen) - 1; i >= 0; i-- {
			if err := Thaw(frozen[i]); err != nil {
				failed = append(failed, err.Error())
			}
		}
		frozen = nil
		if timer != nil {
			timer.Stop()
		}
		return failed
	}
	reply := func(s string) { _, _ = io.WriteString(out, s+"\n") }
	reply("READY")
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		cmd, arg, _ := strings.Cut(sc.Text(), " ")
		switch cmd {
		case "FREEZE":
			dl, path, ok := strings.Cut(arg, " ")
			ns, err := strconv.ParseInt(dl, 10, 64)
			if !ok || err != nil {
				reply("ERR bad command")
				continue
			}
			if err := refuseRoot(path); err != nil {
				reply("ERR " + err.Error())
				continue
			}
			mu.Lock()
			if expired {
				mu.Unlock()
				reply("ERR expired")
				continue
			}
			err = freeze(path)
			if err == nil {
				frozen = append(frozen, path)
				if timer == nil {
					timer = time.AfterFunc(time.Until(time.Unix(0, ns)), func() {
						mu.Lock()
						defer mu.Unlock()
						if len(frozen) > 0 {
							expired = true
							thawAll()
						}
					})
				}
			}
			mu.Unlock()
			switch {
			case err == nil:
				reply("OK")
			case errors.Is(err, ErrAlreadyFrozen):
				reply("ERR busy " + err.Error())
			case errors.Is(err, ErrNotSupported):
				reply("ERR unsupported " + err.Error())
			default:
				reply("ERR " + err.Error())
			}
		case "THAW":
			mu.Lock()
			failed := thawAll()
			wasExpired := expired
			expired = false
			timer = nil
			mu.Unlock()
			switch {
			case len(failed) > 0:
				reply("ERR " + strings.Join(failed, "; "))
			case wasExpired:
				reply("ERR expired")
			default:
				reply("OK")
			}
		case "EXIT":
			mu.Lock()
			thawAll()
			mu.Unlock()
			return 0
		default:
			reply("ERR unknown command")
		}
	}
	// stdin closed: the parent died (or closed us). Thaw and go.
	mu.Lock()
	thawAll()
	mu.Unlock()
	return 0
}

// refuseRoot is the guard's own last line of defence: it never freezes the
// filesystem of "/", whatever it is asked.
func refuseRoot(path string) error {
	mounts, err := volume.Mounts()
	if err != nil {
		return err
	}
	root, err := volume.FilesystemOf(mounts, "/")
	if err != nil {
		return err
	}
	fs, err := volume.FilesystemOf(mounts, path)
	if err != nil {
		return err
	}
	if fs == root {
		return fmt.Errorf("refusing to freeze %s: it is on the root filesystem", path)
	}
	return nil
}
