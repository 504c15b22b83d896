package hook

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/linuxvss/vss/internal/vsserr"
)

// guardEnv marks a process started as a thaw guard. Every binary that
// links this package becomes a guard when started with it (see init).
const guardEnv = "_VSS_HOOK_GUARD"

func init() {
	if os.Getenv(guardEnv) == "1" {
		os.Exit(runGuard(os.Stdin, os.Stdout, os.Stderr))
	}
}

// guardStart is what the guard reads first: the thaw command and the end
// of the freeze window.
type guardStart struct {
	Thaw     runSpec   `json:"thaw"`
	Deadline time.Time `json:"deadline"`
}

// guardResult is the guard's one answer: the thaw command's outcome.
type guardResult struct {
	// Expired: the deadline passed and the guard thawed by itself.
	Expired bool `json:"expired,omitempty"`
	// Code and Msg are the thaw command's error (Code 0: success).
	Code vsserr.Code `json:"code,omitempty"`
	Msg  string      `json:"msg,omitempty"`
	// At is when the thaw command ended.
	At time.Time `json:"at"`
}

func (r *guardResult) err() error {
	if r.Code == 0 {
		return nil
	}
	return &vsserr.Error{Code: r.Code, Msg: r.Msg}
}

// detail is an error's message without its leading VSS code.
func detail(err error) string {
	var e *vsserr.Error
	if errors.As(err, &e) && e.Code == vsserr.CodeOf(err) {
		if e.Err == nil {
			return e.Msg
		}
		return e.Msg + ": " + e.Err.Error()
	}
	return err.Error()
}

// guard is a running guard process, seen from the service.
type guard struct {
	cmd    *exec.Cmd
	in     *os.File // our end of its stdin
	out    *os.File // our end of its stdout
	rd     *bufio.Reader
	done   chan struct{}
	asked  bool
	result *guardResult
}

// startGuard starts a guard holding the thaw command s, to be run by
// itself at deadline or when the service goes away.
func startGuard(ctx context.Context, s runSpec, deadline time.Time) (*guard, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("thaw guard: %w", err)
	}
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("thaw guard: %w", err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return nil, fmt.Errorf("thaw guard: %w", err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), guardEnv+"=1")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, os.Stderr
	cmd.Dir = "/"
	// A session of its own: signals to our terminal or process group do
	// not reach it, and it outlives us.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		inR.Close()
		inW.Close()
		outR.Close()
		outW.Close()
		return nil, fmt.Errorf("thaw guard: %w", err)
	}
	inR.Close()
	outW.Close()
	g := &guard{cmd: cmd, in: inW, out: outR, rd: bufio.NewReader(outR), done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(g.done) }()
	b, err := json.Marshal(guardStart{Thaw: s, Deadline: deadline})
	if err == nil {
		_, err = g.in.Write(append(b, '\n'))
	}
	if err == nil {
		var line string
		line, err = g.readLine(ctx, 10*time.Second)
		if err == nil && line != "READY" {
			err = fmt.Errorf("unexpected answer %q", line)
		}
	}
	if err != nil {
		g.kill()
		return nil, fmt.Errorf("thaw guard did not start: %w", err)
	}
	return g, nil
}

// readLine reads one line by ctx's deadline (or within limit).
func (g *guard) readLine(ctx context.Context, limit time.Duration) (string, error) {
	dl := time.Now().Add(limit)
	if d, ok := ctx.Deadline(); ok {
		dl = d
	}
	_ = g.out.SetReadDeadline(dl)
	line, err := g.rd.ReadString('\n')
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return "", context.DeadlineExceeded
		}
		return "", err
	}
	return strings.TrimSpace(line), nil
}

// ask has the guard run the thaw command now (unless it did by itself),
// by dl when it is not zero. It does not wait; wait collects the result.
func (g *guard) ask(reason string, dl time.Time) {
	if g.asked || g.result != nil {
		return
	}
	g.asked = true
	var ns int64
	if !dl.IsZero() {
		ns = dl.UnixNano()
	}
	// An error here means that the guard is gone, after thawing by
	// itself at its deadline: its answer is in the pipe.
	_, _ = fmt.Fprintf(g.in, "THAW %s %d\n", reason, ns)
}

