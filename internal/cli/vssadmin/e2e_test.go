package vssadmin_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/linuxvss/vss/internal/coordinator"
	"github.com/linuxvss/vss/internal/provider"
	"github.com/linuxvss/vss/internal/service"
	"github.com/linuxvss/vss/internal/testutil"
)

var vssadminBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "vssadmin-e2e-")
	if err != nil {
		panic(err)
	}
	vssadminBin = filepath.Join(dir, "vssadmin")
	// Built with fault injection, so that the tests can kill it at a phase.
	out, err := exec.Command("go", "build", "-tags", "faultinject", "-o", vssadminBin, "github.com/linuxvss/vss/cmd/vssadmin").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "building vssadmin: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type cli struct {
	t     *testing.T
	state string
	env   []string
}

func newCLI(t *testing.T) *cli {
	return &cli{t: t, state: t.TempDir()}
}

type result struct {
	code           int
	signaled       bool
	stdout, stderr string
}

func (c *cli) run(stdin string, args ...string) result {
	c.t.Helper()
	cmd := exec.Command(vssadminBin, append([]string{"--state-dir", c.state, "--embedded"}, args...)...)
	cmd.Env = append(os.Environ(), c.env...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			r.signaled = true
		}
	} else if err != nil {
		c.t.Fatal(err)
	}
	return r
}

