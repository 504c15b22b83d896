package fsutil_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/linuxvss/vss/internal/fsutil"
	"github.com/linuxvss/vss/internal/testutil"
)

func state(t *testing.T, root string) fsutil.TreeState {
	t.Helper()
	s, err := fsutil.StateOf(context.Background(), root, fsutil.WalkOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func requireSame(t *testing.T, what string, want, got fsutil.TreeState) {
	t.Helper()
	if d := fsutil.Diff(want, got); d != nil {
		t.Fatalf("%s: trees differ:\n%s", what, strings.Join(d, "\n"))
	}
}

// TestCopySync copies a tree between real filesystems of every kind, keeps
// the copy up to date with SyncTree (manifest and content modes), and checks
// that the copy is identical each time.
func TestCopySync(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		name, src, dst string
		clone          bool
	}{
		{"btrfs-to-ext4", "btrfs", "ext4", false},
		{"ext4-to-xfs", "ext4", "xfs", false},
		{"xfs-clone", "xfs", "", true},
		{"btrfs-clone", "btrfs", "", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			src := testutil.NewFS(t, c.src, 0)
			dstRoot := src.Dir
			if c.dst != "" {
				dstRoot = testutil.NewFS(t, c.dst, 0).Dir
			}
			data := filepath.Join(src.Dir, "data")
			dst := filepath.Join(dstRoot, "copy")
			if err := os.Mkdir(data, 0o755); err != nil {
				t.Fatal(err)
			}
			testutil.Populate(t, data, true)
			o := fsutil.CopyOptions{Clone: c.clone}
			manifest, _, err := fsutil.CopyTree(ctx, data, dst, o)
			if err != nil {
				t.Fatal(err)
			}
			requireSame(t, "after copy", state(t, data), state(t, dst))

			testutil.Mutate(t, data, true)
			// The racy window: entries changed just now are rechecked.
			manifest, st, err := fsutil.SyncTree(ctx, data, dst, manifest, o)
			if err != nil {
				t.Fatal(err)
			}
			requireSame(t, "after manifest sync", state(t, data), state(t, dst))
			if st.Removed == 0 || st.Files == 0 {
				t.Errorf("sync did nothing? %+v", st)
			}
			// A second sync with nothing changed copies nothing that was not racy.
			_, st2, err := fsutil.SyncTree(ctx, data, dst, manifest, o)
			if err != nil {
				t.Fatal(err)
			}
			if st2.Removed != 0 {
				t.Errorf("idle sync removed entries: %+v", st2)
			}
			// Content mode: change dst behind the manifest's back and let a
			// content comparison repair it (this is what revert does).
			testutil.WriteFile(t, dst, "hello.txt", []byte("tampered"))
			testutil.WriteFile(t, dst, "extra/file", []byte("extra"))
			if _, _, err := fsutil.SyncTree(ctx, data, dst, nil, o); err != nil {
				t.Fatal(err)
			}
			requireSame(t, "after content sync", state(t, data), state(t, dst))
		})
	}
}

func TestRangeSet(t *testing.T) {
	a := fsutil.RangeSet{{0, 10}, {20, 30}, {5, 12}}.Normalize()
	if a.Size() != 22 {
		t.Fatalf("size %d", a.Size())
	}
	b := fsutil.RangeSet{{8, 22}, {25, 26}}.Normalize()
	d := fsutil.Subtract(a, b)
	want := fsutil.RangeSet{{0, 8}, {22, 25}, {26, 30}}
	if len(d) != len(want) {
		t.Fatalf("subtract = %v", d)
	}
	for i := range d {
		if d[i] != want[i] {
			t.Fatalf("subtract = %v, want %v", d, want)
		}
	}
	if u := fsutil.Union(a, b); u.Size() != 30 {
		t.Fatalf("union = %v", u)
	}
}

// TestUpdateDataWritesOnlyWhatDiffers: a 4 KiB change in a 4 MiB file costs
// one 4 KiB write, a grown file its new tail, a shrunk one a truncation.
func TestUpdateDataWritesOnlyWhatDiffers(t *testing.T) {
	dir := t.TempDir()
	data := testutil.RandomBytes(1, 4<<20)
	src, dst := filepath.Join(dir, "src"), filepath.Join(dir, "dst")
	for _, p := range []string{src, dst} {
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	update := func() int64 {
		in, err := os.Open(src)
		if err != nil {
			t.Fatal(err)
		}
		defer in.Close()
		out, err := os.OpenFile(dst, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer out.Close()
		fi, _ := in.Stat()
		n, err := fsutil.UpdateData(context.Background(), out, in, fi.Size())
		if err != nil {
			t.Fatal(err)
		}
		a, _ := os.ReadFile(src)
		b, _ := os.ReadFile(dst)
		if string(a) != string(b) {
			t.Fatal("dst differs from src after UpdateData")
		}
		return n
	}
	if n := update(); n != 0 {
		t.Fatalf("identical files: wrote %d", n)
	}
	copy(data[3<<20+100:], "changed")
	copy(data[12345:], "another change")
	os.WriteFile(src, data, 0o644)
	if n := update(); n != 2*4096 {
		t.Fatalf("two small changes: wrote %d bytes, want 8192", n)
	}
	os.WriteFile(src, append(data, make([]byte, 10000)...), 0o644)
	if n := update(); n > 3*4096 {
		t.Fatalf("grown by 10000 bytes: wrote %d", n)
	}
	os.WriteFile(src, data[:1000], 0o644)
	if n := update(); n != 0 {
		t.Fatalf("shrunk: wrote %d", n)
	}
}
