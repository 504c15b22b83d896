package hook

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"os/user"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode"

	"github.com/linuxvss/vss/internal/vsserr"
	"github.com/linuxvss/vss/internal/writers"
	"github.com/linuxvss/vss/pkg/vssmeta"
)

// ExitTempFail is the exit status (EX_TEMPFAIL) a command returns for a
// transient failure: VSS_E_WRITERERROR_RETRYABLE.
const ExitTempFail = 75

// tailSize is how much of a command's output goes into its error.
const tailSize = 4 << 10

// pipeGrace is how long a finished command's output pipes may stay open
// (a background process it started holds them) before they are closed.
const pipeGrace = 2 * time.Second

// searchPath is the PATH of every command.
const searchPath = "/usr/sbin:/usr/bin:/sbin:/bin"

// runSpec is one command to run, with everything it needs. It travels to
// the guard as JSON.
type runSpec struct {
	Writer  string        `json:"writer"`
	Event   string        `json:"event"`
	Argv    []string      `json:"argv"`
	Env     []string      `json:"env"`
	Timeout time.Duration `json:"timeout"`
	// Cred is who runs it; nil: the service's user.
	Cred *credential `json:"cred,omitempty"`
}

type credential struct {
	UID    uint32   `json:"uid"`
	GID    uint32   `json:"gid"`
	Groups []uint32 `json:"groups"`
}

