// Package fault lets tests stop, fail, delay or kill the service at a named
// point (the coordinator's phases, delete, revert). A spec such as
//
//	hold=kill,delete=error:0x80042306,commit=sleep:2s,freeze=pause
//
// maps points to actions. The parser is always built; reading the spec from
// the environment (VSS_FAULT) is only built with the faultinject tag, so a
// production binary never obeys it.
package fault

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/linuxvss/vss/internal/vsserr"
)

// Hook is called at each fault point; an error fails the operation there.
type Hook func(ctx context.Context, point string) error

// Action is what happens at a point.
type Action struct {
	Kind  string // kill, pause, error, sleep, exit
	Code  vsserr.Code
	Delay time.Duration
	Exit  int
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
		kind, arg, _ := strings.Cut(act, ":")
		a := Action{Kind: kind}
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
		case "sleep":
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
			return nil, fmt.Errorf("fault spec %q: unknown action %q (kill, pause, error[:CODE], sleep:DURATION, exit:N)", part, kind)
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
	return func(ctx context.Context, point string) error {
		a, ok := actions[point]
		if !ok {
			return nil
		}
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
		case "exit":
			os.Exit(a.Exit)
		}
		return nil
	}
}

// notify creates VSS_FAULT_DIR/<point> so that a test can wait for a point
// to be reached.
func notify(point string) {
	if d := os.Getenv("VSS_FAULT_DIR"); d != "" {
		_ = os.WriteFile(filepath.Join(d, point), []byte(strconv.Itoa(os.Getpid())), 0o644)
	}
}