func (c *cli) ok(args ...string) string {
	c.t.Helper()
	r := c.run("", args...)
	if r.code != 0 {
		c.t.Fatalf("vssadmin %s: exit %d\n%s%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

type shadowJSON struct {
	ID              string   `json:"id"`
	SetID           string   `json:"set_id"`
	OriginalVolume  string   `json:"original_volume"`
	ShadowVolume    string   `json:"shadow_volume"`
	Provider        string   `json:"provider"`
	Created         string   `json:"created"`
	Context         string   `json:"context"`
	Attributes      []string `json:"attributes"`
	CrashConsistent bool     `json:"crash_consistent"`
}

func (c *cli) shadows(args ...string) []shadowJSON {
	c.t.Helper()
	out := c.ok(append([]string{"list", "shadows", "--format", "json"}, args...)...)
	var s []shadowJSON
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		c.t.Fatalf("list shadows --format json: %v\n%s", err, out)
	}
	return s
}

func TestCLIWindowsAndGNUSyntax(t *testing.T) {
	fs := testutil.NewFS(t, "btrfs", 0)
	c := newCLI(t)
	testutil.WriteFile(t, fs.Dir, "f", []byte("one"))
	out := c.ok("create", "shadow", "/for="+fs.Dir)
	for _, want := range []string{"Successfully created shadow copy for '" + fs.Dir + "'", "Shadow Copy ID: {", "Shadow Copy Volume Name: " + fs.Dir + "/.vss/"} {
		if !strings.Contains(out, want) {
			t.Errorf("create output lacks %q:\n%s", want, out)
		}
	}
	testutil.WriteFile(t, fs.Dir, "f", []byte("two"))
	c.ok("CREATE", "Shadow", "--for", fs.Dir)
	win := c.shadows("/For=" + fs.Dir)
	gnu := c.shadows("--for", fs.Dir)
	if len(win) != 2 || len(gnu) != 2 || win[0].ID != gnu[0].ID || win[1].ID != gnu[1].ID {
		t.Fatalf("windows %v, gnu %v", win, gnu)
	}
	for _, s := range win {
		if s.ID == "" || s.SetID == "" || s.OriginalVolume != fs.Dir || s.Provider != "btrfs" || s.Created == "" ||
			s.Context != "ClientAccessibleWriters" || len(s.Attributes) == 0 || !strings.HasPrefix(s.ShadowVolume, fs.Dir+"/.vss/") {
			t.Errorf("json record %+v", s)
		}
	}
	b, err := os.ReadFile(filepath.Join(win[0].ShadowVolume, "f"))
	if err != nil || string(b) != "one" {
		t.Fatalf("first shadow holds %q %v", b, err)
	}
	text := c.ok("list", "shadows")
	for _, want := range []string{
		"Contents of shadow copy set ID: {" + win[0].SetID + "}",
		"Contained 1 shadow copies at creation time:",
		"Shadow Copy ID: {" + win[0].ID + "}",
		"Original Volume: (" + fs.Dir + `)\\?\Volume{`,
		"Shadow Copy Volume: " + win[0].ShadowVolume,
		"Provider: 'Linux btrfs snapshot provider 1.0'",
		"Type: ClientAccessibleWriters",
		"Attributes: Persistent, Client-accessible, No auto release, Differential",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("list shadows lacks %q:\n%s", want, text)
		}
	}
	// The volume can also be named by its GUID, as vssadmin prints it.
	var vols []service.VolumeInfo
	if err := json.Unmarshal([]byte(c.ok("list", "volumes", "--format", "json")), &vols); err != nil {
		t.Fatal(err)
	}
	var name string
	for _, v := range vols {
		if v.Path == fs.Dir {
			name = v.Name
		}
	}
	if name == "" {
		t.Fatalf("list volumes lacks %s: %+v", fs.Dir, vols)
	}
	if s := c.shadows("/for=" + name); len(s) != 2 {
		t.Fatalf("by volume name %s: %d shadows", name, len(s))
	}
	// Delete with a prompt: no, then yes.
	if r := c.run("n\n", "delete", "shadows", "/for="+fs.Dir, "/oldest"); r.code != 0 || len(c.shadows()) != 2 {
		t.Fatalf("answering N deleted something: %+v", r)
	}
	r := c.run("y\n", "delete", "shadows", "/for="+fs.Dir, "/oldest")
	if r.code != 0 || !strings.Contains(r.stdout, "Do you really want to delete 1 shadow copies (Y/N): [N]?") ||
		!strings.Contains(r.stdout, "Successfully deleted the 1 shadow copies.") {
		t.Fatalf("delete: %+v", r)
	}
	if s := c.shadows(); len(s) != 1 || s[0].ID != win[1].ID {
		t.Fatalf("after deleting the oldest: %+v", s)
	}
	c.ok("delete", "shadows", "--all", "--quiet")
	if out := c.ok("list", "shadows"); !strings.Contains(out, "No items found that satisfy the query.") {
		t.Fatalf("empty list: %s", out)
	}
}

func TestCLIErrors(t *testing.T) {
	fs := testutil.NewFS(t, "ext4", 0)
	c := newCLI(t)
	for _, tc := range []struct {
		args []string
		code int
		want []string
	}{
		{[]string{"create", "shadow", "/for=/no/such/volume"}, 1, []string{"VSS_E_OBJECT_NOT_FOUND", "0x80042308", "/no/such/volume"}},
		{[]string{"create", "shadow", "/for=" + fs.Dir, "/provider=btrfs"}, 1, []string{"VSS_E_VOLUME_NOT_SUPPORTED_BY_PROVIDER", "0x8004230E", "not btrfs"}},
		{[]string{"create", "shadow", "/for=" + fs.Dir, "/provider=lvm"}, 1, []string{"VSS_E_PROVIDER_NOT_REGISTERED", "0x80042304"}},
		{[]string{"create", "shadow", "/for=/proc"}, 1, []string{"VSS_E_VOLUME_NOT_SUPPORTED", "0x8004230C"}},
		{[]string{"delete", "shadows", "/shadow={12345678-1234-1234-1234-1234567890ab}", "/quiet"}, 1, []string{"VSS_E_OBJECT_NOT_FOUND"}},
		{[]string{"delete", "shadows", "/shadow=12"}, 1, []string{"E_INVALIDARG", "0x80070057", "invalid shadow copy ID"}},
		{[]string{"revert", "shadow", "/shadow={12345678-1234-1234-1234-1234567890ab}", "/quiet"}, 1, []string{"VSS_E_OBJECT_NOT_FOUND"}},
		{[]string{"add", "shadowstorage", "/for=" + fs.Dir, "/on=" + fs.Dir, "/maxsize=-3GB"}, 1, []string{"E_INVALIDARG", "invalid maximum size"}},
		{[]string{"resize", "shadowstorage", "/for=" + fs.Dir, "/on=" + fs.Dir, "/maxsize=1GB"}, 1, []string{"VSS_E_OBJECT_NOT_FOUND", "no shadow storage association"}},
		{[]string{"list", "bogus"}, 2, []string{"Invalid command", "Commands Supported"}},
	} {
		r := c.run("", tc.args...)
		if r.code != tc.code {
			t.Errorf("%v: exit %d, want %d\n%s", tc.args, r.code, tc.code, r.stderr)
		}
		for _, w := range tc.want {
			if !strings.Contains(r.stderr, w) {
				t.Errorf("%v: stderr lacks %q:\n%s", tc.args, w, r.stderr)
			}
		}
	}
	// JSON errors are JSON.
	r := c.run("", "--format", "json", "create", "shadow", "/for=/no/such")
	var je struct {
		Error struct{ Code, Name, Message string }
	}
	if err := json.Unmarshal([]byte(r.stderr), &je); err != nil || je.Error.Code != "0x80042308" || je.Error.Name != "VSS_E_OBJECT_NOT_FOUND" {
		t.Errorf("json error %q: %v", r.stderr, err)
	}
	// Nothing changed.
	if s := c.shadows(); len(s) != 0 {
		t.Fatalf("bad input made %d shadows", len(s))
	}
	if _, err := os.Stat(filepath.Join(fs.Dir, provider.StorageDirName)); !os.IsNotExist(err) {
		t.Fatalf("bad input made a storage directory: %v", err)
	}
}

func TestCLIShadowStorage(t *testing.T) {
	src := testutil.NewFS(t, "ext4", 0)
	dst := testutil.NewFS(t, "ext4", 0)
	c := newCLI(t)
	testutil.WriteFile(t, src.Dir, "data", testutil.RandomBytes(1, 4<<20))
	c.ok("add", "shadowstorage", "/for="+src.Dir, "/on="+dst.Dir, "/maxsize=10MB")
	r := c.run("", "add", "shadowstorage", "/for="+src.Dir, "/on="+dst.Dir, "/maxsize=10MB")
	if r.code != 1 || !strings.Contains(r.stderr, "VSS_E_OBJECT_ALREADY_EXISTS") {
		t.Fatalf("second add: %+v", r)
	}
	c.ok("create", "shadow", "/for="+src.Dir)
	c.ok("create", "shadow", "/for="+src.Dir)
	out := c.ok("list", "shadowstorage", "/for="+src.Dir)
	for _, w := range []string{"Shadow Copy Storage association", "For volume: (" + src.Dir + ")", "Shadow Copy Storage volume: (" + dst.Dir + ")",
		"Used Shadow Copy Storage space: 8.", "Maximum Shadow Copy Storage space: 10.000 MB", "Shadow copies: 2"} {
		if !strings.Contains(out, w) {
			t.Errorf("list shadowstorage lacks %q:\n%s", w, out)
		}
	}
	// A third copy does not fit beside the two: the oldest goes.
	out = c.ok("create", "shadow", "/for="+src.Dir)
	if !strings.Contains(out, "Deleted 1 older shadow copies to make room.") || len(c.shadows()) != 2 {
		t.Fatalf("third copy:\n%s", out)
	}
	out = c.ok("resize", "shadowstorage", "/for="+src.Dir, "/on="+dst.Dir, "/maxsize=5MB")
	if !strings.Contains(out, "1 shadow copies were deleted to fit the new maximum size.") {
		t.Fatalf("resize:\n%s", out)
	}
	// Deleting the association asks first, then deletes its shadow.
	if r := c.run("n\n", "delete", "shadowstorage", "/for="+src.Dir); r.code != 0 || len(c.shadows()) != 1 {
		t.Fatalf("answering N: %+v", r)
	}
	r = c.run("y\n", "delete", "shadowstorage", "/for="+src.Dir)
	if r.code != 0 || !strings.Contains(r.stdout, "also deletes its 1 shadow copies") || len(c.shadows()) != 0 {
		t.Fatalf("delete shadowstorage: %+v", r)
	}
	if out := c.ok("list", "shadowstorage"); !strings.Contains(out, "No items found") {
		t.Fatalf("associations left:\n%s", out)
	}
}

// probeFrozen reports the volumes that cannot be written within 3 s.
func probeFrozen(dirs ...string) []string {
	var frozen []string
	for _, d := range dirs {
		done := make(chan error, 1)
		go func() { done <- os.WriteFile(filepath.Join(d, ".probe"), []byte("x"), 0o644) }()
		select {
		case <-done:
		case <-time.After(3 * time.Second):
			frozen = append(frozen, d)
		}
	}
	return frozen
}

func storageNames(t *testing.T, dirs ...string) []string {
	var out []string
	for _, d := range dirs {
		ents, err := os.ReadDir(filepath.Join(d, provider.StorageDirName))
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			if _, err := uuid.Parse(e.Name()); err == nil || strings.HasPrefix(e.Name(), ".vss-tmp") {
				out = append(out, filepath.Join(d, provider.StorageDirName, e.Name()))
			}
		}
	}
	sort.Strings(out)
	return out
}

