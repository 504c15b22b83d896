package backupfmt_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/linuxvss/vss/internal/backupfmt"
	"github.com/linuxvss/vss/internal/fsutil"
	"github.com/linuxvss/vss/internal/testutil"
)

const fsSize = 1 << 30

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func state(t testing.TB, root string) fsutil.TreeState {
	t.Helper()
	s, err := fsutil.StateOf(context.Background(), root, fsutil.WalkOptions{})
	must(t, err)
	return s
}

func requireSame(t testing.TB, what string, want, got fsutil.TreeState) {
	t.Helper()
	if d := fsutil.Diff(want, got); d != nil {
		t.Fatalf("%s: trees differ:\n%s", what, strings.Join(d, "\n"))
	}
}

// backup makes one committed version of root in target.
func backup(t testing.TB, target, root string, o backupfmt.Options) (string, backupfmt.Stats) {
	t.Helper()
	w, err := backupfmt.Create(target, o)
	must(t, err)
	t.Cleanup(func() { _ = w.Abort() })
	must(t, w.AddTree(context.Background(), root, "", nil))
	must(t, w.Commit())
	return w.ID(), w.Stats()
}

func restore(t testing.TB, target, id, dst string) {
	t.Helper()
	tg, err := backupfmt.Open(target)
	must(t, err)
	must(t, tg.Restore(context.Background(), id, nil, dst, backupfmt.RestoreOptions{Overwrite: backupfmt.Overwrite}))
}

// storedIn returns the bytes of path that version id stores itself.
func storedIn(t testing.TB, target, id, path string) int64 {
	t.Helper()
	tg, err := backupfmt.Open(target)
	must(t, err)
	m, err := tg.Manifest(id)
	must(t, err)
	var n int64
	for _, f := range m.Files {
		if f.Path == path {
			for _, r := range f.Runs {
				if r.Version == "" {
					n += r.Len
				}
			}
		}
	}
	return n
}

// dirBytes sums the sizes of the regular files under root.
func dirBytes(t testing.TB, root string) int64 {
	t.Helper()
	var n int64
	must(t, filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		fi, err := d.Info()
		if err == nil {
			n += fi.Size()
		}
		return err
	}))
	return n
}

// TestFullRestore backs up a populated tree on each filesystem and restores
// it into a new directory: everything, metadata included, comes back.
func TestFullRestore(t *testing.T) {
	for _, fstype := range []string{"ext4", "xfs", "btrfs"} {
		t.Run(fstype, func(t *testing.T) {
			fs := testutil.NewFS(t, fstype, fsSize)
			src := filepath.Join(fs.Dir, "src")
			testutil.Populate(t, src, true)
			target := filepath.Join(fs.Dir, "target")
			var last backupfmt.Progress
			w, err := backupfmt.Create(target, backupfmt.Options{Kind: backupfmt.Full, SetID: "set-1"})
			must(t, err)
			t.Cleanup(func() { _ = w.Abort() })
			must(t, w.AddTree(context.Background(), src, "", func(p backupfmt.Progress) { last = p }))
			must(t, w.AddMetadata("bcd.xml", []byte("<BackupComponents/>")))
			must(t, w.AddMetadata("writers/sqlite.xml", []byte("<WriterMetadata/>")))
			must(t, w.Commit())
			if last.BytesDone != last.BytesTotal || last.FilesDone != last.FilesTotal || last.BytesTotal == 0 {
				t.Errorf("last progress %+v: not complete", last)
			}
			dst := filepath.Join(fs.Dir, "restore")
			// A new directory: no overwrite mode matters.
			tg, err := backupfmt.Open(target)
			must(t, err)
			must(t, tg.Restore(context.Background(), w.ID(), nil, dst, backupfmt.RestoreOptions{}))
			requireSame(t, "restored full", state(t, src), state(t, dst))

			vs, err := tg.Versions()
			must(t, err)
			want := []backupfmt.Version{{ID: w.ID(), Kind: backupfmt.Full, SetID: "set-1", CanRecover: true,
				Content: []string{"bcd.xml", "writers/sqlite.xml"}}}
			if d := cmp.Diff(want, vs, cmpVersion); d != "" {
				t.Errorf("versions (-want +got):\n%s", d)
			}
			b, err := tg.Metadata(w.ID(), "writers/sqlite.xml")
			must(t, err)
			if string(b) != "<WriterMetadata/>" {
				t.Errorf("metadata: %q", b)
			}
			probs, err := tg.Verify(context.Background(), w.ID())
			must(t, err)
			if len(probs) != 0 {
				t.Errorf("verify of an intact version: %v", probs)
			}
		})
	}
}

