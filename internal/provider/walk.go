package provider

import (
	"path/filepath"

	"github.com/linuxvss/vss/internal/fsutil"
	"github.com/linuxvss/vss/internal/volume"
)

// StorageDirName is the name of a volume's storage directory.
const StorageDirName = ".vss"

// WalkOptions returns the walk filter of a file-level provider for volume
// root: the excluded paths (storage directories) are left out, and mount
// points below root are kept as empty directories (a shadow does not cross
// into another filesystem).
func WalkOptions(root string, exclude []string) (fsutil.WalkOptions, error) {
	ex := map[string]bool{}
	for _, p := range exclude {
		if rel, err := filepath.Rel(root, p); err == nil && rel != "." && filepath.IsLocal(rel) {
			ex[rel] = true
		}
	}
	mounts, err := volume.Mounts()
	if err != nil {
		return fsutil.WalkOptions{}, err
	}
	skip := map[string]bool{}
	for _, m := range volume.MountsUnder(mounts, root) {
		if rel, err := filepath.Rel(root, m); err == nil {
			skip[rel] = true
		}
	}
	return fsutil.WalkOptions{
		Exclude:      func(rel string) bool { return ex[rel] },
		SkipContents: func(rel string) bool { return skip[rel] },
	}, nil
}
