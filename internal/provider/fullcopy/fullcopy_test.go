package fullcopy_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/linuxvss/vss/internal/provider/fullcopy"
	"github.com/linuxvss/vss/internal/provider/providertest"
	"github.com/linuxvss/vss/internal/testutil"
)

func TestConformance(t *testing.T) {
	t.Run("ext4-storage-on-other-fs", func(t *testing.T) {
		providertest.Run(t, func(t *testing.T) providertest.Env {
			src := testutil.NewFS(t, "ext4", 0)
			dst := testutil.NewFS(t, "ext4", 0)
			return providertest.Env{Provider: fullcopy.New(), Volume: src.Dir, StorageOn: dst.Dir, Xattrs: true}
		})
	})
	t.Run("xfs-storage-on-same-fs", func(t *testing.T) {
		providertest.Run(t, func(t *testing.T) providertest.Env {
			src := testutil.NewFS(t, "xfs", 0)
			return providertest.Env{Provider: fullcopy.New(), Volume: src.Dir, Xattrs: true}
		})
	})
	t.Run("btrfs-directory-storage-on-xfs", func(t *testing.T) {
		providertest.Run(t, func(t *testing.T) providertest.Env {
			src := testutil.NewFS(t, "btrfs", 0)
			dst := testutil.NewFS(t, "xfs", 0)
			dir := filepath.Join(src.Dir, "data")
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			return providertest.Env{Provider: fullcopy.New(), Volume: dir, StorageOn: dst.Dir, Xattrs: true}
		})
	})
}