var cmpVersion = cmp.FilterPath(func(p cmp.Path) bool {
	n := p.Last().String()
	return n == ".Time" || n == ".Files"
}, cmp.Ignore())

// changeOnePercent rewrites 1% of the file, contiguous, at an offset that
// is not block-aligned, and returns how many bytes changed.
func changeOnePercent(t testing.TB, p string, size int64) int64 {
	t.Helper()
	n := size / 100
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	must(t, err)
	_, err = f.WriteAt(testutil.RandomBytes(99, int(n)), size/3+12345)
	must(t, err)
	must(t, f.Close())
	return n
}

// TestDifferential changes 1% of a 64 MiB file and the tree in every way
// (testutil.Mutate: changed in place, grown, shrunk, deleted, added,
// renamed, metadata), makes a differential and restores full+differential.
func TestDifferential(t *testing.T) {
	for _, c := range []struct {
		fstype    string
		chunkSize int64
	}{
		{"ext4", 0},
		{"btrfs", 0},
		{"ext4", 1 << 20},
	} {
		t.Run(c.fstype+"/chunk="+map[int64]string{0: "default", 1 << 20: "1MiB"}[c.chunkSize], func(t *testing.T) {
			fs := testutil.NewFS(t, c.fstype, fsSize)
			src := filepath.Join(fs.Dir, "src")
			target := filepath.Join(fs.Dir, "target")
			testutil.Populate(t, src, true)
			const bigSize = 64 << 20
			testutil.WriteFile(t, src, "db/big.db", testutil.RandomBytes(42, bigSize))
			testutil.WriteFile(t, src, "db/grow.db", testutil.RandomBytes(43, 3<<20))
			testutil.WriteFile(t, src, "db/to-rename.db", testutil.RandomBytes(44, 4<<20))
			full, st := backup(t, target, src, backupfmt.Options{Kind: backupfmt.Full, ChunkSize: c.chunkSize})
			t.Logf("full: %+v", st)
			fullState := state(t, src)

			changed := changeOnePercent(t, filepath.Join(src, "db/big.db"), bigSize)
			f, err := os.OpenFile(filepath.Join(src, "db/grow.db"), os.O_APPEND|os.O_WRONLY, 0)
			must(t, err)
			_, err = f.Write(testutil.RandomBytes(45, 100_000))
			must(t, err)
			must(t, f.Close())
			must(t, os.Rename(filepath.Join(src, "db/to-rename.db"), filepath.Join(src, "db/renamed.db")))
			testutil.Mutate(t, src, true)

			diff, st := backup(t, target, src, backupfmt.Options{Kind: backupfmt.Differential})
			bigStored := storedIn(t, target, diff, "db/big.db")
			manifestSize := int64(0)
			if fi, err := os.Stat(filepath.Join(target, diff, backupfmt.ManifestName)); err == nil {
				manifestSize = fi.Size()
			}
			t.Logf("differential: %+v; 1%% change of db/big.db: %d bytes changed, %d stored (%.3f×); whole version: %d data bytes, manifest %d bytes",
				st, changed, bigStored, float64(bigStored)/float64(changed), dirBytes(t, filepath.Join(target, diff, "data")), manifestSize)
			if c.chunkSize == 0 && float64(bigStored) > 1.1*float64(changed) {
				t.Errorf("db/big.db: %d bytes stored for %d changed: more than 1.1×", bigStored, changed)
			}
			if n := storedIn(t, target, diff, "db/renamed.db"); n != 0 {
				t.Errorf("renamed file stored again (%d bytes): the hash index should find its blocks", n)
			}
			if n := storedIn(t, target, diff, "db/grow.db"); n > 100_000+2*max(c.chunkSize, backupfmt.DefaultChunkSize) {
				t.Errorf("grown file: %d bytes stored for 100000 appended", n)
			}
			// The stored total: the changes, a block each for the small
			// ones, and new files.
			if limit := int64(1.1*float64(changed)) + 100_000 + 8*max(c.chunkSize, backupfmt.DefaultChunkSize); st.BytesStored > limit {
				t.Errorf("differential stored %d bytes, more than %d", st.BytesStored, limit)
			}

			dst := filepath.Join(fs.Dir, "restore-diff")
			restore(t, target, diff, dst)
			requireSame(t, "full+differential", state(t, src), state(t, dst))
			// The full version is untouched.
			dst = filepath.Join(fs.Dir, "restore-full")
			restore(t, target, full, dst)
			requireSame(t, "full after the differential", fullState, state(t, dst))

			tg, err := backupfmt.Open(target)
			must(t, err)
			vs, err := tg.Versions()
			must(t, err)
			want := []backupfmt.Version{
				{ID: full, Kind: backupfmt.Full, CanRecover: true},
				{ID: diff, Kind: backupfmt.Differential, Base: full, CanRecover: true},
			}
			if d := cmp.Diff(want, vs, cmpVersion); d != "" {
				t.Errorf("versions (-want +got):\n%s", d)
			}
		})
	}
}

