// Package fullcopy is the "copy" provider: a complete, independent copy of
// the volume (a split mirror, VSS's "Plex"). Most of the data is copied
// before the hold; inside the hold only what changed since is copied, so the
// hold follows the bytes changed, not the size of the volume. When its
// storage is on another filesystem than the volume, the coordinator freezes
// the volume's filesystem for the hold and the copy is crash-consistent;
// otherwise it is consistent for writers only. It works on any filesystem
// and on plain directories.
package fullcopy

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"

	"github.com/google/uuid"
	"golang.org/x/sys/unix"

	"github.com/linuxvss/vss/internal/fsutil"
	"github.com/linuxvss/vss/internal/provider"
	"github.com/linuxvss/vss/internal/volume"
	"github.com/linuxvss/vss/internal/vss"
	"github.com/linuxvss/vss/internal/vsserr"
)

// ID is the provider's fixed GUID.
var ID = uuid.MustParse("5c6a0e2b-33a1-4d6e-9c0b-7f1e6a4d2c01")

// Name is the provider's short name.
const Name = "copy"

// maxPasses bounds the pre-copy passes; a pass is repeated while the
// previous one still copied more than passThreshold bytes.
const (
	maxPasses     = 3
	passThreshold = 8 << 20
)

// Provider is the copy provider.
type Provider struct {
	mu    sync.Mutex
	usage map[string]int64 // shadow path → allocated bytes (copies never change)
}

// New returns the copy provider.
func New() *Provider { return &Provider{usage: map[string]int64{}} }

// Info describes the provider.
func (p *Provider) Info() provider.Info {
	return provider.Info{
		Name:        Name,
		DisplayName: "Linux complete-copy shadow copy provider 1.0",
		ID:          ID,
		Type:        provider.TypeSoftware,
		Version:     "1.0.0",
		Method:      provider.CompleteCopy,
		Attributes:  vss.AttrPlex,
		Description: "complete copy of any filesystem or directory; crash-consistent when its storage is on another filesystem that the rules let the service freeze, writer-consistent otherwise",
	}
}

// Supports accepts any local volume that is not inside a storage directory;
// its storage may be on any filesystem.
func (p *Provider) Supports(ctx context.Context, v, sv *volume.Volume) error {
	if strings.Contains(v.Path+"/", "/"+provider.StorageDirName+"/") {
		return vsserr.New(vsserr.VSS_E_VOLUME_NOT_SUPPORTED_BY_PROVIDER, "%s lies in a shadow storage directory", v.Path)
	}
	return nil
}

// InitStorage makes the storage directory.
func (p *Provider) InitStorage(ctx context.Context, dir string) error {
	return os.MkdirAll(dir, 0o700)
}

type snapshot struct {
	req      provider.Request
	walk     fsutil.WalkOptions
	manifest []fsutil.Entry
	sameFS   bool
	stats    provider.Stats
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
	return &snapshot{req: req, walk: wo, sameFS: volume.SameFilesystem(req.Volume, req.StorageVolume)}, nil
}

func (s *snapshot) opts() fsutil.CopyOptions {
	// Share extents only with another filesystem (where nothing can be
	// shared): on one filesystem, copy_file_range may reflink, and a
	// complete copy must not share its data with the volume.
	return fsutil.CopyOptions{WalkOptions: s.walk, Share: !s.sameFS}
}

// EndPrepare copies the volume, then copies again what changed meanwhile,
// until little changes.
func (s *snapshot) EndPrepare(ctx context.Context) error {
	m, st, err := fsutil.CopyTree(ctx, s.req.Volume.Path, s.req.Path(), s.opts())
	if err != nil {
		return vsserr.Wrap(vsserr.VSS_E_PROVIDER_VETO, err, "copying %s", s.req.Volume.Path)
	}
	s.stats.PreparedBytes += st.Bytes
	s.manifest = m
	for pass := 1; pass < maxPasses; pass++ {
		m, st, err = fsutil.SyncTree(ctx, s.req.Volume.Path, s.req.Path(), s.manifest, s.opts())
		if err != nil {
			return vsserr.Wrap(vsserr.VSS_E_PROVIDER_VETO, err, "copying %s", s.req.Volume.Path)
		}
		s.manifest = m
		s.stats.PreparedBytes += st.Bytes
		if st.Bytes < passThreshold {
			break
		}
	}
	return nil
}

