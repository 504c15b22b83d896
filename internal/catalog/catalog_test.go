package catalog

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"

	"github.com/linuxvss/vss/internal/vss"
	"github.com/linuxvss/vss/internal/vsserr"
)

func TestSetLifecycle(t *testing.T) {
	path := filepath.Join(t.TempDir(), "catalog.db")
	c, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	set := uuid.New()
	a, b := uuid.New(), uuid.New()
	if err := c.BeginSet(Pending{SetID: set, Started: time.Now(), Items: []PendingItem{{ShadowID: a}, {ShadowID: b}}}); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Microsecond)
	shadows := []Shadow{
		{ID: a, SetID: set, Created: now, Context: vss.CtxClientAccessible, Attributes: vss.CtxClientAccessible.Attr() | vss.AttrDifferential, VolumePath: "/a"},
		{ID: b, SetID: set, Created: now, Context: vss.CtxClientAccessible, VolumePath: "/b"},
	}
	if err := c.CommitSet(Set{ID: set, Created: now, Count: 2, Shadows: []uuid.UUID{a, b}}, shadows, Commit{Volumes: []Volume{{ID: uuid.New(), Path: "/a"}}}); err != nil {
		t.Fatal(err)
	}
	p, _ := c.Pending()
	if len(p) != 0 {
		t.Fatal("the journal outlived the commit")
	}
	// Reopen: everything is there as written.
	c.Close()
	if c, err = Open(path); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got, err := c.Shadows()
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(shadows, got); d != "" {
		t.Fatalf("(-want +got):\n%s", d)
	}
	// Deleting one shadow keeps the set; deleting both removes it.
	moved, err := c.BeginDelete([]uuid.UUID{a})
	if err != nil || len(moved) != 1 {
		t.Fatal(err)
	}
	sets, _ := c.Sets()
	if len(sets) != 1 || len(sets[0].Shadows) != 1 {
		t.Fatalf("sets %+v", sets)
	}
	if _, err := c.BeginDelete([]uuid.UUID{b, uuid.New()}); vsserr.CodeOf(err) != vsserr.VSS_E_OBJECT_NOT_FOUND {
		t.Fatalf("deleting an unknown shadow: %v", err)
	}
	// The failed transaction changed nothing.
	if s, _ := c.Shadows(); len(s) != 1 {
		t.Fatalf("%d shadows after a failed delete", len(s))
	}
	if _, err := c.BeginDelete([]uuid.UUID{b}); err != nil {
		t.Fatal(err)
	}
	if sets, _ := c.Sets(); len(sets) != 0 {
		t.Fatal("an empty set stayed")
	}
	d, _ := c.Deleting()
	if len(d) != 2 {
		t.Fatalf("%d in the deletion journal", len(d))
	}
	for _, s := range d {
		if err := c.FinishDelete(s.ID); err != nil {
			t.Fatal(err)
		}
	}
	if d, _ := c.Deleting(); len(d) != 0 {
		t.Fatal("journal not cleared")
	}
}

func TestSchemaVersion(t *testing.T) {
	path := filepath.Join(t.TempDir(), "catalog.db")
	c, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SetMeta("version", "99"); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if _, err := Open(path); err == nil {
		t.Fatal("a catalog of another schema version was opened")
	}
}

func TestShadowCodec(t *testing.T) {
	s := Shadow{
		ID: uuid.New(), SetID: uuid.New(), SetCount: 3, VolumeID: uuid.New(), VolumePath: "/srv/dätä with space",
		VolumeName: `\\?\Volume{x}\`, ShadowPath: "/srv/.vss/x", StoragePath: "/srv/.vss", StorageVolumeID: uuid.New(),
		Provider: "btrfs", ProviderID: uuid.New(), Created: time.Unix(1795624559, 414127288).UTC(),
		Context: vss.CtxClientAccessible, Attributes: vss.CtxClientAccessible.Attr() | vss.AttrPlex,
		OriginatingMachine: "a", ServiceMachine: "b", ExposedName: "/mnt/x", ExposedPath: "/mnt/x", CrashConsistent: true, Owner: "s1",
	}
	b := marshalShadow(&s)
	got, err := unmarshalShadow(b)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(s, got); d != "" {
		t.Fatalf("(-want +got):\n%s", d)
	}
	for i := 0; i < len(b); i++ {
		if _, err := unmarshalShadow(b[:i]); err == nil {
			t.Fatalf("a record cut at %d bytes decoded", i)
		}
	}
	if _, err := unmarshalShadow(append(b, 0)); err == nil {
		t.Fatal("trailing bytes accepted")
	}
}

func FuzzShadowCodec(f *testing.F) {
	f.Add(marshalShadow(&Shadow{ID: uuid.New(), VolumePath: "/x", Created: time.Unix(1, 2)}))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := unmarshalShadow(b)
		if err != nil {
			return
		}
		back, err := unmarshalShadow(marshalShadow(&s))
		if err != nil || !cmp.Equal(s, back) {
			t.Fatalf("a decoded record does not survive a round trip: %v", err)
		}
	})
}
