// Package btrfs is the btrfs provider: a shadow is a read-only snapshot of
// the volume's subvolume (redirect-on-write). Making one costs the same
// whatever the size of the data, and it is atomic: crash-consistent for
// every application. Nested subvolumes are not part of a snapshot (they show
// as empty directories), as with btrfs itself.
//
// The provider never asks for a freeze: a btrfs snapshot of a frozen btrfs
// blocks in uninterruptible sleep until the thaw.
package btrfs

import (
	"context"
	"errors"
	"os"
	"path/filepath"

	"github.com/google/uuid"
	"golang.org/x/sys/unix"

	"github.com/linuxvss/vss/internal/btrfsutil"
	"github.com/linuxvss/vss/internal/fsutil"
	"github.com/linuxvss/vss/internal/provider"
	"github.com/linuxvss/vss/internal/volume"
	"github.com/linuxvss/vss/internal/vss"
	"github.com/linuxvss/vss/internal/vsserr"
)

// ID is the provider's fixed GUID.
var ID = uuid.MustParse("5c6a0e2b-33a1-4d6e-9c0b-7f1e6a4d2c02")

// Name is the provider's short name.
const Name = "btrfs"

// Provider is the btrfs provider.
type Provider struct {
	usage provider.ExtentUsage
}

// New returns the btrfs provider.
func New() *Provider { return &Provider{} }

// Info describes the provider.
func (p *Provider) Info() provider.Info {
	return provider.Info{
		Name:            Name,
		DisplayName:     "Linux btrfs snapshot provider 1.0",
		ID:              ID,
		Type:            provider.TypeSoftware,
		Version:         "1.0.0",
		Method:          provider.RedirectOnWrite,
		CrashConsistent: true,
		Attributes:      vss.AttrDifferential,
		Description:     "read-only btrfs subvolume snapshots: constant time whatever the data size, atomic (crash-consistent)",
	}
}

// Supports accepts btrfs subvolumes whose storage is on the same filesystem.
func (p *Provider) Supports(ctx context.Context, v, sv *volume.Volume) error {
	if v.FSType != "btrfs" {
		return vsserr.New(vsserr.VSS_E_VOLUME_NOT_SUPPORTED_BY_PROVIDER, "%s is on %s, not btrfs", v.Path, v.FSType)
	}
	ok, err := btrfsutil.IsSubvolume(v.Path)
	if err != nil {
		return vsserr.Wrap(vsserr.VSS_E_VOLUME_NOT_SUPPORTED_BY_PROVIDER, err, "%s", v.Path)
	}
	if !ok {
		return vsserr.New(vsserr.VSS_E_VOLUME_NOT_SUPPORTED_BY_PROVIDER, "%s is a directory, not a btrfs subvolume (make it one, or use the reflink provider)", v.Path)
	}
	if sv.FSType != "btrfs" || !volume.SameFilesystem(v, sv) {
		return vsserr.New(vsserr.VSS_E_VOLUME_NOT_SUPPORTED_BY_PROVIDER, "the shadow storage of %s must be on the same btrfs filesystem (it is on %s)", v.Path, sv.Path)
	}
	return nil
}

// InitStorage makes the storage a subvolume of its own, so that snapshots of
// the volume do not include the shadows (like snapper's .snapshots).
func (p *Provider) InitStorage(ctx context.Context, dir string) error {
	if _, err := os.Lstat(dir); err == nil {
		return nil
	}
	if err := btrfsutil.CreateSubvolume(dir); err != nil {
		return vsserr.Wrap(vsserr.VSS_E_PROVIDER_VETO, err, "creating the shadow storage")
	}
	return os.Chmod(dir, 0o700)
}

type snapshot struct {
	p     *Provider
	req   provider.Request
	stats provider.Stats
}

// Prepare begins a shadow.
func (p *Provider) Prepare(ctx context.Context, req provider.Request) (provider.Snapshot, error) {
	if err := provider.CheckFree(&req); err != nil {
		return nil, err
	}
	return &snapshot{p: p, req: req}, nil
}