// lookupUser resolves a user name or numeric ID.
func lookupUser(name string) (*credential, error) {
	if name == "" {
		return nil, nil
	}
	u, err := user.Lookup(name)
	if err != nil {
		if _, nerr := strconv.ParseUint(name, 10, 32); nerr == nil {
			u, err = user.LookupId(name)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("user %q: %w", name, err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("user %q: uid %q: %w", name, u.Uid, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("user %q: gid %q: %w", name, u.Gid, err)
	}
	c := &credential{UID: uint32(uid), GID: uint32(gid)}
	gids, _ := u.GroupIds()
	for _, g := range gids {
		if n, err := strconv.ParseUint(g, 10, 32); err == nil {
			c.Groups = append(c.Groups, uint32(n))
		}
	}
	return c, nil
}

// eventWord is the name of an event in files and VSS_EVENT:
// "prepare-snapshot".
func eventWord(ev writers.Event) string {
	var b strings.Builder
	for i, r := range ev.String() {
		if unicode.IsUpper(r) {
			if i > 0 {
				b.WriteByte('-')
			}
			r = unicode.ToLower(r)
		}
		b.WriteRune(r)
	}
	return b.String()
}

var backupTypes = map[vssmeta.BackupType]string{
	vssmeta.BackupFull:         "full",
	vssmeta.BackupIncremental:  "incremental",
	vssmeta.BackupDifferential: "differential",
	vssmeta.BackupLog:          "log",
	vssmeta.BackupCopy:         "copy",
	vssmeta.BackupOther:        "other",
}

// environment is the whole environment of the command of ev.
func environment(writer string, ev writers.Event, req *writers.Request) []string {
	set := ""
	if req.SetID != [16]byte{} {
		set = req.SetID.String()
	}
	deadline := ""
	if !req.Deadline.IsZero() {
		deadline = req.Deadline.UTC().Format(time.RFC3339Nano)
	}
	env := []string{
		"PATH=" + searchPath,
		"VSS_WRITER=" + writer,
		"VSS_EVENT=" + eventWord(ev),
		"VSS_SET_ID=" + set,
		"VSS_CONTEXT=" + strconv.FormatUint(uint64(req.Context), 10),
		"VSS_BACKUP_TYPE=" + backupTypes[req.BackupType],
		"VSS_VOLUMES=" + strings.Join(req.Volumes, ":"),
		"VSS_DEADLINE=" + deadline,
		"VSS_RESTORE_TARGET=" + req.RestoreTarget,
	}
	vols := make([]string, 0, len(req.ShadowPaths))
	for v := range req.ShadowPaths {
		vols = append(vols, v)
	}
	sort.Strings(vols)
	var lines []string
	for i, v := range vols {
		l := v + "=" + req.ShadowPaths[v]
		lines = append(lines, l)
		env = append(env, fmt.Sprintf("VSS_SHADOW_%d=%s", i, l))
	}
	env = append(env, "VSS_SHADOW_PATHS="+strings.Join(lines, "\n"))
	return env
}

// maxLoggedLines is how many lines of each output stream of a command
// are logged; the rest only counts toward the tail.
const maxLoggedLines = 200

// output logs a command's output line by line (the first 200 lines) and
// keeps its last 4 KiB.
type output struct {
	log    *slog.Logger
	stream string
	mu     sync.Mutex
	line   []byte
	tail   []byte
	lines  int
}

func (o *output) Write(b []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.tail = append(o.tail, b...)
	if len(o.tail) > 2*tailSize {
		o.tail = append(o.tail[:0], o.tail[len(o.tail)-tailSize:]...)
	}
	for _, c := range b {
		if c == '\n' {
			o.emit()
			continue
		}
		if len(o.line) < 1024 {
			o.line = append(o.line, c)
		}
	}
	return len(b), nil
}

func (o *output) emit() {
	o.lines++
	switch {
	case o.lines <= maxLoggedLines:
		o.log.Info("hook output", "stream", o.stream, "line", string(o.line))
	case o.lines == maxLoggedLines+1:
		o.log.Info("hook output: further lines are not logged", "stream", o.stream)
	}
	o.line = o.line[:0]
}

// Tail returns the last 4 KiB written, without surrounding space.
func (o *output) Tail() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.line) > 0 {
		o.emit()
	}
	t := o.tail
	if len(t) > tailSize {
		t = t[len(t)-tailSize:]
	}
	return strings.TrimSpace(strings.ToValidUTF8(string(t), "?"))
}

// killGroup kills every process of the process group pgid.
func killGroup(pgid int) {
	if pgid > 1 {
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
	}
}

// run runs a command by its timeout and ctx's deadline and classifies its
// failure with a VSS_E_WRITERERROR_* code.
func run(ctx context.Context, log *slog.Logger, s runSpec) error {
	start := time.Now()
	deadline := start.Add(s.Timeout)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	what := fmt.Sprintf("hook writer %s: %s command %s", s.Writer, s.Event, s.Argv[0])
	log = log.With("event", s.Event, "command", s.Argv[0])
	cmd := exec.Command(s.Argv[0], s.Argv[1:]...)
	cmd.Args[0] = s.Argv[0]
	cmd.Env = s.Env
	cmd.Dir = "/"
	attr := &syscall.SysProcAttr{Setpgid: true}
	if s.Cred != nil {
		attr.Credential = &syscall.Credential{Uid: s.Cred.UID, Gid: s.Cred.GID, Groups: s.Cred.Groups}
	}
	cmd.SysProcAttr = attr
	stdout := &output{log: log, stream: "stdout"}
	stderr := &output{log: log, stream: "stderr"}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.WaitDelay = pipeGrace
	if err := ctx.Err(); err != nil {
		return vsserr.Wrap(vsserr.VSS_E_WRITERERROR_TIMEOUT, err, "%s: not started", what)
	}
	if err := cmd.Start(); err != nil {
		return vsserr.Wrap(vsserr.VSS_E_WRITERERROR_NONRETRYABLE, err, "%s: cannot start it", what)
	}
	pgid := cmd.Process.Pid
	log.Debug("hook command started", "pid", pgid, "timeout", time.Until(deadline))
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	var err error
	select {
	case err = <-done:
	case <-timer.C:
		killGroup(pgid)
		<-done
		log.Warn("hook command killed at its time limit", "pid", pgid, "took", time.Since(start))
		return vsserr.New(vsserr.VSS_E_WRITERERROR_TIMEOUT, "%s: killed after %v (time limit)%s",
			what, time.Since(start).Round(time.Millisecond), tailText(stdout, stderr))
	case <-ctx.Done():
		killGroup(pgid)
		<-done
		log.Warn("hook command killed: the event was cancelled", "pid", pgid, "took", time.Since(start))
		return vsserr.Wrap(vsserr.VSS_E_WRITERERROR_TIMEOUT, ctx.Err(), "%s: killed after %v%s",
			what, time.Since(start).Round(time.Millisecond), tailText(stdout, stderr))
	}
	took := time.Since(start)
	if errors.Is(err, exec.ErrWaitDelay) {
		log.Warn("hook command exited but a process it left behind holds its output open", "took", took)
		err = nil
	}
	if err == nil {
		log.Info("hook command succeeded", "took", took)
		return nil
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return vsserr.Wrap(vsserr.VSS_E_WRITERERROR_NONRETRYABLE, err, "%s", what)
	}
	ws, _ := ee.Sys().(syscall.WaitStatus)
	code := vsserr.VSS_E_WRITERERROR_NONRETRYABLE
	status := ee.String()
	switch {
	case ws.Exited() && ws.ExitStatus() == ExitTempFail:
		code = vsserr.VSS_E_WRITERERROR_RETRYABLE
		status = fmt.Sprintf("exit status %d (EX_TEMPFAIL: try again)", ExitTempFail)
	case ws.Signaled():
		status = "killed by signal " + ws.Signal().String()
	}
	log.Warn("hook command failed", "status", status, "took", took)
	return vsserr.New(code, "%s: %s%s", what, status, tailText(stdout, stderr))
}

// tailText is the part of an error message that shows a command's
// output: its standard error, or its standard output when that is empty.
func tailText(stdout, stderr *output) string {
	if t := stderr.Tail(); t != "" {
		return "; stderr: " + t
	}
	if t := stdout.Tail(); t != "" {
		return "; stdout: " + t
	}
	return ""
}
