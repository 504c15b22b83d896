package diskshadow

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/chzyer/readline"
)

// Prompt is the interactive prompt.
const Prompt = "DISKSHADOW> "

// HistoryFile returns the history file of the interactive shell,
// ~/.diskshadow_history, or "" when HOME is not set (no history is kept).
func HistoryFile() string {
	home := os.Getenv("HOME")
	if home == "" {
		return ""
	}
	return filepath.Join(home, ".diskshadow_history")
}

// lineReader reads the commands typed at the prompt.
type lineReader interface {
	// ReadLine returns the next line; io.EOF at the end of input (Ctrl-D),
	// readline.ErrInterrupt for Ctrl-C.
	ReadLine() (string, error)
	Close() error
}

// terminalReader is readline on the terminal: line editing, history
// (up-arrow, Ctrl-R), completion of the commands with Tab.
type terminalReader struct {
	rl    *readline.Instance
	stdin *readline.CancelableStdin
}

func (t terminalReader) ReadLine() (string, error) { return t.rl.Readline() }

// Close gives the terminal back, also while a line is being read: readline
// alone would wait for that read to end (it does not close the stdin it
// makes itself), so the stdin is ours, and closed first.
func (t terminalReader) Close() error {
	t.stdin.Close()
	return t.rl.Close()
}

// plainReader reads lines from a pipe or file, printing the prompt.
type plainReader struct {
	in     *bufio.Reader
	prompt io.Writer
}

func (p plainReader) ReadLine() (string, error) {
	fmt.Fprint(p.prompt, Prompt)
	line, err := p.in.ReadString('\n')
	if err == io.EOF && line != "" {
		err = nil
	}
	return strings.TrimRight(line, "\r\n"), err
}
func (p plainReader) Close() error { return nil }

// completer completes command words with Tab.
var completer = readline.NewPrefixCompleter(
	readline.PcItem("add", readline.PcItem("volume"), readline.PcItem("alias"), readline.PcItem("exclude")),
	readline.PcItem("begin", readline.PcItem("backup"), readline.PcItem("restore")),
	readline.PcItem("break", readline.PcItem("readonly"), readline.PcItem("writable")),
	readline.PcItem("create"),
	readline.PcItem("delete", readline.PcItem("shadows",
		readline.PcItem("all"), readline.PcItem("volume"), readline.PcItem("oldest"), readline.PcItem("set"), readline.PcItem("id"), readline.PcItem("exposed"))),
	readline.PcItem("end", readline.PcItem("backup"), readline.PcItem("restore")),
	readline.PcItem("exec"),
	readline.PcItem("exit"),
	readline.PcItem("expose"),
	readline.PcItem("help"),
	readline.PcItem("import"),
	readline.PcItem("list",
		readline.PcItem("writers", readline.PcItem("metadata"), readline.PcItem("detailed"), readline.PcItem("status")),
		readline.PcItem("shadows", readline.PcItem("all"), readline.PcItem("set"), readline.PcItem("id")),
		readline.PcItem("providers")),
	readline.PcItem("load", readline.PcItem("metadata")),
	readline.PcItem("mask"),
	readline.PcItem("reset"),
	readline.PcItem("resync"),
	readline.PcItem("revert"),
	readline.PcItem("set",
		readline.PcItem("context", readline.PcItem("clientaccessible"), readline.PcItem("persistent"), readline.PcItem("volatile")),
		readline.PcItem("option", readline.PcItem("differential"), readline.PcItem("plex"), readline.PcItem("rollbackrecover"), readline.PcItem("txfrecover"), readline.PcItem("noautorecovery")),
		readline.PcItem("verbose", readline.PcItem("on"), readline.PcItem("off")),
		readline.PcItem("metadata")),
	readline.PcItem("unexpose"),
	readline.PcItem("writer", readline.PcItem("verify"), readline.PcItem("exclude")),
)

// newLineReader uses readline when diskshadow runs on a terminal, and
// reads plain lines otherwise.
func (r *run) newLineReader() (lineReader, error) {
	in, inOK := r.env.Stdin.(*os.File)
	out, outOK := r.env.Stdout.(*os.File)
	if inOK && outOK && in == os.Stdin && readline.IsTerminal(int(in.Fd())) && readline.IsTerminal(int(out.Fd())) {
		stdin := readline.NewCancelableStdin(in)
		rl, err := readline.NewEx(&readline.Config{
			Prompt:            Prompt,
			Stdin:             stdin,
			HistoryFile:       HistoryFile(),
			HistorySearchFold: true,
			AutoComplete:      completer,
			InterruptPrompt:   "^C",
			EOFPrompt:         "exit",
			Stdout:            r.env.Stdout,
			Stderr:            r.env.Stderr,
		})
		if err != nil {
			stdin.Close()
			return nil, fmt.Errorf("the terminal: %w", err)
		}
		return terminalReader{rl, stdin}, nil
	}
	return plainReader{in: bufio.NewReader(r.env.Stdin), prompt: r.env.Stdout}, nil
}

// interactive reads commands at the prompt until exit or the end of
// input. An error is printed and the session goes on.
func (r *run) interactive(ctx context.Context, sh *Shell) int {
	lr, err := r.newLineReader()
	if err != nil {
		fmt.Fprintf(r.errOut, "Error: %s\n", err)
		return ExitError
	}
	defer lr.Close()
	type read struct {
		line string
		err  error
	}
	// A line is read aside, so that SIGTERM or SIGHUP (ctx) ends the session
	// also while diskshadow waits at the prompt.
	readLine := func() (string, error) {
		ch := make(chan read, 1)
		go func() {
			l, err := lr.ReadLine()
			ch <- read{l, err}
		}()
		select {
		case r := <-ch:
			return r.line, r.err
		case <-ctx.Done():
			lr.Close() // gives the terminal back
			return "", ctx.Err()
		}
	}
	code := ExitOK
	for ctx.Err() == nil {
		line, err := readLine()
		if ctx.Err() != nil {
			fmt.Fprintln(r.errOut, "\nStopped: ending the session.")
			code = ExitError
			break
		}
		if errors.Is(err, readline.ErrInterrupt) {
			continue
		}
		if err != nil {
			if _, plain := lr.(plainReader); plain {
				fmt.Fprintln(r.out) // after the last prompt
			}
			if !errors.Is(err, io.EOF) {
				fmt.Fprintf(r.errOut, "Error: reading the command: %s\n", err)
				code = ExitError
			}
			break
		}
		if r.logw != nil {
			fmt.Fprintf(r.logw, "%s%s\n", Prompt, line)
		}
		cmd, err := ParseLine(line)
		if err != nil {
			fmt.Fprintf(r.errOut, "Error: %s\n", errorText(err))
			continue
		}
		if cmd == nil {
			continue
		}
		err = r.exec(ctx, sh, cmd)
		if errors.Is(err, ErrExit) {
			break
		}
		if err != nil {
			fmt.Fprintf(r.errOut, "Error: %s\n", errorText(err))
		}
	}
	if err := sh.Close(ctx); err != nil {
		fmt.Fprintf(r.errOut, "Error: ending the session: %s\n", errorText(err))
		code = ExitError
	}
	return code
}
