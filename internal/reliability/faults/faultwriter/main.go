// Command faultwriter is the application of the fault-injection harness
// (internal/reliability/faults): a small program with a VSS writer built on
// the Go SDK (pkg/writer), like examples/appendlog, that can be told to die,
// hang or pause at a writer event.
//
//	faultwriter --socket PATH --log FILE --control FILE [--interval 5ms]
//
// The application appends a line "PID SEQ UNIXNANO" to --log every
// interval; while frozen it appends nothing. Its writer has no files, so it
// takes part in every shadow copy set (a writer without files quiesces an
// application for every set). When the service goes away it connects again
// until it is stopped, as a long-running application would.
//
// At every event the writer reads --control, whose lines are "EVENT
// ACTION" (EVENT as the SDK names it: PrepareSnapshot, Freeze, Thaw,
// PostSnapshot, BackupComplete, …), and acts:
//
//	kill   SIGKILL itself (in Freeze, once the application is frozen)
//	hang   stop answering: in Freeze once the application is frozen, in Thaw
//	       before thawing it; until the line is gone from --control
//	pause  print "at EVENT" and wait until the line is gone from --control
//	       (at most 10 s) before going on (in Freeze once frozen, in Thaw
//	       before thawing), so that the harness can act then
//
// It prints one line per happening on standard output: "registered",
// "event NAME", "at NAME", "hang NAME", "unhang NAME", and at each thaw
// "thawed frozen=DURATION late=DURATION by=HOW", where late is how long
// after the freeze deadline the application was thawed (0 when in time).
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/google/uuid"

	"github.com/linuxvss/vss/pkg/vssmeta"
	"github.com/linuxvss/vss/pkg/writer"
)

// classID is the writer class of every faultwriter.
var classID = uuid.MustParse("3f0d7b5e-2a61-4c1e-8f0a-5b9c2d4e6a17")

type app struct {
	writer.Base
	log     *os.File
	control string
	out     sync.Mutex

	// mu is held while frozen: the appender waits on it.
	mu       sync.Mutex
	state    sync.Mutex // guards the fields below
	frozen   bool
	frozenAt time.Time
	deadline time.Time
}

func (a *app) say(format string, args ...any) {
	a.out.Lock()
	defer a.out.Unlock()
	fmt.Printf(format+"\n", args...)
}

// Metadata describes a writer without files.
func (a *app) Metadata() *vssmeta.WriterMetadata {
	return &vssmeta.WriterMetadata{
		WriterID: classID, InstanceID: uuid.NewSHA1(classID, []byte(a.log.Name())), Name: "Fault Writer", InstanceName: a.log.Name(),
		Usage: vssmeta.UsageUserData, Source: vssmeta.SourceNonTransactedDB,
		Restore: vssmeta.RestoreMethodInfo{Method: vssmeta.RestoreIfCanReplace},
	}
}

// action returns what --control says to do at event.
func (a *app) action(event string) string {
	b, err := os.ReadFile(a.control)
	if err != nil {
		return ""
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) == 2 && f[0] == event {
			return f[1]
		}
	}
	return ""
}

// act carries out the action of the control file at event.
func (a *app) act(event string) {
	switch a.action(event) {
	case "kill":
		a.say("kill %s", event)
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {}
	case "hang":
		a.say("hang %s", event)
		for start := time.Now(); a.action(event) == "hang" && time.Since(start) < 2*time.Minute; {
			time.Sleep(20 * time.Millisecond)
		}
		a.say("unhang %s", event)
	case "pause":
		a.say("at %s", event)
		for start := time.Now(); a.action(event) == "pause" && time.Since(start) < 10*time.Second; {
			time.Sleep(5 * time.Millisecond)
		}
	}
}

func (a *app) PrepareSnapshot(ctx context.Context, e *writer.Event) error {
	a.say("event PrepareSnapshot")
	a.act("PrepareSnapshot")
	return nil
}

// Freeze stops the appender and makes the log durable.
func (a *app) Freeze(ctx context.Context, e *writer.Event) error {
	a.say("event Freeze")
	a.mu.Lock()
	a.state.Lock()
	a.frozen, a.frozenAt, a.deadline = true, time.Now(), e.Deadline
	a.state.Unlock()
	if err := a.log.Sync(); err != nil {
		a.release("error")
		return writer.Retryable(err)
	}
	a.act("Freeze")
	return nil
}

// release thaws the application; it reports whether it was frozen.
func (a *app) release(by string) bool {
	a.state.Lock()
	defer a.state.Unlock()
	if !a.frozen {
		return false
	}
	now := time.Now()
	late := time.Duration(0)
	if !a.deadline.IsZero() && now.After(a.deadline) {
		late = now.Sub(a.deadline)
	}
	a.frozen = false
	a.mu.Unlock()
	a.say("thawed frozen=%s late=%s by=%s", now.Sub(a.frozenAt), late, by)
	return true
}

func (a *app) Thaw(ctx context.Context, e *writer.Event) error {
	a.say("event Thaw")
	a.act("Thaw")
	a.release("Thaw")
	return nil
}

// Abort undoes a freeze (also the SDK's self-thaw).
func (a *app) Abort(ctx context.Context, e *writer.Event) error {
	a.say("event Abort")
	a.release("Abort")
	return nil
}

func (a *app) PostSnapshot(ctx context.Context, e *writer.Event) error {
	a.say("event PostSnapshot")
	a.act("PostSnapshot")
	return nil
}

func (a *app) BackupComplete(ctx context.Context, e *writer.Event) error {
	a.say("event BackupComplete")
	a.act("BackupComplete")
	return nil
}

func (a *app) BackupShutdown(ctx context.Context, e *writer.Event) error {
	a.say("event BackupShutdown")
	a.act("BackupShutdown")
	return nil
}

// appendLoop is the application: one line per interval.
func (a *app) appendLoop(ctx context.Context, every time.Duration) {
	w := bufio.NewWriter(a.log)
	pid := os.Getpid()
	t := time.NewTicker(every)
	defer t.Stop()
	for n := 1; ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		a.mu.Lock()
		fmt.Fprintf(w, "%d %d %d\n", pid, n, time.Now().UnixNano())
		w.Flush()
		a.mu.Unlock()
	}
}

func main() {
	socket := flag.String("socket", "", "vssd's socket")
	logPath := flag.String("log", "", "the application's log")
	control := flag.String("control", "", "the control file (EVENT ACTION lines)")
	every := flag.Duration("interval", 5*time.Millisecond, "time between lines")
	flag.Parse()
	if *logPath == "" || *control == "" {
		fmt.Fprintln(os.Stderr, "faultwriter: --log and --control are required")
		os.Exit(2)
	}
	f, err := os.OpenFile(*logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, "faultwriter:", err)
		os.Exit(1)
	}
	a := &app{log: f, control: *control}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go a.appendLoop(ctx, *every)
	for ctx.Err() == nil {
		err := writer.Run(ctx, a, writer.Options{Socket: *socket, Registered: func() { a.say("registered") }})
		if ctx.Err() != nil {
			break
		}
		a.say("writer ended: %v", err)
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}
