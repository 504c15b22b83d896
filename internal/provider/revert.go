package provider

import (
	"context"
	"errors"
	"os"

	"golang.org/x/sys/unix"

	"github.com/linuxvss/vss/internal/fsutil"
	"github.com/linuxvss/vss/internal/volume"
	"github.com/linuxvss/vss/internal/vsserr"
)

// RevertTree makes the volume v identical to the shadow tree at path,
// touching only what differs, and makes the result durable. wo filters the
// volume (storage directories, mount points and nested subvolumes stay as
// they are). clone shares extents with the shadow (same filesystem only);
// sameFS says both are on one filesystem.
func RevertTree(ctx context.Context, path string, v *volume.Volume, wo fsutil.WalkOptions, o RevertOptions, clone, sameFS bool) error {
	if _, err := os.Stat(path); err != nil {
		return vsserr.Wrap(vsserr.VSS_E_OBJECT_NOT_FOUND, err, "shadow copy data")
	}
	_, _, err := fsutil.SyncTree(ctx, path, v.Path, nil, fsutil.CopyOptions{
		WalkOptions: wo, Clone: clone, Share: true, SameFilesystem: sameFS, Progress: o.Progress,
	})
	if err != nil {
		return vsserr.Wrap(vsserr.VSS_E_PROVIDER_VETO, err, "reverting %s", v.Path)
	}
	return SyncFS(v.Path)
}

// CheckFree returns VSS_E_OBJECT_ALREADY_EXISTS when something is already
// at the request's shadow path (Prepare never overwrites).
func CheckFree(req *Request) error {
	if _, err := os.Lstat(req.Path()); err == nil {
		return vsserr.New(vsserr.VSS_E_OBJECT_ALREADY_EXISTS, "%s already exists", req.Path())
	}
	return nil
}

// RemoveTree removes a file-level shadow (or what an aborted one left); a
// path that does not exist is not an error.
func RemoveTree(path string) error {
	if err := os.RemoveAll(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return vsserr.Wrap(vsserr.VSS_E_PROVIDER_VETO, err, "removing %s", path)
	}
	return nil
}

// SyncFS writes the dirty data of the filesystem holding path to disk.
func SyncFS(path string) error {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return unix.Syncfs(fd)
}
