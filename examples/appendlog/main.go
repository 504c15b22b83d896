// Command appendlog is a small application with its own VSS writer, to show
// the Go SDK (pkg/writer): it appends a numbered, check-summed line to a
// log file every interval, and registers with vssd as a writer whose one
// component is the log's directory. On Freeze it stops appending and
// fsyncs the file, so that every shadow copy holds only whole lines; on
// Thaw (or when the freeze deadline passes, or vssd goes away) it goes on.
//
//	appendlog --file /srv/app/log.txt [--interval 10ms] [--socket PATH]
//
// It prints one line per writer event on standard output ("event Freeze",
// "thawed by itself" …), which its tests read.
package main

import (
	"context"
	"flag"
	"fmt"
	"hash/crc32"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/google/uuid"

	"github.com/linuxvss/vss/pkg/vssmeta"
	"github.com/linuxvss/vss/pkg/writer"
)

// classID is the writer class of every appendlog.
var classID = uuid.MustParse("7b0c5c2e-64a1-4b7e-9a55-6f3f1d2c0a11")

// app is the application and its writer.
type app struct {
	writer.Base
	path string
	f    *os.File
	n    int

	// mu is held while frozen: the appender waits on it.
	mu     sync.Mutex
	frozen bool
	state  sync.Mutex // guards frozen
}

func (a *app) say(format string, args ...any) {
	fmt.Printf(format+"\n", args...)
}

// Metadata describes the one component: the log's directory.
func (a *app) Metadata() *vssmeta.WriterMetadata {
	return &vssmeta.WriterMetadata{
		WriterID: classID, InstanceID: uuid.NewSHA1(classID, []byte(a.path)), Name: "AppendLog Writer", InstanceName: a.path,
		Usage: vssmeta.UsageUserData, Source: vssmeta.SourceNonTransactedDB,
		Restore: vssmeta.RestoreMethodInfo{Method: vssmeta.RestoreIfCanReplace},
		Components: []vssmeta.Component{{
			Type: vssmeta.ComponentFileGroup, Name: "log", Selectable: true,
			Files: []vssmeta.File{{Path: filepath.Dir(a.path), Filespec: filepath.Base(a.path)}},
		}},
	}
}

// Freeze stops the appender and makes the file durable.
func (a *app) Freeze(ctx context.Context, e *writer.Event) error {
	a.mu.Lock()
	a.state.Lock()
	a.frozen = true
	a.state.Unlock()
	if err := a.f.Sync(); err != nil {
		a.release()
		return writer.Retryable(err)
	}
	a.say("event Freeze lines=%d deadline=%s", a.n, e.Deadline.Format(time.RFC3339Nano))
	return nil
}

func (a *app) release() bool {
	a.state.Lock()
	defer a.state.Unlock()
	if !a.frozen {
		return false
	}
	a.frozen = false
	a.mu.Unlock()
	return true
}

// Thaw lets the appender go on.
func (a *app) Thaw(ctx context.Context, e *writer.Event) error {
	if a.release() {
		a.say("event Thaw")
	}
	return nil
}

// Abort undoes a freeze (also the SDK's self-thaw).
func (a *app) Abort(ctx context.Context, e *writer.Event) error {
	if a.release() {
		a.say("thawed by itself or aborted at %s", time.Now().Format(time.RFC3339Nano))
	}
	return nil
}

// appendLoop is the application: one line per interval.
func (a *app) appendLoop(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		a.mu.Lock()
		a.n++
		body := fmt.Sprintf("%d %s", a.n, time.Now().UTC().Format(time.RFC3339Nano))
		fmt.Fprintf(a.f, "%s %08x\n", body, crc32.ChecksumIEEE([]byte(body)))
		a.mu.Unlock()
	}
}

func main() {
	file := flag.String("file", "", "the log file to append to")
	every := flag.Duration("interval", 10*time.Millisecond, "time between lines")
	socket := flag.String("socket", "", "vssd's socket (default $VSS_SOCKET or /run/vss/vssd.sock)")
	flag.Parse()
	if *file == "" || !filepath.IsAbs(*file) {
		fmt.Fprintln(os.Stderr, "appendlog: --file must be an absolute path")
		os.Exit(2)
	}
	f, err := os.OpenFile(*file, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, "appendlog:", err)
		os.Exit(1)
	}
	a := &app{path: *file, f: f}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go a.appendLoop(ctx, *every)
	err = writer.Run(ctx, a, writer.Options{Socket: *socket, Registered: func() { a.say("registered") }})
	if err != nil {
		fmt.Fprintln(os.Stderr, "appendlog:", err)
		// The application goes on without its writer until stopped.
		a.say("writer ended: %v", err)
		<-ctx.Done()
	}
}
