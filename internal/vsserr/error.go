package vsserr

import (
	"context"
	"errors"
	"fmt"
)

// Error is a failure classified with a VSS code. Msg says what went wrong in
// this instance (which volume, which ID); Err is the underlying cause, if any.
type Error struct {
	Code Code
	Msg  string
	Err  error
}

// Error renders "NAME (0xHEX): msg: cause".
func (e *Error) Error() string {
	s := e.Code.String()
	if e.Msg != "" {
		s += ": " + e.Msg
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// Is lets errors.Is(err, vsserr.VSS_E_BAD_STATE) work.
func (e *Error) Is(target error) bool {
	var c Code
	switch t := target.(type) {
	case Code:
		c = t
	case *Error:
		c = t.Code
	default:
		return false
	}
	return c == e.Code
}

// Error makes a bare Code usable as an error and as an errors.Is target.
func (c Code) Error() string { return c.String() }

// New returns an error of the given code with a formatted message.
func New(code Code, format string, args ...any) error {
	return &Error{Code: code, Msg: fmt.Sprintf(format, args...)}
}

// Wrap classifies err with code, adding a formatted message. A nil err gives nil.
func Wrap(code Code, err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	return &Error{Code: code, Msg: fmt.Sprintf(format, args...), Err: err}
}

// CodeOf returns the VSS code of err: the code of the outermost *Error in its
// chain, VSS_E_UNEXPECTED for an unclassified error, S_OK for nil. Context
// cancellation and deadline errors that were never classified map to
// VSS_E_UNEXPECTED too; classify them where their meaning is known.
func CodeOf(err error) Code {
	if err == nil {
		return S_OK
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	var c Code
	if errors.As(err, &c) {
		return c
	}
	return VSS_E_UNEXPECTED
}

// Is reports whether err carries the given code anywhere in its chain.
func Is(err error, code Code) bool { return errors.Is(err, code) }

// Message returns what a CLI prints for err: the code name and hex value, the
// sentence for the code, and the detail of this instance.
func Message(err error) string {
	if err == nil {
		return ""
	}
	code := CodeOf(err)
	detail := err.Error()
	var e *Error
	if errors.As(err, &e) && e.Code == code {
		detail = e.Msg
		if e.Err != nil {
			if detail != "" {
				detail += ": "
			}
			detail += e.Err.Error()
		}
	}
	if errors.Is(err, context.Canceled) && code == VSS_E_UNEXPECTED {
		return "the operation was cancelled"
	}
	s := code.String() + ": " + code.Text()
	if detail != "" {
		s += "\n  " + detail
	}
	return s
}
