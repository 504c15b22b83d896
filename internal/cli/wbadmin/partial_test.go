package wbadmin_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/linuxvss/vss/internal/apiserver"
	"github.com/linuxvss/vss/internal/config"
	"github.com/linuxvss/vss/internal/service"
	"github.com/linuxvss/vss/internal/testutil"
	"github.com/linuxvss/vss/pkg/vssmeta"
	"github.com/linuxvss/vss/pkg/writer"
)

// serveVssd runs the service and its API on a socket in this process, as
// vssd does, until the test ends.
func serveVssd(t *testing.T) (socket, stateDir string) {
	t.Helper()
	dir := t.TempDir()
	cfg := config.Default()
	cfg.StateDir = filepath.Join(dir, "state")
	cfg.Socket = filepath.Join(dir, "vssd.sock")
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	s, err := service.Open(context.Background(), service.Options{Config: cfg, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	l, err := apiserver.Listen(cfg.Socket)
	if err != nil {
		s.Close()
		t.Fatal(err)
	}
	srv := apiserver.New(s, apiserver.Options{Version: "test", Socket: cfg.Socket, Log: log})
	go srv.Serve(l)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		s.Close()
	})
	return cfg.Socket, cfg.StateDir
}

// logWriter is an application writer for an append-only file: it knows
// what it appended since a backup, so it reports that as a partial file,
// from the length its previous backup stamp records.
type logWriter struct {
	writer.Base
	dir, name string

	mu        sync.Mutex
	prevStamp string // the PreviousBackupStamp of the last PostSnapshot
}

func (l *logWriter) Metadata() *vssmeta.WriterMetadata {
	return &vssmeta.WriterMetadata{
		WriterID: uuid.MustParse("5d0c1e0a-8f57-4d1b-9a39-0c5c7b6a1f42"), InstanceID: uuid.MustParse("0b9f8f1e-3c1a-4e7e-8f2d-6a3b2c1d0e9f"),
		Name: "Append Log", Usage: vssmeta.UsageUserData, Source: vssmeta.SourceOther,
		Schema: vssmeta.SchemaDifferential | vssmeta.SchemaIncremental,
		Components: []vssmeta.Component{{Type: vssmeta.ComponentFileGroup, Name: "log", Selectable: true, SelectableForRestore: true,
			Files: []vssmeta.File{{Path: l.dir, Filespec: l.name}}}},
	}
}

func (l *logWriter) PostSnapshot(ctx context.Context, e *writer.Event) error {
	st, err := os.Stat(filepath.Join(e.ShadowPaths[volumeOf(e, l.dir)], strings.TrimPrefix(l.dir, volumeOf(e, l.dir)), l.name))
	if err != nil {
		return err
	}
	for i := range e.Components.Components {
		c := &e.Components.Components[i]
		c.BackupStamp = strconv.FormatInt(st.Size(), 10)
		l.mu.Lock()
		l.prevStamp = c.PreviousBackupStamp
		l.mu.Unlock()
		if e.BackupType != vssmeta.BackupDifferential && e.BackupType != vssmeta.BackupIncremental {
			continue
		}
		from, err := strconv.ParseInt(c.PreviousBackupStamp, 10, 64)
		if err != nil {
			return fmt.Errorf("previous backup stamp %q: %w", c.PreviousBackupStamp, err)
		}
		c.PartialFiles = []vssmeta.PartialFile{{Path: l.dir, Filename: l.name, Ranges: vssmeta.FormatRanges([][2]int64{{from, st.Size() - from}})}}
	}
	return nil
}

// volumeOf returns the volume of e that holds dir.
func volumeOf(e *writer.Event, dir string) string {
	best := ""
	for _, v := range e.Volumes {
		if (dir == v || strings.HasPrefix(dir, v+"/")) && len(v) > len(best) {
			best = v
		}
	}
	return best
}