// TestIncrementalChain makes a full version and three incrementals, each on
// the previous one, and restores every version of the chain.
func TestIncrementalChain(t *testing.T) {
	fs := testutil.NewFS(t, "xfs", fsSize)
	src := filepath.Join(fs.Dir, "src")
	target := filepath.Join(fs.Dir, "target")
	testutil.Populate(t, src, true)
	testutil.WriteFile(t, src, "db/data.db", testutil.RandomBytes(1, 8<<20))
	ids := []string{}
	states := []fsutil.TreeState{}
	id, _ := backup(t, target, src, backupfmt.Options{Kind: backupfmt.Full})
	ids, states = append(ids, id), append(states, state(t, src))
	for i := 1; i <= 3; i++ {
		f, err := os.OpenFile(filepath.Join(src, "db/data.db"), os.O_WRONLY, 0)
		must(t, err)
		_, err = f.WriteAt(testutil.RandomBytes(int64(100+i), 5000), int64(i)<<20)
		must(t, err)
		must(t, f.Close())
		testutil.WriteFile(t, src, "added/"+string(rune('a'+i)), []byte(strings.Repeat("x", i*1000)))
		if i == 2 {
			testutil.Mutate(t, src, true)
		}
		id, st := backup(t, target, src, backupfmt.Options{Kind: backupfmt.Incremental})
		if st.BytesStored > 3*backupfmt.DefaultChunkSize+200_000 {
			t.Errorf("incremental %d stored %d bytes", i, st.BytesStored)
		}
		ids, states = append(ids, id), append(states, state(t, src))
	}
	tg, err := backupfmt.Open(target)
	must(t, err)
	vs, err := tg.Versions()
	must(t, err)
	for i, v := range vs {
		want := ""
		if i > 0 {
			want = ids[i-1]
		}
		if v.ID != ids[i] || v.Base != want || !v.CanRecover {
			t.Errorf("version %d: %+v, want id %s base %q", i, v, ids[i], want)
		}
	}
	for i, id := range ids {
		dst := filepath.Join(fs.Dir, "restore-"+id)
		restore(t, target, id, dst)
		requireSame(t, "restore of version "+id, states[i], state(t, dst))
	}
}

