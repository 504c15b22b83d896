package btrfs_test

import (
	"path/filepath"
	"testing"

	"github.com/linuxvss/vss/internal/provider/btrfs"
	"github.com/linuxvss/vss/internal/provider/providertest"
	"github.com/linuxvss/vss/internal/testutil"
)

func TestConformance(t *testing.T) {
	t.Run("top-level-subvolume", func(t *testing.T) {
		providertest.Run(t, func(t *testing.T) providertest.Env {
			fs := testutil.NewFS(t, "btrfs", 0)
			ext4 := testutil.NewFS(t, "ext4", 0)
			return providertest.Env{Provider: btrfs.New(), Volume: fs.Dir, Xattrs: true, Unsupported: ext4.Dir}
		})
	})
	t.Run("subvolume", func(t *testing.T) {
		providertest.Run(t, func(t *testing.T) providertest.Env {
			fs := testutil.NewFS(t, "btrfs", 0)
			sv := filepath.Join(fs.Dir, "home")
			testutil.Subvolume(t, sv)
			// A plain directory of btrfs is not a subvolume: refused.
			testutil.WriteFile(t, fs.Dir, "plain/x", []byte("x"))
			return providertest.Env{Provider: btrfs.New(), Volume: sv, Xattrs: true, Unsupported: filepath.Join(fs.Dir, "plain")}
		})
	})
}
