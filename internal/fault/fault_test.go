package fault

import (
	"context"
	"os"
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
	if b, err := Parse("delete=error:0x8004230F#2"); err != nil || b["delete"].Times != 2 || b["delete"].Code != vsserr.VSS_E_UNEXPECTED_PROVIDER_ERROR {
		t.Fatalf("a count: %+v %v", b, err)
	}
	for _, bad := range []string{"hold", "=kill", "hold=boom", "hold=kill:1", "x=error:zz", "x=sleep:-1s", "x=exit:300", "x=error#0", "x=kill#", "x=error#z"} {
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
	once := FromSpec("a=error#1")
	if err := once(context.Background(), "a"); err == nil {
		t.Fatal("a=error#1 did not fail the first time")
	}
	if err := once(context.Background(), "a"); err != nil {
		t.Fatalf("a=error#1 failed a second time: %v", err)
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

func TestFromFile(t *testing.T) {
	path := t.TempDir() + "/spec"
	h := FromFile(path)
	if err := h(context.Background(), "a"); err != nil {
		t.Fatalf("no file: %v", err)
	}
	write := func(spec string) {
		t.Helper()
		if err := os.WriteFile(path+".new", []byte(spec), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(path+".new", path); err != nil {
			t.Fatal(err)
		}
	}
	write("a=error:0x80042314\n")
	if err := h(context.Background(), "a"); vsserr.CodeOf(err) != vsserr.VSS_E_HOLD_WRITES_TIMEOUT {
		t.Fatalf("a: %v", err)
	}
	if err := h(context.Background(), "b"); err != nil {
		t.Fatalf("b: %v", err)
	}
	write("b=error")
	if err := h(context.Background(), "a"); err != nil {
		t.Fatalf("a after the change: %v", err)
	}
	if err := h(context.Background(), "b"); vsserr.CodeOf(err) != vsserr.VSS_E_PROVIDER_VETO {
		t.Fatalf("b after the change: %v", err)
	}
	write("typo")
	if err := h(context.Background(), "any"); err == nil {
		t.Fatal("a bad spec must fail every point")
	}
	write("b=error#1")
	if err := h(context.Background(), "b"); err == nil {
		t.Fatal("b=error#1 did not fail the first time")
	}
	if err := h(context.Background(), "b"); err != nil {
		t.Fatalf("b=error#1 failed a second time: %v", err)
	}
	write("b=error#1") // the same spec written again: the count starts again
	if err := h(context.Background(), "b"); err == nil {
		t.Fatal("the file written again did not start the count again")
	}
	if err := h(context.Background(), "b"); err != nil {
		t.Fatalf("b=error#1 failed a second time: %v", err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := h(context.Background(), "b"); err != nil {
		t.Fatalf("no file: %v", err)
	}
	write("b=error#1")
	if err := h(context.Background(), "b"); err == nil {
		t.Fatal("the file written after a removal did not start the count again")
	}
	write("")
	if err := h(context.Background(), "b"); err != nil {
		t.Fatalf("empty file: %v", err)
	}
}

func TestJoin(t *testing.T) {
	if Join(nil, nil) != nil {
		t.Fatal("Join of nothing is not nil")
	}
	h := Join(FromSpec("a=error:0x80042314"), nil, FromSpec("b=error"))
	if err := h(context.Background(), "a"); vsserr.CodeOf(err) != vsserr.VSS_E_HOLD_WRITES_TIMEOUT {
		t.Fatalf("a: %v", err)
	}
	if err := h(context.Background(), "b"); vsserr.CodeOf(err) != vsserr.VSS_E_PROVIDER_VETO {
		t.Fatalf("b: %v", err)
	}
	if err := h(context.Background(), "c"); err != nil {
		t.Fatal(err)
	}
}

func TestWait(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("VSS_FAULT_DIR", dir)
	h := FromSpec("p=wait:10s")
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- h(context.Background(), "p") }()
	for {
		if _, err := os.Stat(dir + "/p"); err == nil {
			break
		}
		if time.Since(start) > 5*time.Second {
			t.Fatal("the point was not notified")
		}
		time.Sleep(time.Millisecond)
	}
	select {
	case err := <-done:
		t.Fatalf("wait returned before the go-ahead: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	if err := os.WriteFile(dir+"/p.go", nil, 0o644); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("wait did not end after the go-ahead")
	}
	if err := FromSpec("p=wait:10ms")(context.Background(), "q"); err != nil {
		t.Fatal(err)
	}
	t.Setenv("VSS_FAULT_DIR", t.TempDir())
	start = time.Now()
	if err := FromSpec("p=wait:30ms")(context.Background(), "p"); err != nil || time.Since(start) < 30*time.Millisecond {
		t.Fatalf("wait without a go-ahead: %v after %v", err, time.Since(start))
	}
}
