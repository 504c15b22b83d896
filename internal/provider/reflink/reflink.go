// Package reflink is the reflink provider: a shadow is a tree of
// copy-on-write clones (FICLONE) of every file of the volume, on XFS
// (reflink=1) or btrfs. Each file is cloned atomically, but the files are
// cloned one after the other during the commit, so the shadow is consistent
// for writers (which are frozen meanwhile) and NOT crash-consistent across
// files for applications that are not writers. The commit time grows with
// the number of files, not with their size.
package reflink

import (
	"context"
	"os"

	"github.com/google/uuid"

	"github.com/linuxvss/vss/internal/fsutil"
	"github.com/linuxvss/vss/internal/provider"
	"github.com/linuxvss/vss/internal/volume"
	"github.com/linuxvss/vss/internal/vss"
	"github.com/linuxvss/vss/internal/vsserr"
)

// ID is the provider's fixed GUID.
var ID = uuid.MustParse("5c6a0e2b-33a1-4d6e-9c0b-7f1e6a4d2c03")

// Name is the provider's short name.
const Name = "reflink"

// Provider is the reflink provider.
type Provider struct {
	usage provider.ExtentUsage
}

// New returns the reflink provider.
func New() *Provider { return &Provider{} }

// Info describes the provider.
func (p *Provider) Info() provider.Info {
	return provider.Info{
		Name:        Name,
		DisplayName: "Linux reflink clone shadow copy provider 1.0",
		ID:          ID,
		Type:        provider.TypeSoftware,
		Version:     "1.0.0",
		Method:      provider.CopyOnWrite,
		Attributes:  vss.AttrDifferential,
		Description: "copy-on-write clones (FICLONE) of every file on XFS with reflink or btrfs; each file is atomic, the set of files is writer-consistent, not crash-consistent",
	}
}

// Supports accepts volumes on a reflink-capable filesystem whose storage is
// on the same filesystem.
func (p *Provider) Supports(ctx context.Context, v, sv *volume.Volume) error {
	if !v.Reflink {
		what := v.FSType
		if v.FSType == "xfs" {
			what = "xfs without reflink (mkfs.xfs -m reflink=1)"
		}
		return vsserr.New(vsserr.VSS_E_VOLUME_NOT_SUPPORTED_BY_PROVIDER, "%s is on %s, which cannot clone files", v.Path, what)
	}
	if !volume.SameFilesystem(v, sv) {
		return vsserr.New(vsserr.VSS_E_VOLUME_NOT_SUPPORTED_BY_PROVIDER, "the shadow storage of %s must be on its filesystem to share extents (it is on %s)", v.Path, sv.Path)
	}
	return nil
}

// InitStorage makes the storage directory.
func (p *Provider) InitStorage(ctx context.Context, dir string) error {
	return os.MkdirAll(dir, 0o700)
}

type snapshot struct {
	req   provider.Request
	walk  fsutil.WalkOptions
	stats provider.Stats
}

// Prepare begins a shadow.
func (p *Provider) Prepare(ctx context.Context, req provider.Request) (provider.Snapshot, error) {
	if err := provider.CheckFree(&req); err != nil {
		return nil, err
	}
	wo, err := provider.WalkOptions(req.Volume.Path, req.Exclude)
	if err != nil {
		return nil, err
	}
	return &snapshot{req: req, walk: wo}, nil
}

// EndPrepare has nothing to do: the clones are made in the commit (a walk
// beforehand to warm the caches cost more than it saved: the clone itself
// reads each file's extents anyway).
func (s *snapshot) EndPrepare(ctx context.Context) error { return nil }

func (s *snapshot) FreezeTarget() string                { return "" }
func (s *snapshot) Writes() []string                    { return []string{s.req.Volume.Path, s.req.Storage} }
func (s *snapshot) PreCommit(ctx context.Context) error { return nil }

// Commit clones every file.
func (s *snapshot) Commit(ctx context.Context) error {
	_, st, err := fsutil.CopyTree(ctx, s.req.Volume.Path, s.req.Path(), fsutil.CopyOptions{WalkOptions: s.walk, Clone: true})
	s.stats.CommitBytes += st.Bytes
	s.stats.CommitEntries += st.Entries
	if err != nil {
		return vsserr.Wrap(vsserr.VSS_E_PROVIDER_VETO, err, "cloning %s", s.req.Volume.Path)
	}
	return nil
}

// PostCommit makes the clones durable before the catalog records them.
func (s *snapshot) PostCommit(ctx context.Context) error { return provider.SyncFS(s.req.Path()) }

func (s *snapshot) Abort(ctx context.Context) error { return provider.RemoveTree(s.req.Path()) }
func (s *snapshot) Stats() provider.Stats           { return s.stats }

// Delete removes a shadow.
func (p *Provider) Delete(ctx context.Context, path string) error {
	p.usage.Forget(path)
	return provider.RemoveTree(path)
}

// Revert clones the shadow's files back over the volume where they differ.
func (p *Provider) Revert(ctx context.Context, path string, v *volume.Volume, o provider.RevertOptions) error {
	wo, err := provider.WalkOptions(v.Path, o.Exclude)
	if err != nil {
		return err
	}
	return provider.RevertTree(ctx, path, v, wo, o, true, true)
}

// Usage returns the bytes held by the clones alone.
func (p *Provider) Usage(ctx context.Context, v *volume.Volume, paths []string) (int64, error) {
	wo, err := provider.WalkOptions(v.Path, provider.StorageDirs(paths))
	if err != nil {
		return 0, err
	}
	return p.usage.Usage(ctx, v.Path, wo, paths)
}
