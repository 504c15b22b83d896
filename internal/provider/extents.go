package provider

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"

	"github.com/linuxvss/vss/internal/fsutil"
)

// ExtentUsage measures the storage that extent-sharing shadows (btrfs
// snapshots, reflink clones) hold: the device ranges used by the shadows'
// data, minus those the live volume still uses. It is what deleting all of
// them would give back. Shadows never change, so their ranges are cached.
type ExtentUsage struct {
	mu    sync.Mutex
	cache map[string]fsutil.RangeSet
}

// Usage returns the bytes held by the shadows at paths beyond the live tree
// at live (walked with wo).
func (u *ExtentUsage) Usage(ctx context.Context, live string, wo fsutil.WalkOptions, paths []string) (int64, error) {
	if len(paths) == 0 {
		return 0, nil
	}
	var shadows fsutil.RangeSet
	for _, p := range paths {
		u.mu.Lock()
		rs, ok := u.cache[p]
		u.mu.Unlock()
		if !ok {
			var err error
			rs, err = fsutil.TreeExtents(ctx, p, fsutil.WalkOptions{})
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			if err != nil {
				return 0, err
			}
			u.mu.Lock()
			if u.cache == nil {
				u.cache = map[string]fsutil.RangeSet{}
			}
			u.cache[p] = rs
			u.mu.Unlock()
		}
		shadows = fsutil.Union(shadows, rs)
	}
	liveSet, err := fsutil.TreeExtents(ctx, live, wo)
	if err != nil {
		return 0, err
	}
	return int64(fsutil.Subtract(shadows, liveSet).Size()), nil
}

// Forget drops the cached ranges of a deleted shadow.
func (u *ExtentUsage) Forget(path string) {
	u.mu.Lock()
	delete(u.cache, path)
	u.mu.Unlock()
}

// StorageDirs returns the directories that hold the shadows at paths, which
// a walk of the live volume leaves out.
func StorageDirs(paths []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, p := range paths {
		d := filepath.Dir(p)
		if !seen[d] {
			seen[d] = true
			out = append(out, d)
		}
	}
	return out
}
