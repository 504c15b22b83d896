// Package fault lets tests stop, fail, delay or kill the service at a named
// point (the coordinator's phases, delete, revert, evict). A spec such as
//
//	hold=kill,delete=error:0x80042306,commit=sleep:2s,freeze=pause
//
// maps points to actions. The parser is always built; reading the spec from
// the environment (VSS_FAULT, or the file VSS_FAULT_FILE names, read again
// at every point so that a test can change the faults of a running
// service) is only built with the faultinject tag, so a production binary
// never obeys it. docs/fault-injection.md lists the points.
package fault

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/linuxvss/vss/internal/vsserr"
)

// Hook is called at each fault point; an error fails the operation there.
//
// The actions: kill (SIGKILL of this process), pause (until the operation's
// context ends), error[:HRESULT] (the operation fails there with that code,
// VSS_E_PROVIDER_VETO by default), sleep:DURATION, wait:DURATION (until the
// file VSS_FAULT_DIR/<point>.go exists, at most DURATION: a test acts while
// the service stands still at the point) and exit:N. An action followed by
// #N acts only the first N times the point is reached (error#1: a
// transient failure); the others act every time. Every action first
// creates VSS_FAULT_DIR/<point> when VSS_FAULT_DIR is set.
type Hook func(ctx context.Context, point string) error

// Action is what happens at a point.
type Action struct {
	Kind  string // kill, pause, error, sleep, wait, exit
	Code  vsserr.Code
	Delay time.Duration
	Exit  int
	// Times, when not 0, is how many times the action acts (#N).
	Times int
}

// Parse parses a spec.
func Parse(spec string) (map[string]Action, error) {
	out := map[string]Action{}
	spec = strings.TrimSpace(spec)
	if spec == "" {
		return out, nil
	}
	for _, part := range strings.Split(spec, ",") {
		point, act, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || point == "" {
			return nil, fmt.Errorf("fault spec %q: want point=action", part)
		}
		times := 0
		if i := strings.LastIndexByte(act, '#'); i >= 0 {
			n, err := strconv.Atoi(act[i+1:])
			if err != nil || n < 1 {
				return nil, fmt.Errorf("fault spec %q: bad count %q", part, act[i+1:])
			}
			act, times = act[:i], n
		}
		kind, arg, _ := strings.Cut(act, ":")
		a := Action{Kind: kind, Times: times}
		switch kind {
		case "kill", "pause":
			if arg != "" {
				return nil, fmt.Errorf("fault spec %q: %s takes no argument", part, kind)
			}
		case "error":
			a.Code = vsserr.VSS_E_PROVIDER_VETO
			if arg != "" {
				v, err := strconv.ParseUint(strings.TrimPrefix(strings.ToLower(arg), "0x"), 16, 32)
				if err != nil {
					return nil, fmt.Errorf("fault spec %q: bad code %q", part, arg)
				}
				a.Code = vsserr.Code(v)
			}
		case "sleep", "wait":
			d, err := time.ParseDuration(arg)
			if err != nil || d < 0 {
				return nil, fmt.Errorf("fault spec %q: bad duration %q", part, arg)
			}
			a.Delay = d
		case "exit":
			n, err := strconv.Atoi(arg)
			if err != nil || n < 0 || n > 255 {
				return nil, fmt.Errorf("fault spec %q: bad exit status %q", part, arg)
			}
			a.Exit = n
		default:
			return nil, fmt.Errorf("fault spec %q: unknown action %q (kill, pause, error[:CODE], sleep:DURATION, wait:DURATION, exit:N)", part, kind)
		}
		out[point] = a
	}
	return out, nil
}

// FromSpec returns a hook that acts on spec; nil when spec is empty. A spec
// that does not parse gives a hook that fails every point, so that a test
// with a typo does not pass by doing nothing.
func FromSpec(spec string) Hook {
	if strings.TrimSpace(spec) == "" {
		return nil
	}
	actions, err := Parse(spec)
	if err != nil {
		return func(ctx context.Context, point string) error { return err }
	}
	var c counter
	return func(ctx context.Context, point string) error {
		a, ok := actions[point]
		if !ok || !c.take(point, a.Times) {
			return nil
		}
		return a.do(ctx, point)
	}
}