// TestModifyTimeSchema: a file whose size and modification time match the
// base is not read (its data is taken from the base) unless HashAll.
func TestModifyTimeSchema(t *testing.T) {
	fs := testutil.NewFS(t, "ext4", 0)
	src := filepath.Join(fs.Dir, "src")
	target := filepath.Join(fs.Dir, "target")
	testutil.WriteFile(t, src, "f", testutil.RandomBytes(1, 1<<20))
	backup(t, target, src, backupfmt.Options{Kind: backupfmt.Full})
	// Same size, same time, other content (what the schema cannot see).
	p := filepath.Join(src, "f")
	var st unix.Stat_t
	must(t, unix.Stat(p, &st))
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	must(t, err)
	_, err = f.WriteAt([]byte("sneaky"), 100)
	must(t, err)
	must(t, f.Close())
	must(t, unix.UtimesNano(p, []unix.Timespec{st.Atim, st.Mtim}))

	for _, c := range []struct {
		name                string
		hashAll             bool
		wantRead, wantStore int64
	}{
		{"by time", false, 0, 0},
		{"hash all", true, 1 << 20, backupfmt.DefaultChunkSize},
	} {
		t.Run(c.name, func(t *testing.T) {
			w, err := backupfmt.Create(target, backupfmt.Options{Kind: backupfmt.Differential, HashAll: c.hashAll})
			must(t, err)
			t.Cleanup(func() { _ = w.Abort() })
			must(t, w.AddTree(context.Background(), src, "", nil))
			got := w.Stats()
			if got.BytesRead != c.wantRead || got.BytesStored != c.wantStore {
				t.Errorf("read %d stored %d, want %d and %d", got.BytesRead, got.BytesStored, c.wantRead, c.wantStore)
			}
		})
	}
}

// TestFileRanges: with the ranges a writer reports, only the blocks they
// touch are read; the rest comes from the base unread.
func TestFileRanges(t *testing.T) {
	fs := testutil.NewFS(t, "ext4", 0)
	src := filepath.Join(fs.Dir, "src")
	target := filepath.Join(fs.Dir, "target")
	testutil.WriteFile(t, src, "db/file.mdf", testutil.RandomBytes(1, 8<<20))
	backup(t, target, src, backupfmt.Options{Kind: backupfmt.Full})
	p := filepath.Join(src, "db/file.mdf")
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	must(t, err)
	ranges := [][2]int64{{100_000, 8192}, {5 << 20, 70_000}, {8 << 20, 30_000}} // the last one grows the file
	for i, r := range ranges {
		_, err = f.WriteAt(testutil.RandomBytes(int64(10+i), int(r[1])), r[0])
		must(t, err)
	}
	must(t, f.Close())
	want := state(t, src)

	w, err := backupfmt.Create(target, backupfmt.Options{Kind: backupfmt.Differential})
	must(t, err)
	t.Cleanup(func() { _ = w.Abort() })
	must(t, w.AddFileRanges("db/file.mdf", ranges))
	must(t, w.AddTree(context.Background(), src, "", nil))
	must(t, w.Commit())
	// Blocks touched: 1 (100000), 2 (5 MiB+70000 crosses a boundary), 1 (the new tail).
	cs := int64(backupfmt.DefaultChunkSize)
	if got, wantRead := w.Stats().BytesRead, 3*cs+30_000; got != wantRead {
		t.Errorf("read %d bytes, want %d (the blocks of the ranges only)", got, wantRead)
	}
	dst := filepath.Join(fs.Dir, "restore")
	restore(t, target, w.ID(), dst)
	requireSame(t, "restore of the partial-file version", want, state(t, dst))
}

