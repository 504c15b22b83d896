// Package diskshadow is the diskshadow command: DiskShadow's interactive
// shell and script interpreter (set context, add volume, create, expose,
// exec, begin/end backup, restores, list, delete …) over the shadow copy
// service, embedded or through vssd. See help.go for the commands and what
// each does on Linux.
package diskshadow

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/linuxvss/vss/internal/vsserr"
)

// Env is what the command runs with.
type Env struct {
	Args   []string
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	// Open returns the backend for the global options (nil uses
	// OpenBackend).
	Open func(ctx context.Context, g *Globals) (Backend, error)
	// Interrupt, when set, delivers Ctrl-C: it stops the running command
	// (an exec'd program gets SIGTERM), not the session.
	Interrupt <-chan os.Signal
	// Now is the clock of the banner (nil: time.Now).
	Now func() time.Time
}

// Exit codes.
const (
	ExitOK    = 0
	ExitError = 1
	ExitUsage = 2
)

// Options is the command line.
type Options struct {
	Globals
	Script   string
	LogFile  string
	Tolerant bool
	Help     bool
}

// ParseArgs parses the command line: -s/-l/-t (or /s, /l, /t, any case) and
// the global options of vssadmin (--state-dir, --socket, --config,
// --embedded, --verbose; "--name value" or "--name=value").
func ParseArgs(args []string) (*Options, error) {
	o := &Options{}
	for i := 0; i < len(args); i++ {
		a := args[i]
		var name, val string
		hasVal := false
		switch {
		case strings.HasPrefix(a, "--"):
			name, val, hasVal = strings.Cut(a[2:], "=")
		case len(a) >= 2 && (a[0] == '-' || a[0] == '/'):
			name = strings.ToLower(a[1:])
		default:
			return nil, fmt.Errorf("unexpected argument %q (a script is given with -s FILE)", a)
		}
		needs := func() (string, error) {
			if hasVal {
				return val, nil
			}
			if i+1 >= len(args) {
				return "", fmt.Errorf("%s needs a value", a)
			}
			i++
			return args[i], nil
		}
		var err error
		switch name {
		case "s", "script":
			o.Script, err = needs()
		case "l", "log":
			o.LogFile, err = needs()
		case "t", "tolerant":
			o.Tolerant = true
		case "h", "?", "help":
			o.Help = true
		case "state-dir":
			o.StateDir, err = needs()
		case "socket":
			o.Socket, err = needs()
		case "config":
			o.Config, err = needs()
		case "embedded":
			o.Embedded = true
		case "verbose":
			o.Verbose = true
		default:
			return nil, fmt.Errorf("unknown option %q", a)
		}
		if err != nil {
			return nil, err
		}
		if hasVal && (name == "t" || name == "tolerant" || name == "embedded" || name == "verbose" || name == "help") {
			return nil, fmt.Errorf("%s takes no value", "--"+name)
		}
	}
	return o, nil
}

