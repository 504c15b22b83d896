package fault

import (
	"context"
	"testing"
	"time"

	"github.com/linuxvss/vss/internal/vsserr"
)

func TestParse(t *testing.T) {
	a, err := Parse("hold=kill, delete=error:0x80042306,commit=sleep:20ms,freeze=pause,x=exit:3")
	if err != nil {
		t.Fatal(err)
	}
	if a["hold"].Kind != "kill" || a["delete"].Code != vsserr.VSS_E_PROVIDER_VETO || a["commit"].Delay != 20*time.Millisecond || a["x"].Exit != 3 {
		t.Fatalf("%+v", a)
	}
	for _, bad := range []string{"hold", "=kill", "hold=boom", "hold=kill:1", "x=error:zz", "x=sleep:-1s", "x=exit:300"} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestHook(t *testing.T) {
	h := FromSpec("a=error:0x80042314,b=sleep:1ms")
	if err := h(context.Background(), "a"); vsserr.CodeOf(err) != vsserr.VSS_E_HOLD_WRITES_TIMEOUT {
		t.Fatalf("a: %v", err)
	}
	if err := h(context.Background(), "b"); err != nil {
		t.Fatal(err)
	}
	if err := h(context.Background(), "c"); err != nil {
		t.Fatal(err)
	}
	if FromSpec("") != nil {
		t.Fatal("empty spec gives a hook")
	}
	if err := FromSpec("typo")(context.Background(), "any"); err == nil {
		t.Fatal("a bad spec must fail every point")
	}
}

func FuzzParse(f *testing.F) {
	f.Add("hold=kill,delete=error:0x80042306,commit=sleep:2s")
	f.Fuzz(func(t *testing.T, s string) {
		a, err := Parse(s)
		if err == nil {
			for p, act := range a {
				if p == "" || act.Kind == "" {
					t.Fatalf("%q gave %q=%+v", s, p, act)
				}
			}
		}
	})
}