// FreezeTarget asks for the volume's filesystem to be frozen. The
// coordinator refuses when the storage is on that filesystem (the copy is
// written there during the hold: a freeze would deadlock), or when the rules
// forbid it; the copy is then consistent for writers only.
func (s *snapshot) FreezeTarget() string { return s.req.Volume.Mount.MountPoint }

func (s *snapshot) Writes() []string { return []string{s.req.Storage} }

// SetHeld records whether the volume was frozen for the commit.
func (s *snapshot) SetHeld(frozen bool) { s.stats.Frozen = frozen }

func (s *snapshot) PreCommit(ctx context.Context) error { return nil }

// Commit copies what changed since the pre-copy.
func (s *snapshot) Commit(ctx context.Context) error {
	if s.manifest == nil {
		return vsserr.New(vsserr.VSS_E_BAD_STATE, "commit before the pre-copy")
	}
	m, st, err := fsutil.SyncTree(ctx, s.req.Volume.Path, s.req.Path(), s.manifest, s.opts())
	if err != nil {
		return vsserr.Wrap(vsserr.VSS_E_PROVIDER_VETO, err, "copying changes of %s", s.req.Volume.Path)
	}
	s.manifest = m
	s.stats.CommitBytes += st.Bytes
	s.stats.CommitEntries += st.Entries
	return nil
}

// PostCommit makes the copy durable before the catalog records it.
func (s *snapshot) PostCommit(ctx context.Context) error {
	return provider.SyncFS(s.req.Path())
}

func (s *snapshot) Abort(ctx context.Context) error {
	return provider.RemoveTree(s.req.Path())
}

func (s *snapshot) Stats() provider.Stats { return s.stats }

// Delete removes a copy.
func (p *Provider) Delete(ctx context.Context, path string) error {
	p.mu.Lock()
	delete(p.usage, path)
	p.mu.Unlock()
	return provider.RemoveTree(path)
}

// Revert copies the shadow back over the volume, touching only what differs.
func (p *Provider) Revert(ctx context.Context, path string, v *volume.Volume, o provider.RevertOptions) error {
	sameFS := false
	if sv, err := volume.Resolve(path); err == nil {
		sameFS = volume.SameFilesystem(v, sv)
	}
	wo, err := provider.WalkOptions(v.Path, o.Exclude)
	if err != nil {
		return err
	}
	return provider.RevertTree(ctx, path, v, wo, o, false, sameFS)
}

// Usage returns the bytes allocated by the copies.
func (p *Provider) Usage(ctx context.Context, v *volume.Volume, paths []string) (int64, error) {
	var total int64
	for _, path := range paths {
		p.mu.Lock()
		n, ok := p.usage[path]
		p.mu.Unlock()
		if !ok {
			var err error
			n, err = allocated(ctx, path)
			if err != nil {
				return 0, err
			}
			p.mu.Lock()
			p.usage[path] = n
			p.mu.Unlock()
		}
		total += n
	}
	return total, nil
}

func allocated(ctx context.Context, root string) (int64, error) {
	entries, err := fsutil.Walk(ctx, root, fsutil.WalkOptions{})
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return 0, nil
		}
		return 0, fmt.Errorf("measuring %s: %w", root, err)
	}
	var n int64
	seen := map[uint64]bool{}
	for i := range entries {
		st := &entries[i].Stat
		if st.Nlink > 1 && st.Mode&unix.S_IFMT != unix.S_IFDIR {
			if seen[st.Ino] {
				continue
			}
			seen[st.Ino] = true
		}
		n += st.Blocks * 512
	}
	return n, nil
}
