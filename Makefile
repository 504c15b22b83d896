# Minimal build entry points; `go build ./...` and `go test ./...` work too.

GO ?= go
BIN ?= bin

.PHONY: build proto test test-long

# build compiles the commands into $(BIN)/.
build:
	$(GO) build -o $(BIN)/ ./cmd/...

# proto regenerates the Go code of api/**/*.proto (committed).
proto:
	./scripts/genproto.sh

# test runs every test as root (the default, short mode: what CI runs).
test:
	./scripts/test.sh

# test-long runs them in the long mode: longer fuzzing, more repetitions of
# the consistency proof, the fault matrix on every provider, a longer load.
test-long:
	VSS_TEST_MODE=long ./scripts/test.sh
