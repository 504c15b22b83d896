package catalog

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"

	"github.com/linuxvss/vss/internal/vss"
)

func sampleShadow(path, owner string) Shadow {
	return Shadow{
		ID: uuid.New(), SetID: uuid.New(), SetCount: 2, VolumeID: uuid.New(), VolumePath: path,
		VolumeName: `\\?\Volume{` + uuid.NewString() + `}\`, ShadowPath: path + "/.vss/x", StoragePath: path + "/.vss",
		StorageVolumeID: uuid.New(), Provider: "copy", ProviderID: uuid.New(), Created: time.Now(),
		Context: vss.CtxAppRollback, Attributes: vss.CtxAppRollback.Attr() | vss.AttrPlex,
		OriginatingMachine: "host", ServiceMachine: "host", CrashConsistent: true, Owner: owner,
	}
}

// TestShadowJSON: the fast encoder writes what encoding/json writes.
func TestShadowJSON(t *testing.T) {
	for _, s := range []Shadow{
		sampleShadow("/srv/data", ""),
		sampleShadow("/weird\"\\\n\t\x01<&>\u2028\xff/path", "session"),
	} {
		fast := AppendShadowJSON(nil, &s)
		slow, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(fast, slow) {
			t.Errorf("fast:\n%s\nencoding/json:\n%s", fast, slow)
		}
		var back Shadow
		if err := json.Unmarshal(fast, &back); err != nil {
			t.Fatal(err)
		}
		if !json.Valid(fast) {
			t.Fatal("invalid JSON")
		}
		if s.VolumePath == "/srv/data" && !cmp.Equal(s, back) {
			t.Errorf("round trip (-want +got):\n%s", cmp.Diff(s, back))
		}
	}
}

func FuzzShadowJSON(f *testing.F) {
	f.Add("/srv", "o", "host")
	f.Fuzz(func(t *testing.T, path, owner, host string) {
		s := sampleShadow(path, owner)
		s.OriginatingMachine = host
		fast := AppendShadowJSON(nil, &s)
		slow, _ := json.Marshal(s)
		if !bytes.Equal(fast, slow) {
			t.Fatalf("fast %s\nslow %s", fast, slow)
		}
	})
}