// wait returns the result of the thaw command, waiting for it by ctx's
// deadline. Calling it again returns the same result.
func (g *guard) wait(ctx context.Context) (*guardResult, error) {
	if g.result != nil {
		return g.result, nil
	}
	line, err := g.readLine(ctx, time.Hour)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("thaw guard ended without an answer")
		}
		return nil, err
	}
	var r guardResult
	if err := json.Unmarshal([]byte(line), &r); err != nil {
		return nil, fmt.Errorf("thaw guard: bad answer %q", line)
	}
	g.result = &r
	return &r, nil
}

// thaw asks the guard to thaw by ctx's deadline and waits for the result.
func (g *guard) thaw(ctx context.Context, reason string) (*guardResult, error) {
	dl, _ := ctx.Deadline()
	g.ask(reason, dl)
	return g.wait(ctx)
}

// release lets the guard go. If it has not thawed yet, it sees the end of
// its input and thaws by itself.
func (g *guard) release() {
	g.in.Close()
	go func() {
		<-g.done
		g.out.Close()
	}()
}

func (g *guard) kill() {
	_ = g.cmd.Process.Kill()
	<-g.done
	g.in.Close()
	g.out.Close()
}

// runGuard is the guard process. It reads its start line, answers READY,
// then waits for "THAW reason deadline", the end of its input or the
// deadline, runs the thaw command once, answers and exits.
func runGuard(in io.Reader, out, logTo io.Writer) int {
	// Signals do not end a guard; the end of its input or its deadline do.
	signal.Ignore(syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGPIPE, syscall.SIGQUIT)
	log := slog.New(slog.NewTextHandler(logTo, nil)).With("process", "vss-hook-guard", "pid", os.Getpid())
	rd := bufio.NewReader(in)
	line, err := rd.ReadString('\n')
	if err != nil {
		log.Error("no start line", "err", err)
		return 2
	}
	var st guardStart
	if err := json.Unmarshal([]byte(line), &st); err != nil || len(st.Thaw.Argv) == 0 {
		log.Error("bad start line", "err", err)
		return 2
	}
	log = log.With("writer", st.Thaw.Writer)
	reply := func(r *guardResult) {
		b, _ := json.Marshal(r)
		_, _ = out.Write(append(b, '\n'))
	}
	thaw := func(dl time.Time) *guardResult {
		ctx := context.Background()
		if !dl.IsZero() {
			var cancel context.CancelFunc
			ctx, cancel = context.WithDeadline(ctx, dl)
			defer cancel()
		}
		r := &guardResult{}
		if err := run(ctx, log, st.Thaw); err != nil {
			r.Code, r.Msg = vsserr.CodeOf(err), detail(err)
			log.Error("thaw command failed", "err", err)
		}
		r.At = time.Now()
		return r
	}
	if _, err := io.WriteString(out, "READY\n"); err != nil {
		// Nobody to answer to: the service is already gone.
		log.Warn("the service went away during the freeze: thawing")
		thaw(time.Time{})
		return 0
	}
	lines := make(chan string, 1)
	go func() {
		l, err := rd.ReadString('\n')
		if err == nil {
			lines <- strings.TrimSpace(l)
		}
		close(lines)
	}()
	timer := time.NewTimer(time.Until(st.Deadline))
	defer timer.Stop()
	select {
	case l, ok := <-lines:
		if !ok {
			log.Warn("the service went away during the freeze (its pipe closed): thawing by itself")
			r := thaw(time.Time{})
			log.Info("thawed after the service went away", "ok", r.Code == 0)
			return 0
		}
		f := strings.Fields(l)
		var dl time.Time
		if len(f) == 3 && f[0] == "THAW" {
			if ns, err := strconv.ParseInt(f[2], 10, 64); err == nil && ns > 0 {
				dl = time.Unix(0, ns)
			}
		} else {
			log.Warn("unexpected command; thawing", "line", l)
		}
		reply(thaw(dl))
		return 0
	case <-timer.C:
		log.Warn("freeze deadline passed without a thaw from the service: thawing by itself", "deadline", st.Deadline)
		r := thaw(time.Time{})
		r.Expired = true
		reply(r)
		return 0
	}
}
