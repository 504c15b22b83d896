package wbadmin

import (
	"encoding/json"
	"io"
	"os"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/sys/unix"

	"github.com/linuxvss/vss/internal/backupfmt"
)

// progressEvent is one line of --format json progress.
type progressEvent struct {
	Event      string  `json:"event"`
	Phase      string  `json:"phase"`
	File       string  `json:"file,omitempty"`
	BytesDone  int64   `json:"bytes_done"`
	BytesTotal int64   `json:"bytes_total"`
	FilesDone  int64   `json:"files_done"`
	FilesTotal int64   `json:"files_total"`
	Elapsed    float64 `json:"elapsed_seconds"`
}

// reporter shows the progress of a long operation: a bar with bytes, rate
// and ETA on a terminal, JSON lines with --format json (at most ten a
// second, and the last one always), nothing with -quiet or when the output
// is not a terminal.
type reporter struct {
	mu    sync.Mutex
	json  *json.Encoder
	bar   *progressbar.ProgressBar
	out   io.Writer
	phase string
	start time.Time
	last  time.Time
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// newReporter returns the reporter of one phase ("backup", "recovery").
func (a *app) newReporter(phase string) *reporter {
	r := &reporter{out: a.out, phase: phase, start: time.Now()}
	switch {
	case a.c.Format == "json":
		r.json = json.NewEncoder(a.out)
	case a.c.Quiet || !isTerminal(a.out):
		return nil
	}
	return r
}

// update is the progress callback.
func (r *reporter) update(p backupfmt.Progress) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.json != nil {
		final := p.BytesDone >= p.BytesTotal && p.FilesDone >= p.FilesTotal
		if !final && time.Since(r.last) < 100*time.Millisecond {
			return
		}
		r.last = time.Now()
		_ = r.json.Encode(progressEvent{Event: "progress", Phase: r.phase, File: p.File, BytesDone: p.BytesDone, BytesTotal: p.BytesTotal,
			FilesDone: p.FilesDone, FilesTotal: p.FilesTotal, Elapsed: time.Since(r.start).Seconds()})
		return
	}
	if r.bar == nil || r.bar.GetMax64() != p.BytesTotal {
		if r.bar != nil {
			_ = r.bar.Finish()
		}
		r.bar = progressbar.DefaultBytes(p.BytesTotal, r.phase)
	}
	_ = r.bar.Set64(p.BytesDone)
}

// done ends the bar.
func (r *reporter) done() {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.bar != nil {
		_ = r.bar.Finish()
	}
}
