// Command vssbench benchmarks the shadow copy service against what a user
// would do instead (btrfs subvolume snapshot, snapper, cp --reflink; for
// wbadmin's backups, cp -a and restic), in one run on the same volumes,
// and prints a table of medians and ratios.
// It must run as root: it makes filesystems on loop devices. See
// scripts/bench.sh, which installs what it needs and builds it.
//
//	vssbench [--quick] [--json FILE] [--workdir DIR] [--vssadmin PATH] [--only create,hold,reflink,copy,list,writers,pgbench,wbadmin]
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/linuxvss/vss/internal/bench"
)

func main() { os.Exit(run()) }

func run() int {
	var (
		o        bench.Options
		jsonFile string
		only     string
		verbose  bool
	)
	flag.BoolVar(&o.Quick, "quick", false, "smaller sizes and fewer repetitions (a couple of minutes)")
	flag.StringVar(&o.WorkDir, "workdir", "/var/tmp", "where the sparse images and state directories go (on the root filesystem)")
	flag.StringVar(&o.Vssadmin, "vssadmin", "", "vssadmin binary to time (default: next to vssbench, else on PATH; the wbadmin benchmark runs wbadmin in process)")
	flag.IntVar(&o.Reps, "reps", 0, "repetitions of every comparison (default 15, 5 for the copy and wbadmin benchmarks; --quick 5 and 3)")
	flag.StringVar(&only, "only", "", "comma-separated benchmarks to run: "+strings.Join(bench.All, ","))
	flag.StringVar(&jsonFile, "json", "", "also write the results as JSON to this file")
	flag.BoolVar(&verbose, "verbose", false, "log the service and every cleanup step")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "vssbench: unexpected arguments %q\n", flag.Args())
		return 2
	}
	level := slog.LevelInfo
	if verbose {
		level = slog.LevelDebug
		o.ServiceLog = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	o.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	if only != "" {
		o.Only = strings.Split(only, ",")
	}
	if o.Vssadmin == "" {
		o.Vssadmin = findVssadmin()
	}

	// The first signal cancels the benchmark, which then cleans up; later
	// ones are only reported, so that the cleanup can finish.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sig := make(chan os.Signal, 4)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sig)
	go func() {
		for s := range sig {
			if ctx.Err() == nil {
				o.Log.Warn("stopping: cleaning up what the benchmark made", "signal", s)
				cancel()
			} else {
				o.Log.Warn("still cleaning up; please wait", "signal", s)
			}
		}
	}()

	rep, err := bench.Run(ctx, o)
	if rep == nil {
		o.Log.Error("vssbench", "err", err)
		return 1
	}
	fmt.Println("Environment")
	rep.Environment.Write(os.Stdout)
	fmt.Printf("mode:      %s (elapsed %s)\n\n", rep.Mode, rep.Elapsed.Round(1e9))
	if err := bench.WriteTable(os.Stdout, rep.Rows); err != nil {
		o.Log.Error("writing the table", "err", err)
	}
	for _, e := range rep.Errors {
		fmt.Printf("\nerror: %s\n", e)
	}
	if jsonFile != "" {
		if werr := writeJSON(jsonFile, rep); werr != nil {
			o.Log.Error("writing the JSON results", "err", werr)
			err = errors.Join(err, werr)
		}
	}
	if err != nil || len(rep.Errors) > 0 {
		return 1
	}
	return 0
}

// findVssadmin looks for vssadmin next to this program, then on PATH.
func findVssadmin() string {
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), "vssadmin")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("vssadmin"); err == nil {
		return p
	}
	return ""
}

func writeJSON(path string, rep *bench.Report) error {
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}