// TestInterrupted: an aborted backup and one that never commits (a crash)
// leave no complete version; the older ones stay intact.
func TestInterrupted(t *testing.T) {
	fs := testutil.NewFS(t, "btrfs", 0)
	src := filepath.Join(fs.Dir, "src")
	target := filepath.Join(fs.Dir, "target")
	testutil.Populate(t, src, true)
	first, _ := backup(t, target, src, backupfmt.Options{Kind: backupfmt.Full})
	want := state(t, src)
	testutil.Mutate(t, src, true)

	// Aborted.
	w, err := backupfmt.Create(target, backupfmt.Options{Kind: backupfmt.Incremental})
	must(t, err)
	must(t, w.AddTree(context.Background(), src, "", nil))
	must(t, w.Abort())
	if _, err := os.Stat(filepath.Join(target, "."+w.ID()+".partial")); !os.IsNotExist(err) {
		t.Errorf("aborted version left its partial directory: %v", err)
	}
	// Crashed: cancelled in the middle, never committed nor aborted.
	ctx, cancel := context.WithCancel(context.Background())
	w2, err := backupfmt.Create(target, backupfmt.Options{Kind: backupfmt.Incremental})
	must(t, err)
	n := 0
	err = w2.AddTree(ctx, src, "", func(backupfmt.Progress) {
		if n++; n == 50 {
			cancel()
		}
	})
	if err == nil {
		t.Fatal("cancelled AddTree succeeded")
	}
	w2.Crash()
	// Also a writer that wrote its data and would commit, but dies first.
	w3, err := backupfmt.Create(target, backupfmt.Options{Kind: backupfmt.Incremental})
	must(t, err)
	must(t, w3.AddTree(context.Background(), src, "", nil))
	// While it lives, no other backup writes to the target.
	if _, err := backupfmt.Create(target, backupfmt.Options{Kind: backupfmt.Incremental}); !errors.Is(err, backupfmt.ErrTargetBusy) {
		t.Fatalf("a second backup to a target in use: %v, want ErrTargetBusy", err)
	}
	w3.Crash()
	partials, _ := filepath.Glob(filepath.Join(target, ".*.partial"))
	if len(partials) != 1 {
		t.Errorf("partial versions left by the interrupted backups: %v, want the crashed one", partials)
	}

	tg, err := backupfmt.Open(target)
	must(t, err)
	vs, err := tg.Versions()
	must(t, err)
	if d := cmp.Diff([]backupfmt.Version{{ID: first, Kind: backupfmt.Full, CanRecover: true}}, vs, cmpVersion); d != "" {
		t.Errorf("versions after interrupted backups (-want +got):\n%s", d)
	}
	probs, err := tg.Verify(context.Background(), first)
	must(t, err)
	if len(probs) != 0 {
		t.Errorf("first version damaged: %v", probs)
	}
	dst := filepath.Join(fs.Dir, "restore")
	restore(t, target, first, dst)
	requireSame(t, "first version after interrupted backups", want, state(t, dst))
	// A later backup gets a later id than the leftover partial ones.
	next, _ := backup(t, target, src, backupfmt.Options{Kind: backupfmt.Incremental})
	if next <= w3.ID() {
		t.Errorf("new version %s sorts before the interrupted %s", next, w3.ID())
	}
	// ... and removed what the interrupted ones left.
	if partials, _ := filepath.Glob(filepath.Join(target, ".*.partial")); len(partials) != 0 {
		t.Errorf("partial versions left after the next backup: %v", partials)
	}
}

