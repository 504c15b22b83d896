// Package systemd speaks the two systemd protocols vssd needs, without a
// dependency: socket activation (sd_listen_fds: LISTEN_PID, LISTEN_FDS,
// descriptors from 3 on) and readiness notification (sd_notify: a datagram
// to NOTIFY_SOCKET). Outside systemd both do nothing.
package systemd

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"syscall"
)

// listenFDsStart is the first descriptor systemd passes (SD_LISTEN_FDS_START).
const listenFDsStart = 3

// Environment variables of the protocols.
const (
	envListenPID     = "LISTEN_PID"
	envListenFDs     = "LISTEN_FDS"
	envListenFDNames = "LISTEN_FDNAMES"
	envNotifySocket  = "NOTIFY_SOCKET"
)

// Listeners returns the sockets systemd passed to this process (none when
// it was not socket-activated), and unsets the variables so that children
// do not take them for theirs. The descriptors become close-on-exec.
func Listeners() ([]net.Listener, error) {
	pid, fds := os.Getenv(envListenPID), os.Getenv(envListenFDs)
	defer func() {
		os.Unsetenv(envListenPID)
		os.Unsetenv(envListenFDs)
		os.Unsetenv(envListenFDNames)
	}()
	if pid == "" || fds == "" {
		return nil, nil
	}
	if p, err := strconv.Atoi(pid); err != nil || p != os.Getpid() {
		return nil, nil // meant for another process
	}
	n, err := strconv.Atoi(fds)
	if err != nil || n < 0 {
		return nil, fmt.Errorf("%s=%q is not a count of descriptors", envListenFDs, fds)
	}
	var out []net.Listener
	for fd := listenFDsStart; fd < listenFDsStart+n; fd++ {
		syscall.CloseOnExec(fd)
		f := os.NewFile(uintptr(fd), "LISTEN_FD_"+strconv.Itoa(fd))
		l, err := net.FileListener(f)
		f.Close() // FileListener dups the descriptor
		if err != nil {
			for _, l := range out {
				l.Close()
			}
			return nil, fmt.Errorf("socket-activation descriptor %d: %w", fd, err)
		}
		out = append(out, l)
	}
	return out, nil
}

// Notify sends state (e.g. "READY=1") to the service manager. It does
// nothing and returns false when NOTIFY_SOCKET is not set.
func Notify(state string) (bool, error) {
	addr := os.Getenv(envNotifySocket)
	if addr == "" {
		return false, nil
	}
	if addr[0] != '/' && addr[0] != '@' {
		return false, errors.New(envNotifySocket + " must be an absolute path or an abstract socket name")
	}
	// Go maps a leading @ to the abstract namespace.
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		return false, fmt.Errorf("sd_notify: %w", err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(state)); err != nil {
		return false, fmt.Errorf("sd_notify: %w", err)
	}
	return true, nil
}
