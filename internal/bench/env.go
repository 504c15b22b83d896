package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/linuxvss/vss/internal/volume"
)

// Environment describes the machine a run measured.
type Environment struct {
	Date      string            `json:"date"`
	Hostname  string            `json:"hostname"`
	Kernel    string            `json:"kernel"`
	CPUs      int               `json:"cpus"`
	CPUModel  string            `json:"cpu_model"`
	Memory    string            `json:"memory"`
	GoVersion string            `json:"go_version"`
	WorkDir   string            `json:"work_dir"`
	WorkDirFS string            `json:"work_dir_fs"`
	Tools     map[string]string `json:"tools"`
}

// CollectEnvironment describes this machine; workDir is where the images
// and state directories go.
func CollectEnvironment(ctx context.Context, workDir string) Environment {
	e := Environment{
		Date:      time.Now().UTC().Format(time.RFC3339),
		CPUs:      runtime.NumCPU(),
		GoVersion: runtime.Version(),
		WorkDir:   workDir,
		Tools:     map[string]string{},
	}
	e.Hostname, _ = os.Hostname()
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		e.Kernel = unix.ByteSliceToString(u.Release[:]) + " " + unix.ByteSliceToString(u.Machine[:])
	}
	e.CPUModel = procField("/proc/cpuinfo", "model name")
	e.Memory = procField("/proc/meminfo", "MemTotal")
	if mounts, err := volume.Mounts(); err == nil {
		if m, ok := volume.MountOf(mounts, workDir); ok {
			e.WorkDirFS = m.FSType + " (" + m.MountPoint + ")"
		}
	}
	for name, args := range map[string][]string{
		"btrfs":     {"btrfs", "--version"},
		"mkfs.xfs":  {"mkfs.xfs", "-V"},
		"mkfs.ext4": {"mkfs.ext4", "-V"},
		"snapper":   {"snapper", "--version"},
		"cp":        {"cp", "--version"},
		"restic":    {"restic", "version"},
	} {
		e.Tools[name] = toolVersion(ctx, args[0], args[1:]...)
	}
	return e
}

// procField returns the value of the first "key: value" line of a /proc file.
func procField(path, key string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == key {
			return strings.Join(strings.Fields(v), " ")
		}
	}
	return ""
}

// toolVersion returns the first line a tool prints about its version, or
// "not installed".
func toolVersion(ctx context.Context, name string, args ...string) string {
	if _, err := exec.LookPath(name); err != nil {
		return "not installed"
	}
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	if err != nil && line == "" {
		return "unknown (" + err.Error() + ")"
	}
	return line
}

// Write prints the environment as "key: value" lines.
func (e Environment) Write(w io.Writer) {
	fmt.Fprintf(w, "date:      %s\n", e.Date)
	fmt.Fprintf(w, "host:      %s\n", e.Hostname)
	fmt.Fprintf(w, "kernel:    %s\n", e.Kernel)
	fmt.Fprintf(w, "cpus:      %d (%s)\n", e.CPUs, e.CPUModel)
	fmt.Fprintf(w, "memory:    %s\n", e.Memory)
	fmt.Fprintf(w, "go:        %s\n", e.GoVersion)
	fmt.Fprintf(w, "work dir:  %s on %s\n", e.WorkDir, e.WorkDirFS)
	for _, k := range []string{"btrfs", "mkfs.xfs", "mkfs.ext4", "snapper", "cp", "restic"} {
		fmt.Fprintf(w, "%-10s %s\n", k+":", e.Tools[k])
	}
}
