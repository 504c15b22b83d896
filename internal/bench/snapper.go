package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// snapperConfig is the snapper configuration the benchmark makes (and
// deletes) for its btrfs volume.
const snapperConfig = "vssbench"

// snapper runs snapper the way this machine allows: through the system's
// snapperd, through a snapperd of our own on a private bus (machines
// without systemd), or without DBus.
type snapper struct {
	mode string   // for the table
	env  []string // DBUS_SYSTEM_BUS_ADDRESS of the private bus
	args []string // "--no-dbus"
	// restart starts the private snapperd again if it has exited (it ends
	// itself after some idle time); nil for the other modes.
	restart func(ctx context.Context) error
}

func (s *snapper) cmd(args ...string) command {
	c := cmd("snapper", append(append([]string{}, s.args...), args...)...)
	c.env = s.env
	return c
}

// ready makes sure snapper can answer (outside any timed region).
func (s *snapper) ready(ctx context.Context) error {
	if s.restart != nil {
		return s.restart(ctx)
	}
	return nil
}

// setupSnapper prepares snapper and makes a configuration for mount. When
// snapper cannot run here, it returns nil and the reason.
func (r *runner) setupSnapper(ctx context.Context, fx *Fixtures, mount string) (*snapper, string) {
	if _, err := exec.LookPath("snapper"); err != nil {
		return nil, "snapper is not installed"
	}
	if why := r.removeStaleSnapperConfig(ctx); why != "" {
		return nil, why
	}
	var s *snapper
	var reasons []error
	if _, err := os.Stat("/run/dbus/system_bus_socket"); err == nil {
		sys := &snapper{mode: "via the system snapperd (DBus)"}
		if err := runQuiet(ctx, "snapper", "list-configs"); err == nil {
			s = sys
		} else {
			reasons = append(reasons, fmt.Errorf("system bus: %w", err))
		}
	}
	if s == nil {
		priv, err := r.privateSnapperd(ctx, fx)
		if err == nil {
			s = priv
		} else {
			reasons = append(reasons, fmt.Errorf("private bus: %w", err))
		}
	}
	if s == nil {
		nodbus := &snapper{mode: "snapper --no-dbus (no snapperd could be reached)", args: []string{"--no-dbus"}}
		if err := runQuiet(ctx, "snapper", "--no-dbus", "list-configs"); err == nil {
			s = nodbus
		} else {
			reasons = append(reasons, fmt.Errorf("without DBus: %w", err))
			return nil, "snapper cannot run here: " + errors.Join(reasons...).Error()
		}
	}
	if _, _, err := s.cmd("-c", snapperConfig, "create-config", mount).run(ctx); err != nil {
		return nil, "snapper create-config failed: " + err.Error()
	}
	fx.Defer("snapper delete-config "+snapperConfig, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := s.ready(ctx); err == nil {
			if _, _, err := s.cmd("-c", snapperConfig, "delete-config").run(ctx); err == nil {
				return nil
			}
		}
		_, _, err := cmd("snapper", "--no-dbus", "-c", snapperConfig, "delete-config").run(ctx)
		return err
	})
	r.log.Info("snapper ready", "mode", s.mode)
	return s, ""
}

