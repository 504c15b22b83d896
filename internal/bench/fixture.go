package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/linuxvss/vss/internal/fsfreeze"
	"github.com/linuxvss/vss/internal/volume"
)

// Fixtures makes what a benchmark needs (filesystems on loop devices from
// sparse files, configurations, helper processes) inside a temporary
// directory, and remembers how to undo each step. Cleanup undoes them all,
// last made first; call it with defer, so that it also runs on an error or
// after a signal has cancelled the benchmark.
type Fixtures struct {
	dir  string
	log  *slog.Logger
	mu   sync.Mutex
	undo []undoStep
}

type undoStep struct {
	what string
	fn   func() error
}

// NewFixtures makes a temporary directory under parent for the fixtures.
func NewFixtures(parent, prefix string, log *slog.Logger) (*Fixtures, error) {
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return nil, fmt.Errorf("fixtures: %w", err)
	}
	dir, err := os.MkdirTemp(parent, prefix)
	if err != nil {
		return nil, fmt.Errorf("fixtures: %w", err)
	}
	f := &Fixtures{dir: dir, log: log}
	f.Defer("remove "+dir, func() error { return removeDir(dir) })
	return f, nil
}

// Dir returns the fixtures' directory.
func (f *Fixtures) Dir() string { return f.dir }

// Defer registers an undo step.
func (f *Fixtures) Defer(what string, fn func() error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.undo = append(f.undo, undoStep{what, fn})
}

// Cleanup runs every undo step, the last registered first, and returns the
// errors of those that failed. It may be called more than once.
func (f *Fixtures) Cleanup() error {
	var errs []error
	for {
		// One step at a time: a step may register another (a helper it had
		// to restart), which then runs next.
		f.mu.Lock()
		if len(f.undo) == 0 {
			f.mu.Unlock()
			return errors.Join(errs...)
		}
		step := f.undo[len(f.undo)-1]
		f.undo = f.undo[:len(f.undo)-1]
		f.mu.Unlock()
		f.log.Debug("cleanup", "step", step.what)
		if err := step.fn(); err != nil {
			f.log.Error("cleanup failed", "step", step.what, "err", err)
			errs = append(errs, fmt.Errorf("%s: %w", step.what, err))
		}
	}
}

// FS is a filesystem on a loop device, mounted at Dir.
type FS struct {
	Type  string
	Dir   string // mount point
	Dev   string // /dev/loopN
	Image string // backing sparse file
}

var mkfsCommand = map[string][]string{
	"btrfs": {"mkfs.btrfs", "-q", "-f"},
	"xfs":   {"mkfs.xfs", "-q", "-f", "-m", "reflink=1"},
	"ext4":  {"mkfs.ext4", "-q", "-F", "-b", "4096"},
}

// NewFS makes a filesystem of type fstype (btrfs, xfs with reflink, ext4)
// of size bytes on a loop device backed by a sparse file, and mounts it.
func (f *Fixtures) NewFS(ctx context.Context, fstype, name string, size int64) (*FS, error) {
	mkfs, ok := mkfsCommand[fstype]
	if !ok {
		return nil, fmt.Errorf("unknown filesystem type %q", fstype)
	}
	fs := &FS{Type: fstype, Image: filepath.Join(f.dir, name+".img"), Dir: filepath.Join(f.dir, name)}
	img, err := os.OpenFile(fs.Image, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("image: %w", err)
	}
	f.Defer("remove "+fs.Image, func() error { return os.Remove(fs.Image) })
	err = img.Truncate(size)
	if cerr := img.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", fs.Image, err)
	}
	if out, err := exec.CommandContext(ctx, mkfs[0], append(mkfs[1:], fs.Image)...).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("%s %s: %w: %s", mkfs[0], fs.Image, err, strings.TrimSpace(string(out)))
	}
	for try := 0; ; try++ {
		out, err := exec.CommandContext(ctx, "losetup", "--find", "--show", fs.Image).CombinedOutput()
		if err == nil {
			fs.Dev = strings.TrimSpace(string(out))
			break
		}
		if try == 20 || ctx.Err() != nil {
			return nil, fmt.Errorf("losetup %s: %w: %s", fs.Image, err, strings.TrimSpace(string(out)))
		}
		time.Sleep(100 * time.Millisecond)
	}
	f.Defer("detach "+fs.Dev, func() error { return detach(fs.Dev) })
	if err := os.Mkdir(fs.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("mount point: %w", err)
	}
	f.Defer("remove "+fs.Dir, func() error { return os.Remove(fs.Dir) })
	if err := unix.Mount(fs.Dev, fs.Dir, fstype, 0, ""); err != nil {
		return nil, fmt.Errorf("mount %s on %s: %w", fs.Dev, fs.Dir, err)
	}
	f.Defer("unmount "+fs.Dir, func() error { return unmount(fs.Dir) })
	f.log.Debug("made filesystem", "type", fstype, "dev", fs.Dev, "dir", fs.Dir, "size", FormatBytes(size))
	return fs, nil
}

// unmount thaws dir (a benchmark that was stopped may have left it frozen)
// and unmounts it, retrying while it is busy, then lazily.
func unmount(dir string) error {
	_ = fsfreeze.Thaw(dir)
	var err error
	for i := 0; i < 50; i++ {
		if err = unix.Unmount(dir, 0); err == nil || err == unix.EINVAL || err == unix.ENOENT {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	if lerr := unix.Unmount(dir, unix.MNT_DETACH); lerr != nil {
		return fmt.Errorf("unmount %s: %w (lazily: %w)", dir, err, lerr)
	}
	return fmt.Errorf("unmount %s: %w (unmounted lazily)", dir, err)
}

// detach detaches a loop device, retrying while it is busy.
func detach(dev string) error {
	var out []byte
	var err error
	for i := 0; i < 50; i++ {
		out, err = exec.Command("losetup", "-d", dev).CombinedOutput()
		if err == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("losetup -d %s: %w: %s", dev, err, strings.TrimSpace(string(out)))
}

// removeDir removes dir unless something is still mounted below it (then
// removing would reach into that filesystem).
func removeDir(dir string) error {
	mounts, err := volume.Mounts()
	if err != nil {
		return err
	}
	if under := volume.MountsUnder(mounts, dir); len(under) > 0 {
		return fmt.Errorf("not removing %s: still mounted below it: %s", dir, strings.Join(under, ", "))
	}
	return os.RemoveAll(dir)
}