func (s *snapshot) EndPrepare(ctx context.Context) error { return nil }
func (s *snapshot) FreezeTarget() string                 { return "" }
func (s *snapshot) Writes() []string                     { return []string{s.req.Volume.Path, s.req.Storage} }
func (s *snapshot) PreCommit(ctx context.Context) error  { return nil }

// Commit takes the snapshot.
func (s *snapshot) Commit(ctx context.Context) error {
	if err := btrfsutil.Snapshot(s.req.Volume.Path, s.req.Path(), true); err != nil {
		return vsserr.Wrap(vsserr.VSS_E_PROVIDER_VETO, err, "snapshot of %s", s.req.Volume.Path)
	}
	return nil
}

func (s *snapshot) PostCommit(ctx context.Context) error { return nil }
func (s *snapshot) Abort(ctx context.Context) error      { return s.p.Delete(ctx, s.req.Path()) }
func (s *snapshot) Stats() provider.Stats                { return s.stats }

// SetWritable makes the committed snapshot writable for auto-recovery, or
// read-only again.
func (s *snapshot) SetWritable(ctx context.Context, writable bool) error {
	return btrfsutil.SetReadOnly(s.req.Path(), !writable)
}

// Delete deletes a snapshot; the filesystem gives its space back shortly
// after (btrfs cleans deleted subvolumes in the background).
func (p *Provider) Delete(ctx context.Context, path string) error {
	p.usage.Forget(path)
	if _, err := os.Lstat(path); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	ok, err := btrfsutil.IsSubvolume(path)
	if err != nil {
		return vsserr.Wrap(vsserr.VSS_E_PROVIDER_VETO, err, "deleting %s", path)
	}
	if !ok {
		// Not a snapshot (a leftover directory): remove it as such.
		if err := os.RemoveAll(path); err != nil {
			return vsserr.Wrap(vsserr.VSS_E_PROVIDER_VETO, err, "deleting %s", path)
		}
		return nil
	}
	if err := btrfsutil.DeleteSubvolume(path); err != nil && !errors.Is(err, unix.ENOENT) {
		return vsserr.Wrap(vsserr.VSS_E_PROVIDER_VETO, err, "deleting %s", path)
	}
	return nil
}

// walkOptions leaves out the excluded paths and the contents of nested
// subvolumes, which are not part of the volume (a snapshot does not have
// them).
func walkOptions(root string, exclude []string) (fsutil.WalkOptions, error) {
	wo, err := provider.WalkOptions(root, exclude)
	if err != nil {
		return wo, err
	}
	mounts := wo.SkipContents
	wo.SkipContents = func(rel string) bool {
		if mounts(rel) {
			return true
		}
		ok, _ := btrfsutil.IsSubvolume(filepath.Join(root, rel))
		return ok
	}
	return wo, nil
}

// Revert makes the volume identical to the snapshot, sharing extents with
// it (files are cloned back, not copied).
func (p *Provider) Revert(ctx context.Context, path string, v *volume.Volume, o provider.RevertOptions) error {
	if ok, err := btrfsutil.IsSubvolume(path); err != nil || !ok {
		return vsserr.New(vsserr.VSS_E_OBJECT_NOT_FOUND, "%s is not a btrfs snapshot", path)
	}
	wo, err := walkOptions(v.Path, o.Exclude)
	if err != nil {
		return err
	}
	return provider.RevertTree(ctx, path, v, wo, o, true, true)
}

// Usage returns the bytes held by the snapshots alone.
func (p *Provider) Usage(ctx context.Context, v *volume.Volume, paths []string) (int64, error) {
	wo, err := walkOptions(v.Path, provider.StorageDirs(paths))
	if err != nil {
		return 0, err
	}
	return p.usage.Usage(ctx, v.Path, wo, paths)
}
