#!/bin/sh
# Regenerates the Go code of the protobuf definitions under api/ with protoc,
# protoc-gen-go and protoc-gen-go-grpc (taken from $(go env GOPATH)/bin if
# they are not on PATH). The generated files are committed next to the
# .proto files.
#
#   go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
#   go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
PATH="$PATH:$(go env GOPATH)/bin"
export PATH

for tool in protoc protoc-gen-go protoc-gen-go-grpc; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "genproto: $tool not found (see the comment at the top of $0)" >&2
		exit 1
	fi
done

find api -name '*.proto' | sort | while read -r proto; do
	protoc -I api \
		--go_out=api --go_opt=paths=source_relative \
		--go-grpc_out=api --go-grpc_opt=paths=source_relative \
		"$proto"
	echo "genproto: $proto"
done