// TestCLIKillAtEveryPhase kills vssadmin with SIGKILL at every phase of a
// set (btrfs + reflink on XFS + a copy under a freeze), and at delete and
// revert. After each kill: nothing stays frozen, and once the next command
// has started the service, the catalog lists exactly the shadows that exist
// on disk, interrupted sets are rolled back, an interrupted delete is
// finished and an interrupted revert is completed.
func TestCLIKillAtEveryPhase(t *testing.T) {
	btrfs := testutil.NewFS(t, "btrfs", 0)
	xfs := testutil.NewFS(t, "xfs", 0)
	ext4 := testutil.NewFS(t, "ext4", 0)
	other := testutil.NewFS(t, "ext4", 0)
	vols := []string{btrfs.Dir, xfs.Dir, ext4.Dir}
	all := append(vols, other.Dir)
	for _, d := range vols {
		testutil.Populate(t, d, false)
	}
	c := newCLI(t)
	c.ok("add", "shadowstorage", "/for="+ext4.Dir, "/on="+other.Dir)
	create := []string{"create", "shadow", "/for=" + strings.Join(vols, ",")}
	check := func(t *testing.T, wantShadows int) {
		t.Helper()
		if f := probeFrozen(all...); len(f) > 0 {
			t.Fatalf("still frozen after the kill: %v", f)
		}
		s := c.shadows() // starts the service: recovery
		if len(s) != wantShadows {
			t.Fatalf("%d shadows listed, want %d", len(s), wantShadows)
		}
		var listed []string
		for _, sh := range s {
			listed = append(listed, sh.ShadowVolume)
		}
		sort.Strings(listed)
		if got := storageNames(t, all...); strings.Join(got, "\n") != strings.Join(listed, "\n") {
			t.Fatalf("the catalog and the disk disagree:\nlisted:\n%s\non disk:\n%s", strings.Join(listed, "\n"), strings.Join(got, "\n"))
		}
	}
	have := 0
	for _, p := range coordinator.Points {
		t.Run("create/"+p, func(t *testing.T) {
			c.env = []string{"VSS_FAULT=" + p + "=kill"}
			r := c.run("", create...)
			c.env = nil
			if !r.signaled {
				t.Fatalf("vssadmin was not killed at %s: exit %d\n%s", p, r.code, r.stderr)
			}
			if p == coordinator.PointCommitted {
				have += 3 // the set was in the catalog before the kill
			}
			check(t, have)
		})
	}
	t.Run("delete", func(t *testing.T) {
		s := c.shadows()
		c.env = []string{"VSS_FAULT=" + service.PointDelete + "=kill"}
		r := c.run("", "delete", "shadows", "/shadow="+s[0].ID, "/quiet")
		c.env = nil
		if !r.signaled {
			t.Fatalf("not killed: %+v", r)
		}
		have--
		check(t, have)
	})
	t.Run("revert", func(t *testing.T) {
		s := c.shadows("/for=" + ext4.Dir)
		testutil.Mutate(t, ext4.Dir, false)
		c.env = []string{"VSS_FAULT=" + service.PointRevert + "=kill"}
		r := c.run("", "revert", "shadow", "/shadow="+s[0].ID, "/quiet", "/forcedismount")
		c.env = nil
		if !r.signaled {
			t.Fatalf("not killed: %+v", r)
		}
		check(t, have) // the next start completes the revert
		if out := c.ok("query", "reverts"); !strings.Contains(out, "No items found") {
			t.Fatalf("revert still in progress:\n%s", out)
		}
		b, err := os.ReadFile(filepath.Join(ext4.Dir, "hello.txt"))
		if err != nil || string(b) != "hello, shadow\n" {
			t.Fatalf("volume after the completed revert: %q %v", b, err)
		}
	})
	// With the faults gone, everything works as before.
	c.ok(create...)
	check(t, have+3)
}
