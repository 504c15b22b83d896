package vss

import (
	"encoding/json"
	"testing"
)

func TestContextJSON(t *testing.T) {
	for _, c := range []Context{CtxBackup, CtxFileShareBackup, CtxNASRollback, CtxAppRollback, CtxClientAccessible, CtxClientAccessibleWriters} {
		b, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		var back Context
		if err := json.Unmarshal(b, &back); err != nil || back != c {
			t.Fatalf("%s: %s → %v, %v", c, b, back, err)
		}
	}
}

func TestAttrWordsAndJSON(t *testing.T) {
	a := CtxClientAccessible.Attr() | AttrDifferential
	if got, want := a.String(), "Persistent, Client-accessible, No auto release, No writers, Differential"; got != want {
		t.Fatalf("words %q, want %q", got, want)
	}
	b, _ := json.Marshal(a)
	var back Attr
	if err := json.Unmarshal(b, &back); err != nil || back != a {
		t.Fatalf("%s → %v, %v", b, back, err)
	}
	if err := json.Unmarshal([]byte(`["Nope"]`), &back); err == nil {
		t.Fatal("unknown word accepted")
	}
}
