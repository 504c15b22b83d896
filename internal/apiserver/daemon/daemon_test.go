package daemon

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/linuxvss/vss/internal/config"
)

func TestOptions(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "vssd.toml")
	if err := os.WriteFile(conf, []byte("state_dir = \"/srv/vss\"\nsocket = \"/srv/vss.sock\"\nlog_level = \"warn\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// An empty file: the defaults, whatever /etc/vss/vssd.toml says.
	empty := filepath.Join(dir, "empty.toml")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	def := config.Default()
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		// want: state dir, socket, log level
		want [3]string
	}{
		{"defaults", nil, map[string]string{"VSS_CONFIG": empty}, [3]string{def.StateDir, def.Socket, "info"}},
		{"environment", nil, map[string]string{"VSS_CONFIG": empty, "VSS_STATE_DIR": "/e/state", "VSS_SOCKET": "/e/sock"}, [3]string{"/e/state", "/e/sock", "info"}},
		{"flags over environment", []string{"--state-dir", "/f/state", "--socket", "/f/sock", "--log-level", "debug"},
			map[string]string{"VSS_CONFIG": empty, "VSS_STATE_DIR": "/e/state", "VSS_SOCKET": "/e/sock"}, [3]string{"/f/state", "/f/sock", "debug"}},
		{"configuration file", []string{"--config", conf}, nil, [3]string{"/srv/vss", "/srv/vss.sock", "warn"}},
		{"configuration from the environment", nil, map[string]string{"VSS_CONFIG": conf}, [3]string{"/srv/vss", "/srv/vss.sock", "warn"}},
		{"flags over the file", []string{"--config", conf, "--state-dir", "/f/state"}, nil, [3]string{"/f/state", "/srv/vss.sock", "warn"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// config.Load reads VSS_CONFIG itself when no file is named.
			t.Setenv("VSS_CONFIG", tc.env["VSS_CONFIG"])
			env := Env{Args: tc.args, Stderr: io.Discard, Getenv: func(k string) string { return tc.env[k] }}
			o, err := parse(env)
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := loadConfig(o)
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tc.want, [3]string{cfg.StateDir, cfg.Socket, cfg.LogLevel}); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
}

func TestRelativePathsBecomeAbsolute(t *testing.T) {
	empty := filepath.Join(t.TempDir(), "empty.toml")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	o, err := parse(Env{Args: []string{"--config", empty, "--state-dir", "state", "--socket", "run/s.sock"}, Stderr: io.Discard, Getenv: func(string) string { return "" }})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := loadConfig(o)
	if err != nil {
		t.Fatal(err)
	}
	wd, _ := os.Getwd()
	if cfg.StateDir != filepath.Join(wd, "state") || cfg.Socket != filepath.Join(wd, "run/s.sock") {
		t.Errorf("state %q socket %q, want them under %s", cfg.StateDir, cfg.Socket, wd)
	}
}

func TestSecondSignalExitsAtOnce(t *testing.T) {
	sigs := make(chan os.Signal, 2)
	exited := make(chan int, 1)
	env := Env{Signals: sigs, Exit: func(code int) { exited <- code }}
	stop, release := watchSignals(context.Background(), env, slog.New(slog.NewTextHandler(io.Discard, nil)))
	t.Cleanup(release)

	select {
	case <-stop:
		t.Fatal("stopping before any signal")
	default:
	}
	sigs <- syscall.SIGTERM
	select {
	case <-stop:
	case <-time.After(5 * time.Second):
		t.Fatal("the first signal did not stop the daemon")
	}
	select {
	case code := <-exited:
		t.Fatalf("exited (%d) at the first signal", code)
	case <-time.After(50 * time.Millisecond):
	}
	sigs <- syscall.SIGINT
	select {
	case code := <-exited:
		if code == 0 {
			t.Errorf("exit status 0 at the second signal")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the second signal did not end the process")
	}
}

func TestContextStops(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	stop, release := watchSignals(ctx, Env{Signals: make(chan os.Signal)}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	t.Cleanup(release)
	cancel()
	select {
	case <-stop:
	case <-time.After(5 * time.Second):
		t.Fatal("cancelling the context did not stop the daemon")
	}
}
