package reflink_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/linuxvss/vss/internal/provider/providertest"
	"github.com/linuxvss/vss/internal/provider/reflink"
	"github.com/linuxvss/vss/internal/testutil"
)

func TestConformance(t *testing.T) {
	t.Run("xfs", func(t *testing.T) {
		providertest.Run(t, func(t *testing.T) providertest.Env {
			fs := testutil.NewFS(t, "xfs", 0)
			ext4 := testutil.NewFS(t, "ext4", 0)
			return providertest.Env{Provider: reflink.New(), Volume: fs.Dir, Xattrs: true, Unsupported: ext4.Dir}
		})
	})
	t.Run("btrfs-directory", func(t *testing.T) {
		providertest.Run(t, func(t *testing.T) providertest.Env {
			fs := testutil.NewFS(t, "btrfs", 0)
			dir := filepath.Join(fs.Dir, "data")
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			return providertest.Env{Provider: reflink.New(), Volume: dir, StorageOn: fs.Dir, Xattrs: true}
		})
	})
}