// counter counts how many times each point's action acted.
type counter struct {
	mu sync.Mutex
	n  map[string]int
}

// take reports whether an action limited to times (0: unlimited) may act
// once more at point, and counts it.
func (c *counter) take(point string, times int) bool {
	if times == 0 {
		return true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	if c.n[point] >= times {
		return false
	}
	c.n[point]++
	return true
}

// FromFile returns a hook that reads its spec from the file at path each
// time a point is reached: a missing or empty file injects nothing, and a
// test changes the faults of a running service by rewriting the file
// (atomically: write another file and rename it). The counts of #N start
// again every time the file is written, even with the same spec. A spec
// that does not parse fails every point, as with FromSpec.
func FromFile(path string) Hook {
	type version struct {
		ino   uint64
		ctime int64
		size  int64
	}
	var (
		mu      sync.Mutex
		last    *version
		actions map[string]Action
		perr    error
		count   *counter
	)
	return func(ctx context.Context, point string) error {
		mu.Lock()
		var st syscall.Stat_t
		err := syscall.Stat(path, &st)
		if err != nil && !errors.Is(err, syscall.ENOENT) {
			mu.Unlock()
			return fmt.Errorf("fault file %s: %w", path, err)
		}
		var v *version
		if err == nil {
			v = &version{ino: st.Ino, ctime: st.Ctim.Nano(), size: st.Size}
		}
		if v == nil {
			last, actions, perr, count = nil, nil, nil, nil
		} else if last == nil || *v != *last {
			last = v
			b, rerr := os.ReadFile(path)
			switch {
			case errors.Is(rerr, os.ErrNotExist):
				last, actions, perr = nil, nil, nil
			case rerr != nil:
				actions, perr = nil, fmt.Errorf("fault file %s: %w", path, rerr)
			default:
				actions, perr = Parse(string(b))
			}
			count = &counter{}
		}
		a, ok := actions[point]
		err = perr
		c := count
		mu.Unlock()
		if err != nil {
			return err
		}
		if !ok || !c.take(point, a.Times) {
			return nil
		}
		return a.do(ctx, point)
	}
}

// Join returns a hook that calls each of hooks (nil ones are left out) in
// turn and returns the first error; nil when there is none.
func Join(hooks ...Hook) Hook {
	var hs []Hook
	for _, h := range hooks {
		if h != nil {
			hs = append(hs, h)
		}
	}
	switch len(hs) {
	case 0:
		return nil
	case 1:
		return hs[0]
	}
	return func(ctx context.Context, point string) error {
		for _, h := range hs {
			if err := h(ctx, point); err != nil {
				return err
			}
		}
		return nil
	}
}

// do carries out the action at point.
func (a Action) do(ctx context.Context, point string) error {
	notify(point)
	switch a.Kind {
	case "kill":
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // not reached
	case "pause":
		fmt.Fprintf(os.Stderr, "VSS_FAULT: paused at %s (pid %d)\n", point, os.Getpid())
		<-ctx.Done()
		return ctx.Err()
	case "error":
		return vsserr.New(a.Code, "fault injected at %s", point)
	case "sleep":
		select {
		case <-time.After(a.Delay):
		case <-ctx.Done():
			return ctx.Err()
		}
	case "wait":
		// Until the test says go on (VSS_FAULT_DIR/<point>.go), at most
		// Delay: the test acts while the service stands still here.
		d := os.Getenv("VSS_FAULT_DIR")
		deadline := time.After(a.Delay)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			if d != "" {
				if _, err := os.Stat(filepath.Join(d, point+".go")); err == nil {
					return nil
				}
			}
			select {
			case <-deadline:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			case <-tick.C:
			}
		}
	case "exit":
		os.Exit(a.Exit)
	}
	return nil
}

// notify creates VSS_FAULT_DIR/<point> so that a test can wait for a point
// to be reached.
func notify(point string) {
	if d := os.Getenv("VSS_FAULT_DIR"); d != "" {
		_ = os.WriteFile(filepath.Join(d, point), []byte(strconv.Itoa(os.Getpid())), 0o644)
	}
}
