# Minimal build entry points; `go build ./...` and `go test ./...` work too.

GO ?= go
BIN ?= bin

.PHONY: build proto

# build compiles the commands into $(BIN)/.
build:
	$(GO) build -o $(BIN)/ ./cmd/...

# proto regenerates the Go code of api/**/*.proto (committed).
proto:
	./scripts/genproto.sh
