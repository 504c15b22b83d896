package vssadmin

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"

	"github.com/linuxvss/vss/internal/catalog"
	"github.com/linuxvss/vss/internal/config"
	"github.com/linuxvss/vss/internal/provider"
	"github.com/linuxvss/vss/internal/service"
)

func TestNormalize(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"create shadow /for=/mnt/data", "create shadow --for=/mnt/data"},
		{"CREATE SHADOW /For=/mnt/data /AutoRetry=5", "create shadow --for=/mnt/data --autoretry=5"},
		{"Delete Shadows /For=/x /Oldest /Quiet", "delete shadows --for=/x --oldest --quiet"},
		{"delete shadows --for /all --all", "delete shadows --for /all --all"},
		{"list shadows --For=/mnt", "list shadows --for=/mnt"},
		{"resize shadowstorage /for=/a /on=/b /maxsize=20%", "resize shadowstorage --for=/a --on=/b --maxsize=20%"},
		{"list shadows /format=json", "list shadows --format=json"},
		{"list shadows /for /quiet", "list shadows --for /quiet"},
		{"list shadows /mnt/data", "list shadows /mnt/data"}, // not an option: left for the parser to refuse
		{"revert shadow /shadow={6b5c2f1e-0000-4000-8000-000000000000} /ForceDismount", "revert shadow --shadow={6b5c2f1e-0000-4000-8000-000000000000} --forcedismount"},
	} {
		got := strings.Join(Normalize(strings.Fields(c.in)), " ")
		if got != c.want {
			t.Errorf("Normalize(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

// recorder is a Backend that records what the parser asked for and answers
// with nothing. It stands in for the service only in the parser tests
// below, which check how arguments are understood, never what the service
// does.
type recorder struct {
	calls []string
}

func (r *recorder) rec(s string) { r.calls = append(r.calls, s) }
func (r *recorder) CreateShadowSet(ctx context.Context, req service.CreateRequest) (*service.CreateResult, error) {
	r.rec("create " + strings.Join(req.Volumes, "|") + " provider=" + req.Provider + " retry=" + req.AutoRetry.String())
	return &service.CreateResult{}, nil
}
func (r *recorder) ListShadows(ctx context.Context, sel service.Selection) ([]catalog.Shadow, error) {
	r.rec("list-shadows for=" + sel.For)
	return nil, nil
}
func (r *recorder) Select(ctx context.Context, sel service.Selection) ([]catalog.Shadow, error) {
	r.rec("select")
	return []catalog.Shadow{{ID: uuid.New()}}, nil
}
func (r *recorder) DeleteShadows(ctx context.Context, ids []uuid.UUID) (int, error) {
	r.rec("delete")
	return len(ids), nil
}
func (r *recorder) RevertShadow(ctx context.Context, id uuid.UUID, force bool) error {
	r.rec("revert")
	return nil
}
func (r *recorder) QueryReverts(ctx context.Context, f string) ([]catalog.Revert, error) {
	r.rec("query-reverts")
	return nil, nil
}
func (r *recorder) ListVolumes(ctx context.Context) ([]service.VolumeInfo, error) {
	r.rec("list-volumes")
	return nil, nil
}
func (r *recorder) ListProviders(ctx context.Context) ([]provider.Info, error) {
	r.rec("list-providers")
	return nil, nil
}
func (r *recorder) ListWriters(ctx context.Context) ([]service.WriterStatus, error) {
	r.rec("list-writers")
	return nil, nil
}
func (r *recorder) AddShadowStorage(ctx context.Context, f, o string, m config.MaxSize) error {
	r.rec("add " + f + " " + o + " " + m.String())
	return nil
}
func (r *recorder) ResizeShadowStorage(ctx context.Context, f, o string, m config.MaxSize) ([]catalog.Shadow, error) {
	r.rec("resize " + f + " " + o + " " + m.String())
	return nil, nil
}
func (r *recorder) ListShadowStorage(ctx context.Context, f, o string) ([]service.StorageInfo, error) {
	r.rec("list-storage")
	return nil, nil
}
func (r *recorder) StorageShadows(ctx context.Context, f, o string) ([]catalog.Shadow, error) {
	return nil, nil
}
func (r *recorder) DeleteShadowStorage(ctx context.Context, f, o string) ([]catalog.Shadow, error) {
	r.rec("delete-storage " + f)
	return nil, nil
}
func (r *recorder) Close() error { return nil }

func run(args string, stdin string) (code int, calls []string, stdout, stderr string) {
	r := &recorder{}
	var out, errb bytes.Buffer
	code = Main(context.Background(), Env{
		Args: strings.Fields(args), Stdin: strings.NewReader(stdin), Stdout: &out, Stderr: &errb,
		Open: func(ctx context.Context, g *Globals) (Backend, error) { return r, nil },
	})
	return code, r.calls, out.String(), errb.String()
}

func TestParsing(t *testing.T) {
	for _, c := range []struct {
		args  string
		stdin string
		code  int
		calls []string
		err   string
	}{
		{"create shadow /for=/a", "", 0, []string{"create /a provider= retry=0s"}, ""},
		{"Create Shadow --for /a --for=/b /provider=copy /autoretry=2", "", 0, []string{"create /a|/b provider=copy retry=2m0s"}, ""},
		{"create shadow /for=/a,/b", "", 0, []string{"create /a|/b provider= retry=0s"}, ""},
		{"create shadow", "", ExitUsage, nil, "Invalid command"},
		{"create shadow /for=/a /autoretry=-1", "", ExitError, nil, "0x80070057"},
		{"create shadow /for=/a /autoretry=soon", "", ExitError, nil, "E_INVALIDARG"},
		{"create", "", ExitUsage, nil, "needs an object"},
		{"frobnicate", "", ExitUsage, nil, "Invalid command"},
		{"list shadows /bogus=1", "", ExitUsage, nil, "Invalid command"},
		{"list shadows /mnt/data", "", ExitUsage, nil, "Invalid command"},
		{"list shadows /shadow=nope", "", ExitError, nil, "invalid shadow copy ID"},
		{"list shadows /set={12345678-1234-1234-1234-1234567890ab}", "", 0, []string{"list-shadows for="}, ""},
		{"list shadowstorage /for=/a /on=/b", "", ExitUsage, nil, "cannot be given together"},
		{"delete shadows /for=/a", "", ExitUsage, nil, "exactly one of"},
		{"delete shadows /oldest", "", ExitUsage, nil, "/oldest needs /for"},
		{"delete shadows /all /oldest /for=/a", "", ExitUsage, nil, "exactly one of"},
		{"delete shadows /all", "n\n", 0, []string{"select"}, ""},
		{"delete shadows /all", "", 0, []string{"select"}, ""},
		{"delete shadows /all", "y\n", 0, []string{"select", "delete"}, ""},
		{"delete shadows /all /quiet", "", 0, []string{"select", "delete"}, ""},
		{"add shadowstorage /for=/a /on=/b /maxsize=10GB", "", 0, []string{"add /a /b 10.000 GB"}, ""},
		{"add shadowstorage /for=/a /on=/b /maxsize=ten", "", ExitError, nil, "invalid maximum size"},
		{"add shadowstorage /for=/a", "", ExitUsage, nil, "/on=PATH"},
		{"resize shadowstorage /for=/a /on=/b /maxsize=UNBOUNDED", "", 0, []string{"resize /a /b UNBOUNDED"}, ""},
		{"resize shadowstorage /for=/a /on=/b /maxsize=0%", "", ExitError, nil, "percentage"},
		{"revert shadow", "", ExitUsage, nil, "/shadow=ID"},
		{"revert shadow /shadow={12345678-1234-1234-1234-1234567890ab}", "n\n", 0, []string{"select"}, ""},
		{"revert shadow /shadow={12345678-1234-1234-1234-1234567890ab} /quiet /forcedismount", "", 0, []string{"select", "revert"}, ""},
		{"query reverts", "", 0, []string{"query-reverts"}, ""},
		{"list writers", "", 0, []string{"list-writers"}, ""},
		{"LIST PROVIDERS", "", 0, []string{"list-providers"}, ""},
		{"list volumes --format=yaml", "", ExitUsage, nil, "--format"},
	} {
		code, calls, _, stderr := run(c.args, c.stdin)
		if code != c.code {
			t.Errorf("%q: exit %d, want %d (stderr %q)", c.args, code, c.code, stderr)
		}
		if d := cmp.Diff(c.calls, calls); d != "" {
			t.Errorf("%q: calls (-want +got):\n%s", c.args, d)
		}
		if c.err != "" && !strings.Contains(stderr, c.err) {
			t.Errorf("%q: stderr %q lacks %q", c.args, stderr, c.err)
		}
	}
}

// FuzzArgs feeds arbitrary command lines to the parser: it must never
// panic, must exit 0, 1 or 2, and a refused command line must not reach any
// call that changes something.
func FuzzArgs(f *testing.F) {
	for _, s := range []string{
		"create shadow /for=/a", "delete shadows /all /quiet", "resize shadowstorage /for=/a /on=/b /maxsize=20%",
		"revert shadow /shadow={12345678-1234-1234-1234-1234567890ab} /quiet", "list shadows --format json /for=x",
		"add shadowstorage --for /a --on /b --maxsize 1.5GB", "LIST shadowstorage /ON=/b",
	} {
		f.Add(s, "y\n")
	}
	f.Fuzz(func(t *testing.T, args, stdin string) {
		code, calls, _, _ := run(args, stdin)
		if code != ExitOK && code != ExitError && code != ExitUsage {
			t.Fatalf("%q: exit %d", args, code)
		}
		if code != ExitOK {
			for _, c := range calls {
				for _, mut := range []string{"create", "delete", "revert", "add", "resize"} {
					if strings.HasPrefix(c, mut) {
						t.Fatalf("%q failed (exit %d) after calling %q", args, code, c)
					}
				}
			}
		}
	})
}