// syncWriter serializes the writes of stdout and stderr (and of the log
// they share), which an exec'd program's output reaches from two
// goroutines.
type syncWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (s syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// run is one diskshadow process.
type run struct {
	env    Env
	opts   *Options
	out    io.Writer // stdout and the log
	errOut io.Writer // stderr and the log
	logw   io.Writer // the log alone (nil without -l)
}

// Main runs diskshadow and returns its exit status.
func Main(ctx context.Context, env Env) int {
	o, err := ParseArgs(env.Args)
	if err != nil {
		fmt.Fprintf(env.Stderr, "Error: %s\n\n%s", err, optionsHelp)
		return ExitUsage
	}
	if o.Help {
		fmt.Fprint(env.Stdout, optionsHelp)
		return ExitOK
	}
	now := time.Now
	if env.Now != nil {
		now = env.Now
	}
	mu := &sync.Mutex{}
	r := &run{env: env, opts: o, out: syncWriter{mu, env.Stdout}, errOut: syncWriter{mu, env.Stderr}}
	if o.LogFile != "" {
		f, err := os.OpenFile(o.LogFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
		if err != nil {
			fmt.Fprintf(env.Stderr, "Error: the log file: %s\n", err)
			return ExitError
		}
		defer f.Close()
		r.out = syncWriter{mu, io.MultiWriter(env.Stdout, f)}
		r.errOut = syncWriter{mu, io.MultiWriter(env.Stderr, f)}
		r.logw = syncWriter{mu, f}
	}
	fmt.Fprint(r.out, Banner(now()))

	var lines []Line
	if o.Script != "" {
		// Every line is checked before anything runs, or even the service
		// is opened: a malformed script changes nothing.
		var err error
		if lines, err = readScript(o.Script, env.Stdin); err != nil {
			fmt.Fprintf(r.errOut, "Error: the script %s cannot run; nothing was done:\n%s\n", o.Script, indent(errorText(err)))
			var se *SyntaxError
			if errors.As(err, &se) {
				return ExitUsage
			}
			return ExitError
		}
	}
	open := env.Open
	if open == nil {
		open = OpenBackend
	}
	b, err := open(ctx, &o.Globals)
	if err != nil {
		fmt.Fprintf(r.errOut, "Error: %s\n", errorText(err))
		return ExitError
	}
	defer b.Close()
	level := slog.LevelWarn
	if o.Verbose {
		level = slog.LevelDebug
	}
	sh := NewShell(b, r.out, r.errOut, slog.New(slog.NewTextHandler(r.errOut, &slog.HandlerOptions{Level: level})))
	if o.Script != "" {
		return r.script(ctx, sh, lines)
	}
	return r.interactive(ctx, sh)
}

func readScript(name string, stdin io.Reader) ([]Line, error) {
	if name == "-" {
		return ParseScript(stdin)
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, vsserr.Wrap(vsserr.VSS_E_OBJECT_NOT_FOUND, err, "the script")
	}
	defer f.Close()
	return ParseScript(f)
}

func indent(s string) string {
	return "  " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n  ")
}

// exec runs one command; Ctrl-C (env.Interrupt) stops it. A command that
// panics is an error, not the end of the session.
func (r *run) exec(ctx context.Context, sh *Shell, c Command) (err error) {
	defer func() {
		if p := recover(); p != nil {
			sh.log.Error("internal error", "command", c.String(), "panic", p, "stack", string(debug.Stack()))
			err = fmt.Errorf("internal error in %q: %v", c.String(), p)
		}
	}()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if ch := r.env.Interrupt; ch != nil {
		for len(ch) > 0 { // a Ctrl-C typed before the command is not for it
			<-ch
		}
		done := make(chan struct{})
		defer close(done)
		go func() {
			select {
			case <-ch:
				cancel()
			case <-done:
			}
		}()
	}
	return sh.Exec(ctx, c)
}

// script runs checked lines: each is echoed ("-> command"); the first that
// fails stops the script unless -t.
func (r *run) script(ctx context.Context, sh *Shell, lines []Line) int {
	if ch := r.env.Interrupt; ch != nil {
		// Ctrl-C stops the script (the session is still ended).
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(ctx)
		defer cancel()
		go func() {
			select {
			case <-ch:
				cancel()
			case <-ctx.Done():
			}
		}()
		r.env.Interrupt = nil
	}
	var failed []string
	for _, l := range lines {
		fmt.Fprintf(r.out, "-> %s\n", l.Text)
		err := r.exec(ctx, sh, l.Cmd)
		if errors.Is(err, ErrExit) {
			break
		}
		if err != nil {
			fmt.Fprintf(r.errOut, "Error: line %d: %s\n", l.N, errorText(err))
			failed = append(failed, fmt.Sprint(l.N))
			if !r.opts.Tolerant {
				fmt.Fprintf(r.errOut, "The script stopped at line %d (-t goes on after errors).\n", l.N)
				break
			}
		}
		if ctx.Err() != nil {
			fmt.Fprintf(r.errOut, "The script was stopped after line %d.\n", l.N)
			failed = append(failed, "interrupted")
			break
		}
	}
	code := ExitOK
	if err := sh.Close(ctx); err != nil {
		fmt.Fprintf(r.errOut, "Error: ending the session: %s\n", errorText(err))
		code = ExitError
	}
	if len(failed) > 0 {
		if r.opts.Tolerant {
			fmt.Fprintf(r.errOut, "%s failed: %s.\n", plural(len(failed), "line", "lines"), strings.Join(failed, ", "))
		}
		code = ExitError
	}
	return code
}

func errorsAs(err error, target any) bool { return errors.As(err, target) }

// hasCode reports whether err carries a VSS code.
func hasCode(err error) bool {
	var e *vsserr.Error
	var c vsserr.Code
	return errors.As(err, &e) || errors.As(err, &c)
}
