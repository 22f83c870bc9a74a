# teeup — build, test, demo. See README.md.
GO ?= go
BIN := bin

.PHONY: all build test vet race fuzz-smoke ego-build demo clean

all: build

## build: the four binaries into ./bin (the node and agent are enclaves: sign them before use).
## Fault injection (TEEUP_FAULTS) is compiled in only with -tags faults, as the e2e tests build.
build:
	mkdir -p $(BIN)
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN)/ ./cmd/...

## test: what CI runs — vet, race tests, a fuzz smoke run of every target, and the EGo build
test: vet race fuzz-smoke ego-build

vet:
	$(GO) vet ./...
	$(GO) vet -tags faults ./...
	test -z "$$(gofmt -l .)" || (gofmt -l . && echo "gofmt: files above need formatting" && exit 1)

race:
	$(GO) test -race -count=1 -timeout 30m ./...

fuzz-smoke:
	FUZZTIME=$${FUZZTIME:-3s} ./scripts/fuzz-smoke.sh

## ego-build: the real SGX backend compiles (needs cgo; does not run outside an enclave)
ego-build:
	CGO_ENABLED=1 $(GO) vet -tags ego ./tee/...
	CGO_ENABLED=1 $(GO) build -tags ego ./tee/... ./cmd/...

## demo: a local 4-node network, payments under load, a flag-day enclave upgrade, a report
demo: build
	$(BIN)/teeup demo

clean:
	rm -rf $(BIN)
