package fsfreeze_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/linuxvss/vss/internal/fsfreeze"
	"github.com/linuxvss/vss/internal/testutil"
	"github.com/linuxvss/vss/internal/volume"
)

const childEnv = "FSFREEZE_TEST_CHILD"

func TestMain(m *testing.M) {
	if p := os.Getenv(childEnv); p != "" {
		// A process that freezes p through a guard and waits to be killed.
		g, err := fsfreeze.StartGuard(context.Background())
		if err != nil {
			fmt.Println("ERR", err)
			os.Exit(1)
		}
		if err := g.Freeze(context.Background(), time.Now().Add(time.Minute), p); err != nil {
			fmt.Println("ERR", err)
			os.Exit(1)
		}
		fmt.Println("FROZEN")
		time.Sleep(time.Hour)
	}
	os.Exit(m.Run())
}

// writable reports whether a file can be written under dir within d. A write
// to a frozen filesystem blocks until the thaw; the goroutine then finishes.
func writable(dir string, d time.Duration) bool {
	done := make(chan error, 1)
	go func() {
		done <- os.WriteFile(filepath.Join(dir, fmt.Sprintf("probe-%d", time.Now().UnixNano())), []byte("x"), 0o644)
	}()
	select {
	case err := <-done:
		return err == nil
	case <-time.After(d):
		return false
	}
}

func TestGuardFreezeThaw(t *testing.T) {
	fs := testutil.NewFS(t, "ext4", 64<<20)
	ctx := context.Background()
	g, err := fsfreeze.StartGuard(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if err := g.Freeze(ctx, time.Now().Add(30*time.Second), fs.Dir); err != nil {
		t.Fatal(err)
	}
	if writable(fs.Dir, 300*time.Millisecond) {
		t.Fatal("filesystem is writable while frozen")
	}
	// A second freeze of a frozen filesystem is refused as "already frozen".
	g2, err := fsfreeze.StartGuard(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := g2.Freeze(ctx, time.Now().Add(time.Second), fs.Dir); !errors.Is(err, fsfreeze.ErrAlreadyFrozen) {
		t.Errorf("second freeze: %v, want ErrAlreadyFrozen", err)
	}
	g2.Close()
	if err := g.Thaw(ctx); err != nil {
		t.Fatal(err)
	}
	if !writable(fs.Dir, 5*time.Second) {
		t.Fatal("filesystem still frozen after Thaw")
	}
}

func TestGuardDeadline(t *testing.T) {
	fs := testutil.NewFS(t, "ext4", 64<<20)
	ctx := context.Background()
	g, err := fsfreeze.StartGuard(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	start := time.Now()
	if err := g.Freeze(ctx, start.Add(400*time.Millisecond), fs.Dir); err != nil {
		t.Fatal(err)
	}
	if !writable(fs.Dir, 5*time.Second) {
		t.Fatal("guard did not thaw at its deadline")
	}
	if el := time.Since(start); el < 350*time.Millisecond {
		t.Errorf("thawed after %v, before the deadline", el)
	}
	if err := g.Thaw(ctx); !errors.Is(err, fsfreeze.ErrExpired) {
		t.Errorf("Thaw after expiry: %v, want ErrExpired", err)
	}
}

// TestGuardOutlivesKilledParent kills (SIGKILL) a process that holds a
// freeze through a guard: the guard must thaw at once.
func TestGuardOutlivesKilledParent(t *testing.T) {
	fs := testutil.NewFS(t, "ext4", 64<<20)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+fs.Dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 256)
	n, _ := out.Read(buf)
	if !strings.Contains(string(buf[:n]), "FROZEN") {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("child: %q", buf[:n])
	}
	if writable(fs.Dir, 300*time.Millisecond) {
		t.Fatal("not frozen")
	}
	killed := time.Now()
	cmd.Process.Kill()
	cmd.Wait()
	if !writable(fs.Dir, 5*time.Second) {
		t.Fatal("filesystem stayed frozen after the freezer was killed")
	}
	t.Logf("thawed %v after SIGKILL of the freezer", time.Since(killed))
}

func TestGuardRefusesRoot(t *testing.T) {
	testutil.RequireRoot(t)
	ctx := context.Background()
	g, err := fsfreeze.StartGuard(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	err = g.Freeze(ctx, time.Now().Add(time.Second), "/")
	if err == nil || !strings.Contains(err.Error(), "root filesystem") {
		t.Fatalf("freeze of /: %v", err)
	}
	// Also another directory of the root filesystem (never a path whose
	// filesystem is not certainly the root one: this test must not freeze).
	mounts, err := volume.Mounts()
	if err != nil {
		t.Fatal(err)
	}
	rootFS, _ := volume.FilesystemOf(mounts, "/")
	if etcFS, err := volume.FilesystemOf(mounts, "/etc"); err == nil && etcFS == rootFS {
		err = g.Freeze(ctx, time.Now().Add(time.Second), "/etc")
		if err == nil || !strings.Contains(err.Error(), "root filesystem") {
			t.Fatalf("freeze of /etc: %v", err)
		}
	}
}