// removeStaleSnapperConfig removes the configuration a killed run left
// behind: one named snapperConfig whose subvolume was in a work directory
// of this benchmark and is gone. snapper cannot delete such a configuration
// itself, so its file and its name in SNAPPER_CONFIGS are removed by hand.
// A configuration of that name that is not such a leftover is left alone,
// and the reason returned.
func (r *runner) removeStaleSnapperConfig(ctx context.Context) string {
	const sysconfig = "/etc/default/snapper"
	cfgFile := filepath.Join("/etc/snapper/configs", snapperConfig)
	b, err := os.ReadFile(cfgFile)
	if errors.Is(err, os.ErrNotExist) {
		return ""
	} else if err != nil {
		return err.Error()
	}
	var subvol string
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "SUBVOLUME="); ok {
			subvol = strings.Trim(v, `"`)
		}
	}
	if !strings.Contains(subvol, "/vssbench-") {
		return fmt.Sprintf("a snapper configuration %q for %q exists; it is not this benchmark's, so it is left alone", snapperConfig, subvol)
	}
	if _, err := os.Stat(subvol); err == nil {
		return fmt.Sprintf("a snapper configuration %q for %s exists: is another benchmark running?", snapperConfig, subvol)
	}
	r.log.Warn("removing the snapper configuration a killed run left behind", "config", snapperConfig, "subvolume", subvol)
	if _, _, err := cmd("snapper", "--no-dbus", "-c", snapperConfig, "delete-config").run(ctx); err == nil {
		return ""
	}
	if err := os.Remove(cfgFile); err != nil {
		return fmt.Sprintf("removing the stale snapper configuration: %v", err)
	}
	sc, err := os.ReadFile(sysconfig)
	if err != nil {
		return ""
	}
	lines := strings.Split(string(sc), "\n")
	for i, line := range lines {
		v, ok := strings.CutPrefix(line, "SNAPPER_CONFIGS=")
		if !ok {
			continue
		}
		var keep []string
		for _, name := range strings.Fields(strings.Trim(v, `"`)) {
			if name != snapperConfig {
				keep = append(keep, name)
			}
		}
		lines[i] = `SNAPPER_CONFIGS="` + strings.Join(keep, " ") + `"`
	}
	if err := os.WriteFile(sysconfig, []byte(strings.Join(lines, "\n")), 0o644); err != nil {
		return fmt.Sprintf("removing %q from %s: %v", snapperConfig, sysconfig, err)
	}
	return ""
}

// privateSnapperd starts a DBus daemon on a private socket and a snapperd
// on it, for machines whose system bus is not running (no systemd). Both
// are stopped by the fixtures' cleanup.
func (r *runner) privateSnapperd(ctx context.Context, fx *Fixtures) (*snapper, error) {
	daemon, err := exec.LookPath("dbus-daemon")
	if err != nil {
		return nil, err
	}
	snapperd, err := exec.LookPath("snapperd")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/snapperd"); serr != nil {
			return nil, err
		}
		snapperd = "/usr/sbin/snapperd"
	}
	dir := filepath.Join(fx.Dir(), "dbus")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	sock := filepath.Join(dir, "bus")
	conf := filepath.Join(dir, "bus.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(busConfig, sock)), 0o600); err != nil {
		return nil, err
	}
	bus := exec.Command(daemon, "--config-file="+conf, "--nofork", "--nopidfile")
	if _, err := startProcess(fx, bus, "dbus-daemon"); err != nil {
		return nil, err
	}
	for i := 0; ; i++ {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		if i == 100 {
			return nil, fmt.Errorf("dbus-daemon made no socket at %s", sock)
		}
		time.Sleep(50 * time.Millisecond)
	}
	env := []string{"DBUS_SYSTEM_BUS_ADDRESS=unix:path=" + sock}
	s := &snapper{mode: "via a snapperd on a private DBus (no system bus here)", env: env}
	var mu sync.Mutex
	var done <-chan struct{}
	s.restart = func(ctx context.Context) error {
		mu.Lock()
		defer mu.Unlock()
		if done != nil {
			select {
			case <-done:
			default:
				return nil // running
			}
		}
		d := exec.Command(snapperd)
		d.Env = append(os.Environ(), env...)
		var err error
		if done, err = startProcess(fx, d, "snapperd"); err != nil {
			return err
		}
		for i := 0; i < 50; i++ {
			if _, _, err = s.cmd("list-configs").run(ctx); err == nil {
				return nil
			}
			time.Sleep(100 * time.Millisecond)
		}
		return fmt.Errorf("snapperd does not answer: %w", err)
	}
	if err := s.restart(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// busConfig is a DBus configuration for a private bus on one socket that
// lets root own any name and call anything.
const busConfig = `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=%s</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="root"/>
    <allow own="*"/>
    <allow send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
  </policy>
</busconfig>
`

// startProcess starts a helper process in a process group of its own (so a
// Ctrl-C on the terminal does not stop it before the cleanup needs it),
// registers its stopping, by its process ID, with the fixtures, and returns
// a channel closed when it has exited.
func startProcess(fx *Fixtures, c *exec.Cmd, name string) (<-chan struct{}, error) {
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := c.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	done := make(chan struct{})
	go func() { _ = c.Wait(); close(done) }()
	fx.Defer(fmt.Sprintf("stop %s (pid %d)", name, c.Process.Pid), func() error {
		select {
		case <-done:
			return nil
		default:
		}
		_ = c.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
			return nil
		case <-time.After(5 * time.Second):
		}
		_ = c.Process.Kill()
		<-done
		return nil
	})
	return done, nil
}
