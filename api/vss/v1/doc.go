// Package vssv1 is the generated Go code of the vss.v1 protobuf API
// (admin.proto): the Admin gRPC service that vssd serves on its unix socket
// and that vssadmin calls. Regenerate it with scripts/genproto.sh; the
// conversions to and from the service's Go types live in
// internal/apiserver/wire.
package vssv1