// TestCorruption damages one stored byte: Verify names the file, Restore
// refuses it (and restores the rest).
func TestCorruption(t *testing.T) {
	fs := testutil.NewFS(t, "ext4", 0)
	src := filepath.Join(fs.Dir, "src")
	target := filepath.Join(fs.Dir, "target")
	testutil.Populate(t, src, true)
	full, _ := backup(t, target, src, backupfmt.Options{Kind: backupfmt.Full})
	testutil.WriteFile(t, src, "later.txt", []byte("later"))
	incr, _ := backup(t, target, src, backupfmt.Options{Kind: backupfmt.Incremental})

	data := filepath.Join(target, full, "data", "big.bin")
	f, err := os.OpenFile(data, os.O_RDWR, 0)
	must(t, err)
	b := make([]byte, 1)
	_, err = f.ReadAt(b, 2<<20+17)
	must(t, err)
	b[0] ^= 0x40
	_, err = f.WriteAt(b, 2<<20+17)
	must(t, err)
	must(t, f.Close())

	tg, err := backupfmt.Open(target)
	must(t, err)
	for _, id := range []string{full, incr} { // the incremental takes big.bin from the full
		probs, err := tg.Verify(context.Background(), id)
		must(t, err)
		if len(probs) != 1 || probs[0].Path != "big.bin" || !strings.Contains(probs[0].Message, "sha256 mismatch") {
			t.Errorf("verify %s: %v, want one problem with big.bin", id, probs)
		}
		dst := filepath.Join(fs.Dir, "restore-"+id)
		err = tg.Restore(context.Background(), id, nil, dst, backupfmt.RestoreOptions{})
		if err == nil || !strings.Contains(err.Error(), "restore big.bin") {
			t.Errorf("restore %s of a damaged file: %v, want an error naming big.bin", id, err)
		}
		if _, err := os.Lstat(filepath.Join(dst, "big.bin")); !os.IsNotExist(err) {
			t.Errorf("the damaged file was restored anyway: %v", err)
		}
		if _, err := os.Stat(filepath.Join(dst, "hello.txt")); err != nil {
			t.Errorf("the intact files were not restored: %v", err)
		}
	}
	// A damaged manifest: the version cannot be recovered, nor the one on it.
	mp := filepath.Join(target, full, backupfmt.ManifestName)
	mb, err := os.ReadFile(mp)
	must(t, err)
	must(t, os.WriteFile(mp, append(mb, ' '), 0o600))
	vs, err := tg.Versions()
	must(t, err)
	for _, v := range vs {
		if v.CanRecover || v.Problem == "" {
			t.Errorf("version %s with a damaged manifest in its chain: %+v", v.ID, v)
		}
	}
	probs, err := tg.Verify(context.Background(), full)
	must(t, err)
	if len(probs) != 1 || probs[0].Path != backupfmt.ManifestName {
		t.Errorf("verify with a damaged manifest: %v", probs)
	}
}

// TestOverwriteModes restores a file over an existing one in each mode.
func TestOverwriteModes(t *testing.T) {
	tmp := t.TempDir()
	src := filepath.Join(tmp, "src")
	target := filepath.Join(tmp, "target")
	testutil.WriteFile(t, src, "a/f.txt", []byte("from the backup"))
	id, _ := backup(t, target, src, backupfmt.Options{Kind: backupfmt.Full})
	tg, err := backupfmt.Open(target)
	must(t, err)
	for _, c := range []struct {
		name string
		mode backupfmt.OverwriteMode
		want map[string]string
	}{
		{"overwrite", backupfmt.Overwrite, map[string]string{"a/f.txt": "from the backup"}},
		{"skip", backupfmt.Skip, map[string]string{"a/f.txt": "existing"}},
		{"create-copy", backupfmt.CreateCopy, map[string]string{"a/f.txt": "existing", "a/f.txt.restored-" + id: "from the backup"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dst := filepath.Join(tmp, c.name)
			testutil.WriteFile(t, dst, "a/f.txt", []byte("existing"))
			must(t, tg.Restore(context.Background(), id, []string{"a/f.txt"}, dst, backupfmt.RestoreOptions{Overwrite: c.mode}))
			got := map[string]string{}
			must(t, filepath.WalkDir(dst, func(p string, d os.DirEntry, err error) error {
				if err != nil || d.IsDir() {
					return err
				}
				b, err := os.ReadFile(p)
				rel, _ := filepath.Rel(dst, p)
				got[rel] = string(b)
				return err
			}))
			if d := cmp.Diff(c.want, got); d != "" {
				t.Errorf("after restore (-want +got):\n%s", d)
			}
		})
	}
}

