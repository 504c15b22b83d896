package wire

import (
	"context"
	"errors"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/protoadapt"

	vssv1 "github.com/linuxvss/vss/api/vss/v1"
	"github.com/linuxvss/vss/internal/vsserr"
)

// MaxMessageSize bounds the messages vssd accepts (a request) and its
// clients accept (a listing of every shadow copy).
const MaxMessageSize = 64 << 20

// grpcCodes gives the gRPC status code for the VSS codes that have an
// obvious one; the VSS code in the VssError detail is what counts.
var grpcCodes = map[vsserr.Code]codes.Code{
	vsserr.E_ACCESSDENIED:                            codes.PermissionDenied,
	vsserr.E_INVALIDARG:                              codes.InvalidArgument,
	vsserr.E_NOTIMPL:                                 codes.Unimplemented,
	vsserr.E_OUTOFMEMORY:                             codes.ResourceExhausted,
	vsserr.VSS_E_OBJECT_NOT_FOUND:                    codes.NotFound,
	vsserr.VSS_E_PROVIDER_NOT_REGISTERED:             codes.NotFound,
	vsserr.VSS_E_OBJECT_ALREADY_EXISTS:               codes.AlreadyExists,
	vsserr.VSS_E_SNAPSHOT_SET_IN_PROGRESS:            codes.Aborted,
	vsserr.VSS_E_REVERT_IN_PROGRESS:                  codes.Aborted,
	vsserr.VSS_E_VOLUME_IN_USE:                       codes.FailedPrecondition,
	vsserr.VSS_E_BAD_STATE:                           codes.FailedPrecondition,
	vsserr.VSS_E_INSUFFICIENT_STORAGE:                codes.ResourceExhausted,
	vsserr.VSS_E_MAXIMUM_NUMBER_OF_SNAPSHOTS_REACHED: codes.ResourceExhausted,
	vsserr.VSS_E_MAXIMUM_NUMBER_OF_VOLUMES_REACHED:   codes.ResourceExhausted,
	vsserr.VSS_E_UNEXPECTED:                          codes.Internal,
}

// Detail returns the part of err's text that belongs to this instance:
// what vsserr.Message prints under the code's sentence.
func Detail(err error) string {
	code := vsserr.CodeOf(err)
	var e *vsserr.Error
	if !errors.As(err, &e) || e.Code != code {
		return err.Error()
	}
	d := e.Msg
	if e.Err != nil {
		if d != "" {
			d += ": "
		}
		d += e.Err.Error()
	}
	return d
}

// ToStatus turns a service error into the gRPC status error of the API:
// its details carry a VssError with err's VSS code and detail and, when
// partial is a valid message, partial too (what was done before the
// failure). A nil err gives nil.
func ToStatus(err error, partial proto.Message) error {
	if err == nil {
		return nil
	}
	code := vsserr.CodeOf(err)
	gc, ok := grpcCodes[code]
	switch {
	case errors.Is(err, context.Canceled):
		gc = codes.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		gc = codes.DeadlineExceeded
	case !ok:
		gc = codes.Unknown
	}
	st := status.New(gc, err.Error())
	details := []protoadapt.MessageV1{&vssv1.VssError{Hresult: uint32(code), Message: Detail(err)}}
	if partial != nil && partial.ProtoReflect().IsValid() {
		details = append(details, protoadapt.MessageV1Of(partial))
	}
	if withDetails, derr := st.WithDetails(details...); derr == nil {
		st = withDetails
	}
	return st.Err()
}

// contextErrors are the context errors whose text a detail may end with.
var contextErrors = []error{context.Canceled, context.DeadlineExceeded}

// FromStatus turns the error of a call back into what the service
// returned: a *vsserr.Error with the same code, whose Error() and
// vsserr.Message read as the service's did. An error that carries no
// VssError (the daemon went away, the call was cancelled here) is
// classified VSS_E_UNEXPECTED and keeps its cause. When partial is not nil
// and the status carries a message of its type, that message is merged
// into partial and hasPartial is true.
func FromStatus(err error, partial proto.Message) (hasPartial bool, _ error) {
	if err == nil {
		return false, nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return false, vsserr.Wrap(vsserr.VSS_E_UNEXPECTED, err, "calling vssd")
	}
	var ve *vssv1.VssError
	for _, d := range st.Details() {
		switch m := d.(type) {
		case *vssv1.VssError:
			if ve == nil {
				ve = m
			}
		case proto.Message:
			if partial != nil && m.ProtoReflect().Descriptor().FullName() == partial.ProtoReflect().Descriptor().FullName() {
				proto.Merge(partial, m)
				hasPartial = true
			}
		}
	}
	if ve == nil {
		switch st.Code() {
		case codes.Canceled:
			return hasPartial, vsserr.Wrap(vsserr.VSS_E_UNEXPECTED, context.Canceled, "calling vssd")
		case codes.DeadlineExceeded:
			return hasPartial, vsserr.Wrap(vsserr.VSS_E_UNEXPECTED, context.DeadlineExceeded, "calling vssd")
		case codes.Unavailable:
			return hasPartial, vsserr.Wrap(vsserr.VSS_E_UNEXPECTED, errors.New(st.Message()), "vssd is not reachable")
		}
		return hasPartial, vsserr.Wrap(vsserr.VSS_E_UNEXPECTED, errors.New(st.Message()), "vssd answered %s", st.Code())
	}
	e := &vsserr.Error{Code: vsserr.Code(ve.GetHresult()), Msg: ve.GetMessage()}
	// A detail that ends with a context error's text was that error: keep
	// it as the cause, so that errors.Is and vsserr.Message see it.
	for _, ce := range contextErrors {
		if rest, ok := strings.CutSuffix(e.Msg, ce.Error()); ok {
			e.Msg, e.Err = strings.TrimSuffix(rest, ": "), ce
			break
		}
	}
	return hasPartial, e
}
