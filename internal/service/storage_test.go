package service_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"

	"github.com/linuxvss/vss/internal/btrfsutil"
	"github.com/linuxvss/vss/internal/service"
	"github.com/linuxvss/vss/internal/testutil"
	"github.com/linuxvss/vss/internal/vss"
	"github.com/linuxvss/vss/internal/vsserr"
)

// TestMaxShadowCount: past the maximum number of shadows per volume, the
// oldest go first.
func TestMaxShadowCount(t *testing.T) {
	btrfs := testutil.NewFS(t, "btrfs", 0)
	ts := open(t, func(o *service.Options) { o.Config.MaxShadowCopies = 3 })
	var made []uuid.UUID
	for i := 0; i < 5; i++ {
		res := ts.create(btrfs.Dir)
		made = append(made, res.Shadows[0].ID)
		if i >= 3 && len(res.Evicted) != 1 {
			t.Errorf("shadow %d evicted %d", i, len(res.Evicted))
		}
	}
	if d := cmp.Diff(made[2:], ids(ts.shadows())); d != "" {
		t.Fatalf("kept shadows (-want +got):\n%s", d)
	}
	ts.requireConsistent(btrfs.Dir)
}

// TestCopyStorageLimit: complete copies of 8 MiB in storage limited to
// 20 MB: two fit, the third pushes out the oldest; a limit smaller than one
// copy gives VSS_E_INSUFFICIENT_STORAGE and changes nothing.
func TestCopyStorageLimit(t *testing.T) {
	src := testutil.NewFS(t, "ext4", 0)
	dst := testutil.NewFS(t, "ext4", 0)
	ts := open(t, nil)
	ctx := context.Background()
	testutil.WriteFile(t, src.Dir, "data", testutil.RandomBytes(1, 8<<20))
	if err := ts.AddShadowStorage(ctx, src.Dir, dst.Dir, mustMax(t, "20MB")); err != nil {
		t.Fatal(err)
	}
	a := ts.create(src.Dir).Shadows[0]
	b := ts.create(src.Dir).Shadows[0]
	res := ts.create(src.Dir)
	if len(res.Evicted) != 1 || res.Evicted[0].ID != a.ID {
		t.Fatalf("third copy evicted %v, want the oldest %s", ids(res.Evicted), a.ID)
	}
	if d := cmp.Diff([]uuid.UUID{b.ID, res.Shadows[0].ID}, ids(ts.shadows())); d != "" {
		t.Fatalf("kept (-want +got):\n%s", d)
	}
	st, err := ts.ListShadowStorage(ctx, src.Dir, "")
	if err != nil || len(st) != 1 {
		t.Fatalf("list shadowstorage: %v %v", st, err)
	}
	if st[0].Used < 16<<20 || st[0].Used > 20<<20 || st[0].Max != 20<<20 || st[0].Shadows != 2 {
		t.Fatalf("storage %+v", st[0])
	}
	// Shrinking the limit below one copy deletes every shadow; then no
	// new copy fits.
	evicted, err := ts.ResizeShadowStorage(ctx, src.Dir, dst.Dir, mustMax(t, "5MB"))
	if err != nil || len(evicted) != 2 {
		t.Fatalf("resize to 5MB: evicted %d, %v", len(evicted), err)
	}
	_, err = ts.CreateShadowSet(ctx, service.CreateRequest{Volumes: []string{src.Dir}, Context: vss.CtxClientAccessible})
	requireCode(t, err, vsserr.VSS_E_INSUFFICIENT_STORAGE)
	if n := len(ts.shadows()); n != 0 {
		t.Fatalf("%d shadows", n)
	}
	if e := storageEntries(t, dst.Dir); len(e) != 0 {
		t.Fatalf("left %v", e)
	}
	ts.requireConsistent(src.Dir, dst.Dir)
}