// TestRestoreRefusesEscape: items with "..", and a symbolic link in the
// restore directory where a directory of the backup goes, are refused.
func TestRestoreRefusesEscape(t *testing.T) {
	tmp := t.TempDir()
	src := filepath.Join(tmp, "src")
	target := filepath.Join(tmp, "target")
	testutil.WriteFile(t, src, "dir/f.txt", []byte("x"))
	id, _ := backup(t, target, src, backupfmt.Options{Kind: backupfmt.Full})
	tg, err := backupfmt.Open(target)
	must(t, err)
	for _, item := range []string{"../etc", "dir/../../x", "nope"} {
		if err := tg.Restore(context.Background(), id, []string{item}, filepath.Join(tmp, "d1"), backupfmt.RestoreOptions{}); err == nil {
			t.Errorf("item %q accepted", item)
		}
	}
	dst := filepath.Join(tmp, "d2")
	outside := filepath.Join(tmp, "outside")
	must(t, os.MkdirAll(dst, 0o755))
	must(t, os.MkdirAll(outside, 0o755))
	must(t, os.Symlink(outside, filepath.Join(dst, "dir")))
	err = tg.Restore(context.Background(), id, []string{"dir/f.txt"}, dst, backupfmt.RestoreOptions{Overwrite: backupfmt.Overwrite})
	if err == nil || !strings.Contains(err.Error(), "refusing") {
		t.Errorf("restore through a symbolic link: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(outside, "f.txt")); !os.IsNotExist(err) {
		t.Errorf("a file was written outside the restore directory")
	}
}

// TestMetadataNames: only bcd.xml and writers/NAME are metadata slots.
func TestMetadataNames(t *testing.T) {
	w, err := backupfmt.Create(t.TempDir(), backupfmt.Options{Kind: backupfmt.Copy})
	must(t, err)
	t.Cleanup(func() { _ = w.Abort() })
	for _, c := range []struct {
		name string
		ok   bool
	}{
		{"bcd.xml", true}, {"writers/pg.xml", true}, {"writers/a/b", false}, {"../x", false},
		{"manifest.json", false}, {"writers/..", false}, {"data/x", false}, {"bcd.xml", false}, // twice
	} {
		if err := w.AddMetadata(c.name, []byte("x")); (err == nil) != c.ok {
			t.Errorf("AddMetadata(%q): %v, want ok=%v", c.name, err, c.ok)
		}
	}
}

// TestRecoverWithStandardTools runs the shell recipe of
// docs/backup-format.md (jq, dd, sha256sum) on a differential version and
// compares the file it gets back.
func TestRecoverWithStandardTools(t *testing.T) {
	testutil.RequireTools(t, "jq", "dd", "bash", "sha256sum")
	doc, err := os.ReadFile("../../docs/backup-format.md")
	must(t, err)
	_, rest, ok := strings.Cut(string(doc), "<!-- recover.sh -->\n```sh\n")
	script, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		t.Fatal("docs/backup-format.md has no recover.sh block")
	}
	tmp := t.TempDir()
	src := filepath.Join(tmp, "src")
	target := filepath.Join(tmp, "target")
	testutil.WriteFile(t, src, "db/x.db", testutil.RandomBytes(1, 5<<20+77))
	backup(t, target, src, backupfmt.Options{Kind: backupfmt.Full})
	changeOnePercent(t, filepath.Join(src, "db/x.db"), 5<<20+77)
	time.Sleep(10 * time.Millisecond)
	id, _ := backup(t, target, src, backupfmt.Options{Kind: backupfmt.Differential})
	out := filepath.Join(tmp, "x.db")
	cmd := exec.Command("bash", "-euo", "pipefail", "-c", script)
	cmd.Env = append(os.Environ(), "TARGET="+target, "VERSION="+id, "FILE=db/x.db", "OUT="+out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("recover.sh: %v\n%s", err, b)
	}
	want, err := os.ReadFile(filepath.Join(src, "db/x.db"))
	must(t, err)
	got, err := os.ReadFile(out)
	must(t, err)
	if string(want) != string(got) {
		t.Errorf("recover.sh got back a different file (%d bytes, want %d)", len(got), len(want))
	}
}

// files returns the regular files below root with their contents.
func files(t *testing.T, root string) map[string]string {
	t.Helper()
	got := map[string]string{}
	must(t, filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(root, p)
		got[rel] = string(b)
		return err
	}))
	return got
}