// TestWriterPartialFiles: through vssd, an SDK writer reports what it
// appended since the full backup as a partial file (from the backup stamp
// the full backup saved, which the differential hands back to it as the
// previous backup stamp); the differential reads only the blocks of that
// range, not the whole file whose time stamp changed, and restores
// exactly.
func TestWriterPartialFiles(t *testing.T) {
	testutil.RequireRoot(t)
	vol := testutil.NewFS(t, "btrfs", 0)
	dir := filepath.Join(vol.Dir, "log")
	const size, added = 16 << 20, 300 << 10
	content := testutil.RandomBytes(3, size+added)
	testutil.WriteFile(t, dir, "log.bin", content[:size])
	socket, _ := serveVssd(t)
	lw := &logWriter{dir: dir, name: "log.bin"}
	ctx, cancel := context.WithCancel(context.Background())
	registered := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- writer.Run(ctx, lw, writer.Options{Socket: socket, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Registered: func() { close(registered) }})
	}()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-registered:
	case err := <-done:
		t.Fatalf("the writer did not register: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("the writer did not register")
	}
	target := filepath.Join(t.TempDir(), "backups")
	wb := func(args ...string) result {
		return run(t, append(args, "--socket", socket)...)
	}
	comp := `Append Log\log`
	full := lastEvent(t, wb("start", "backup", "-backupTarget:"+target, "-component:"+comp, "-vssFull", "-full", "--format", "json").must(t).out)
	if full.BytesRead != size {
		t.Errorf("the full backup read %d bytes, want %d", full.BytesRead, size)
	}
	// Append; the file's time stamp changes, so without the writer's
	// ranges the whole file would be read and hashed.
	f, err := os.OpenFile(filepath.Join(dir, "log.bin"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(content[size:]); err != nil {
		t.Fatal(err)
	}
	f.Close()
	diff := lastEvent(t, wb("start", "backup", "-backupTarget:"+target, "-component:"+comp, "-vssFull", "-differential", "--format", "json").must(t).out)
	lw.mu.Lock()
	prev := lw.prevStamp
	lw.mu.Unlock()
	if prev != strconv.Itoa(size) {
		t.Errorf("the writer got previous backup stamp %q in the differential, want %d (the full backup's stamp)", prev, size)
	}
	const block = 64 << 10
	if diff.BytesRead > added+2*block || diff.BytesStored > added+2*block {
		t.Errorf("the differential read %d and stored %d bytes for %d appended (the writer's range): it did not keep to the range", diff.BytesRead, diff.BytesStored, added)
	}
	t.Logf("differential of a %d-byte file with %d bytes appended: read %d, stored %d", size+added, added, diff.BytesRead, diff.BytesStored)
	dst := filepath.Join(t.TempDir(), "restored")
	wb("start", "recovery", "-backupTarget:"+target, "-version:"+diff.Version, "-itemType:Component", "-items:"+comp, "-recoveryTarget:"+dst, "-quiet").must(t)
	got, err := os.ReadFile(filepath.Join(dst, dir, "log.bin"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, content) {
		t.Errorf("the restored file (%d bytes) differs from the file at the differential (%d bytes)", len(got), len(content))
	}
}

// TestTornComponent: a writer's component has files on two volumes (a
// btrfs one and an ext4 one). A backup of only the first volume's files
// would hold a torn database: it fails with
// VSS_E_WRITERERROR_INCONSISTENTSNAPSHOT naming the writer, stores no
// version and leaves no shadow copy. A backup of the component takes both
// volumes in its set, and its recovery brings back both halves.
func TestTornComponent(t *testing.T) {
	testutil.RequireRoot(t)
	a := testutil.NewFS(t, "btrfs", 0)
	b := testutil.NewFS(t, "ext4", 0)
	onA := filepath.Join(a.Dir, "data")
	onB := filepath.Join(b.Dir, "logs")
	testutil.WriteFile(t, onA, "a.db", []byte("first half"))
	testutil.WriteFile(t, onB, "a.log", []byte("second half"))
	hooks := t.TempDir()
	hook := fmt.Sprintf(`name = "split"
[[component]]
name = "db"
files = [ { path = %q, filespec = "*" }, { path = %q, filespec = "*" } ]
`, onA, onB)
	if err := os.WriteFile(filepath.Join(hooks, "split.toml"), []byte(hook), 0o600); err != nil {
		t.Fatal(err)
	}
	w := newTool(t, fmt.Sprintf("[writers]\nhooks_dir = %q\n", hooks))
	target := filepath.Join(t.TempDir(), "backups")
	r := w.run(t, "start", "backup", "-backupTarget:"+target, "-include:"+onA, "-quiet")
	if r.code != 1 || !strings.Contains(r.errOut, "VSS_E_WRITERERROR_INCONSISTENTSNAPSHOT (0x800423F0)") || !strings.Contains(r.errOut, "split") {
		t.Fatalf("backup of half a component: exit %d\n%s%s", r.code, r.out, r.errOut)
	}
	if ents, err := os.ReadDir(target); err == nil {
		for _, e := range ents {
			if !strings.HasPrefix(e.Name(), ".") {
				t.Errorf("the failed backup left %s in the target", e.Name())
			}
		}
	}
	requireNoShadow(t, w.state)

	v := w.backup(t, "-backupTarget:"+target, `-component:split\db`)
	dst := filepath.Join(t.TempDir(), "restored")
	w.run(t, "start", "recovery", "-backupTarget:"+target, "-version:"+v.Version, "-itemType:Component", `-items:split\db`, "-recoveryTarget:"+dst, "-quiet").must(t)
	for p, want := range map[string]string{filepath.Join(onA, "a.db"): "first half", filepath.Join(onB, "a.log"): "second half"} {
		if got, err := os.ReadFile(filepath.Join(dst, p)); err != nil || string(got) != want {
			t.Errorf("restored %s: %q, %v", p, got, err)
		}
	}
	// A damaged backup is reported and not restored.
	stored := filepath.Join(target, v.Version, "data", strings.TrimPrefix(onA, "/"), "a.db")
	bs, err := os.ReadFile(stored)
	if err != nil {
		t.Fatal(err)
	}
	bs[0] ^= 0xff
	if err := os.WriteFile(stored, bs, 0o600); err != nil {
		t.Fatal(err)
	}
	dst2 := filepath.Join(t.TempDir(), "damaged")
	r = w.run(t, "start", "recovery", "-backupTarget:"+target, "-version:"+v.Version, "-itemType:Component", `-items:split\db`, "-recoveryTarget:"+dst2, "-quiet")
	if r.code != 1 || !strings.Contains(r.errOut, "E_FILE_CORRUPT (0x80070570)") || !strings.Contains(r.errOut, "a.db") {
		t.Errorf("recovery of a damaged component: exit %d\n%s", r.code, r.errOut)
	}
	if _, err := os.Stat(filepath.Join(dst2, onA, "a.db")); !os.IsNotExist(err) {
		t.Errorf("a damaged file was restored: %v", err)
	}
	bs[0] ^= 0xff
	if err := os.WriteFile(stored, bs, 0o600); err != nil {
		t.Fatal(err)
	}
	// A hook writer does not say it can restore under a new name.
	r = w.run(t, "start", "recovery", "-backupTarget:"+target, "-version:"+v.Version, "-itemType:Component", `-items:split\db`, "-newName:other", "-quiet")
	if r.code != 1 || !strings.Contains(r.errOut, "E_INVALIDARG") || !strings.Contains(r.errOut, "does not support a restore under a new name") {
		t.Errorf("restore under a new name of a writer without RestoreRename: exit %d\n%s", r.code, r.errOut)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(onA), "other")); !os.IsNotExist(err) {
		t.Errorf("the refused restore made something: %v", err)
	}
	requireNoShadow(t, w.state)
	// An unknown component is refused by name, with what there is.
	r = w.run(t, "start", "backup", "-backupTarget:"+target, `-component:split\nothing`, "-quiet")
	if r.code != 1 || !strings.Contains(r.errOut, "VSS_E_OBJECT_NOT_FOUND") || !strings.Contains(r.errOut, `split:\db`) {
		t.Errorf("backup of an unknown component: exit %d\n%s", r.code, r.errOut)
	}
}
