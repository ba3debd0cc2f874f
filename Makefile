# Horizon: the two commands a new user runs are `make run` and `make test`.
GO      ?= go
BIN     := bin/horizon
PKGS    := ./...

.PHONY: all build run test bench lint fmt clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/horizon

## run: the control plane on the embedded examples/local/clusterset.yaml (no Kubernetes needed)
run: build
	./$(BIN) serve $(ARGS)

## test: everything — vet, unit, protocol, golden, and end-to-end tests, with the race detector
test:
	$(GO) vet $(PKGS)
	$(GO) test -race -count=1 -timeout 20m $(PKGS)

## bench: Go benchmarks under bench/ (see bench/README.md)
bench:
	$(GO) test -run '^$$' -bench . -benchmem $(BENCHFLAGS) ./bench/...

## lint: formatting and vet
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf bin
