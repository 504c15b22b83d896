// Package fsfreeze freezes and thaws filesystems (FIFREEZE/FITHAW) through a
// guard: a helper process that holds the freezes and undoes them when told
// to, when its deadline passes, or when the process that started it dies,
// even by SIGKILL. A Linux freeze has no time-out of its own, so nothing in
// this package freezes a filesystem in the calling process.
package fsfreeze

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// The ioctl numbers, _IOWR('X', 119, int) and _IOWR('X', 120, int).
const (
	FIFREEZE = 0xC0045877
	FITHAW   = 0xC0045878
)

// ErrAlreadyFrozen is returned when someone else holds a freeze.
var ErrAlreadyFrozen = errors.New("filesystem is already frozen")

// ErrNotSupported is returned for filesystems that cannot be frozen.
var ErrNotSupported = errors.New("filesystem does not support freezing")

func ioctlPath(path string, req uint) error {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	return unix.IoctlSetInt(fd, req, 0)
}

// freeze freezes the filesystem mounted at path. Only the guard calls it.
func freeze(path string) error {
	err := ioctlPath(path, FIFREEZE)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.EBUSY):
		return fmt.Errorf("freeze %s: %w", path, ErrAlreadyFrozen)
	case errors.Is(err, unix.EOPNOTSUPP), errors.Is(err, unix.ENOTTY):
		return fmt.Errorf("freeze %s: %w", path, ErrNotSupported)
	}
	return fmt.Errorf("freeze %s: %w", path, err)
}

// Thaw thaws the filesystem mounted at path. A filesystem that is not
// frozen is not an error (the kernel answers EINVAL), so Thaw can be used to
// undo a recorded freeze whose state is unknown.
func Thaw(path string) error {
	err := ioctlPath(path, FITHAW)
	if err == nil || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
		return nil
	}
	return fmt.Errorf("thaw %s: %w", path, err)
}