// TestKeepRenameMirror: Keep leaves entries (and refused directories with
// all below them) out of a version; Rename restores a subtree under
// another name beside the original; Mirror removes, from the directories
// it names, what the version does not have, and nothing elsewhere.
func TestKeepRenameMirror(t *testing.T) {
	tmp := t.TempDir()
	src := filepath.Join(tmp, "src")
	target := filepath.Join(tmp, "target")
	for p, c := range map[string]string{"db/main/base/1": "one", "db/main/postmaster.pid": "123", "db/main/skip/x": "x",
		"db/other.txt": "other", "app.db": "sqlite", "app.db-wal": "wal", "apps.txt": "not the db"} {
		testutil.WriteFile(t, src, p, []byte(c))
	}
	w, err := backupfmt.Create(target, backupfmt.Options{Kind: backupfmt.Full, Keep: func(p string, dir bool) bool {
		switch {
		case p == "db/main/postmaster.pid", p == "db/main/skip":
			return false
		case p == "db", p == "db/main", strings.HasPrefix(p, "db/main/"), strings.HasPrefix(p, "app.db"):
			return true
		}
		return false
	}})
	must(t, err)
	must(t, w.AddTree(context.Background(), src, "", nil))
	must(t, w.Commit())
	id := w.ID()
	tg, err := backupfmt.Open(target)
	must(t, err)
	m, err := tg.Manifest(id)
	must(t, err)
	var paths []string
	for _, f := range m.Files {
		paths = append(paths, f.Path)
	}
	if d := cmp.Diff([]string{".", "app.db", "app.db-wal", "db", "db/main", "db/main/base", "db/main/base/1"}, paths); d != "" {
		t.Fatalf("version holds (-want +got):\n%s", d)
	}

	// Under new names next to the originals: the originals stay.
	rename := func(p string) string {
		switch {
		case p == "db/main" || strings.HasPrefix(p, "db/main/"):
			return "db/copy" + strings.TrimPrefix(p, "db/main")
		case strings.HasPrefix(p, "app.db"):
			return "new.db" + strings.TrimPrefix(p, "app.db")
		}
		return p
	}
	must(t, tg.Restore(context.Background(), id, nil, src, backupfmt.RestoreOptions{Overwrite: backupfmt.Overwrite, Rename: rename}))
	want := map[string]string{"db/main/base/1": "one", "db/main/postmaster.pid": "123", "db/main/skip/x": "x",
		"db/other.txt": "other", "app.db": "sqlite", "app.db-wal": "wal", "apps.txt": "not the db",
		"db/copy/base/1": "one", "new.db": "sqlite", "new.db-wal": "wal"}
	if d := cmp.Diff(want, files(t, src)); d != "" {
		t.Fatalf("after a restore under new names (-want +got):\n%s", d)
	}
	if err := tg.Restore(context.Background(), id, nil, filepath.Join(tmp, "esc"), backupfmt.RestoreOptions{Rename: func(p string) string { return "../" + p }}); err == nil {
		t.Fatal("a Rename leading out of the target was accepted")
	}

	// In place, mirrored in db/main only: later files there go, db/other.txt
	// and apps.txt (not mirrored) stay.
	testutil.WriteFile(t, src, "db/main/base/2", []byte("later"))
	testutil.WriteFile(t, src, "db/main/base/1", []byte("changed"))
	testutil.WriteFile(t, src, "db/later.txt", []byte("later, outside"))
	mirror := func(p string) bool { return p == "db/main" || strings.HasPrefix(p, "db/main/") }
	must(t, tg.Restore(context.Background(), id, nil, src, backupfmt.RestoreOptions{Overwrite: backupfmt.Overwrite, Mirror: mirror}))
	want["db/later.txt"] = "later, outside"
	delete(want, "db/main/postmaster.pid")
	delete(want, "db/main/skip/x")
	if d := cmp.Diff(want, files(t, src)); d != "" {
		t.Fatalf("after a mirrored restore in place (-want +got):\n%s", d)
	}
}