// TestDifferentialGrowth: btrfs shadows grow as the volume changes; once
// their measured usage passes the limit, the oldest go.
func TestDifferentialGrowth(t *testing.T) {
	btrfs := testutil.NewFS(t, "btrfs", 0)
	ts := open(t, nil)
	ctx := context.Background()
	if err := ts.AddShadowStorage(ctx, btrfs.Dir, btrfs.Dir, mustMax(t, "12MB")); err != nil {
		t.Fatal(err)
	}
	write := func(seed int64) {
		testutil.WriteFile(t, btrfs.Dir, "data", testutil.RandomBytes(seed, 8<<20))
		fd, _ := os.Open(btrfs.Dir)
		fd.Sync()
		fd.Close()
		btrfsutil.Sync(btrfs.Dir)
	}
	write(1)
	a := ts.create(btrfs.Dir).Shadows[0]
	write(2) // a now holds 8 MiB alone
	b := ts.create(btrfs.Dir).Shadows[0]
	if n := len(ts.shadows()); n != 2 {
		t.Fatalf("%d shadows", n)
	}
	write(3) // b holds 8 MiB too: 16 MiB > 12 MB
	evicted, err := ts.EnforceLimits(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(evicted) != 1 || evicted[0].ID != a.ID {
		t.Fatalf("evicted %v, want the oldest %s", ids(evicted), a.ID)
	}
	if d := cmp.Diff([]uuid.UUID{b.ID}, ids(ts.shadows())); d != "" {
		t.Fatalf("kept (-want +got):\n%s", d)
	}
	st, err := ts.ListShadowStorage(ctx, "", btrfs.Dir)
	if err != nil || len(st) != 1 || st[0].Used < 7<<20 || st[0].Used > 9<<20 {
		t.Fatalf("storage after eviction: %+v %v", st, err)
	}
	ts.requireConsistent(btrfs.Dir)
}

func TestStorageAssociations(t *testing.T) {
	src := testutil.NewFS(t, "ext4", 0)
	dst := testutil.NewFS(t, "ext4", 0)
	btrfs := testutil.NewFS(t, "btrfs", 0)
	ts := open(t, nil)
	ctx := context.Background()
	if err := ts.AddShadowStorage(ctx, src.Dir, dst.Dir, mustMax(t, "10%")); err != nil {
		t.Fatal(err)
	}
	requireCode(t, ts.AddShadowStorage(ctx, src.Dir, dst.Dir, mustMax(t, "1GB")), vsserr.VSS_E_OBJECT_ALREADY_EXISTS)
	// btrfs snapshots cannot live on another filesystem; the copy provider
	// can keep them there, so the association is allowed …
	if err := ts.AddShadowStorage(ctx, btrfs.Dir, dst.Dir, mustMax(t, "UNBOUNDED")); err != nil {
		t.Fatal(err)
	}
	// … and a forced btrfs provider is refused.
	_, err := ts.CreateShadowSet(ctx, service.CreateRequest{Volumes: []string{btrfs.Dir}, Provider: "btrfs", Context: vss.CtxClientAccessible})
	requireCode(t, err, vsserr.VSS_E_VOLUME_NOT_SUPPORTED_BY_PROVIDER)
	requireCode(t, ts.AddShadowStorage(ctx, "/nonexistent", dst.Dir, mustMax(t, "1GB")), vsserr.VSS_E_OBJECT_NOT_FOUND)
	st, err := ts.ListShadowStorage(ctx, "", "")
	if err != nil || len(st) != 2 {
		t.Fatalf("%v %v", st, err)
	}
	for _, s := range st {
		if s.ForPath == src.Dir && (s.MaxSpec != "10%" || s.Max == 0 || s.Max > s.OnTotal/9) {
			t.Errorf("10%% association: %+v", s)
		}
	}
	_, err = ts.ListShadowStorage(ctx, src.Dir, dst.Dir)
	requireCode(t, err, vsserr.E_INVALIDARG)
	// Deleting an association deletes its shadows.
	ts.create(src.Dir)
	ts.create(src.Dir)
	held, err := ts.StorageShadows(ctx, src.Dir, "")
	if err != nil || len(held) != 2 {
		t.Fatalf("held %d, %v", len(held), err)
	}
	deleted, err := ts.DeleteShadowStorage(ctx, src.Dir, "")
	if err != nil || len(deleted) != 2 {
		t.Fatalf("deleted %d, %v", len(deleted), err)
	}
	if n := len(ts.shadows()); n != 0 {
		t.Fatalf("%d shadows left", n)
	}
	_, err = ts.DeleteShadowStorage(ctx, src.Dir, "")
	requireCode(t, err, vsserr.VSS_E_OBJECT_NOT_FOUND)
	_, err = ts.ResizeShadowStorage(ctx, src.Dir, dst.Dir, mustMax(t, "1GB"))
	requireCode(t, err, vsserr.VSS_E_OBJECT_NOT_FOUND)
	ts.requireConsistent(src.Dir, dst.Dir, btrfs.Dir)
	// Every change is in the audit log.
	b, err := os.ReadFile(filepath.Join(ts.opts.Config.StateDir, "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	for _, op := range []string{`"op":"add-shadowstorage"`, `"op":"delete-shadowstorage"`, `"op":"create-shadow-set"`, `"result":"failure"`, `"code":"VSS_E_OBJECT_ALREADY_EXISTS (0x8004230D)"`} {
		if !strings.Contains(string(b), op) {
			t.Errorf("audit log lacks %s", op)
		}
	}
}
