# Horizon: the two commands a new user runs are `make run` and `make test`.
GO      ?= go
BIN     := bin/horizon
# RUN_POLICY is the traffic policy `make run` serves (one routed host).
RUN_POLICY ?= examples/local/policy.yaml
PKGS    := ./...

# Real kube-apiserver and etcd for the Kubernetes tests, built from their Go
# modules (a separate module; minutes on a fresh machine, then cached).
KUBE_TOOLS     := discovery/kube/kubetest/tools
KUBE_ASSETS    := $(CURDIR)/bin/k8s
export KUBEBUILDER_ASSETS := $(KUBE_ASSETS)

# Real CoreDNS (v1.15.0, only the plugins the DNS tests use) for the
# clusterset.local tests, built from its Go module (a separate module).
DNS_TOOLS      := discovery/kube/dnstest/tools
COREDNS        := $(CURDIR)/bin/coredns

# Real SPIRE server and agent (v1.13.3) for the opt-in SPIRE tier, built from
# SPIRE's Go module (a separate module whose go.sum is seeded from SPIRE's own).
SPIRE_TOOLS    := cmd/horizon/spire-tools
SPIRE_ASSETS   := $(CURDIR)/bin/spire

.PHONY: all build image run examples test fuzz fuzz-smoke bench bench-nodes bench-load bench-scenarios bench-scale chaos lint fmt clean kube-tools node-tools coredns-tools spire-tools test-spire

all: build

# The version horizon reports (horizon version, horizon_build_info).
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)

build:
	$(GO) build -buildvcs=auto -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/horizon

## image: Horizon's OCI image (static binary, uid 65532, CA bundle) into $(IMAGE_OUT) without a Docker engine,
## and as a docker tarball $(IMAGE_OUT).tar for `ctr -n k8s.io images import` (internal/nodetest's nodes)
IMAGE_OUT    ?= bin/image
IMAGE_REF    ?= horizon:$(VERSION)
IMAGE_SOURCE ?= https://github.com/horizonmesh/horizon
CA_BUNDLE    ?= /etc/ssl/certs/ca-certificates.crt
IMAGE_ARCH   := $(shell $(GO) env GOARCH)
IMAGE_BIN    := bin/horizon-linux-$(IMAGE_ARCH)

image:
	CGO_ENABLED=0 GOOS=linux GOARCH=$(IMAGE_ARCH) $(GO) build -trimpath -buildvcs=auto -ldflags "-s -w -X main.version=$(VERSION)" -o $(IMAGE_BIN) ./cmd/horizon
	$(GO) run ./cmd/horizon-image -binary $(IMAGE_BIN) -arch $(IMAGE_ARCH) -ca-bundle $(CA_BUNDLE) \
		-version $(VERSION) -revision "$$(git rev-parse HEAD 2>/dev/null)" -source $(IMAGE_SOURCE) \
		-ref $(IMAGE_REF) -out $(IMAGE_OUT) -tarball $(IMAGE_OUT).tar

## run: the control plane on the embedded examples/local/clusterset.yaml (no Kubernetes needed), with the traffic policy $(RUN_POLICY) (RUN_POLICY= for none)
run: build
	./$(BIN) serve $(if $(RUN_POLICY),--policy $(RUN_POLICY)) $(ARGS)

## examples: write examples/kubernetes's manifests from the Helm chart charts/horizon (with examples/kubernetes/values.yaml), and workload-injected.yaml as its injector injects workload.yaml
examples:
	$(GO) run ./charts/cmd/render-examples -chart charts/horizon -values examples/kubernetes/values.yaml -out examples/kubernetes

## test: everything — vet, unit, protocol, golden, and end-to-end tests, with the race detector; then every fuzz target briefly (fuzz-smoke)
test: kube-tools node-tools coredns-tools
	$(GO) vet $(PKGS)
	$(GO) test -race -count=1 -timeout 20m $(PKGS)
	$(MAKE) fuzz-smoke

# How long each fuzz target runs: in `make test` (fuzz-smoke) and `make fuzz`.
FUZZSMOKE ?= 5s
FUZZTIME  ?= 1m

## fuzz-smoke: every native Go fuzz target (func FuzzX, found automatically) for $(FUZZSMOKE) each
fuzz-smoke:
	GO=$(GO) .ci/fuzz $(FUZZSMOKE)

## fuzz: every fuzz target for $(FUZZTIME) each (FUZZTIME=10m make fuzz); crashers land in the package's testdata/fuzz/FuzzX/
fuzz:
	GO=$(GO) .ci/fuzz $(FUZZTIME)

## chaos: the fault suite's long scenarios (internal/chaos; minutes of outage, 1,000 proxies; figures in RELIABILITY.md). `make test` runs the same scenarios short
chaos: kube-tools
	CHAOS_LONG=1 $(GO) test -race -count=1 -timeout 60m -v -run 'TestF[0-9]' ./internal/chaos/

## bench: the Go benchmarks under bench/, then the load harness's table for one hot service (bench/README.md; 1–2 min)
bench:
	$(GO) test -run '^$$' -bench . -skip '^BenchmarkMCS$$' -benchmem $(BENCHFLAGS) ./bench/...
	$(GO) build -o bin/horizon-load ./bench/cmd/horizon-load
	bin/horizon-load run -scenario hot-service -networks 3 -mode sotw,delta -proxies 100,1000 -endpoints 10,100 -changes 50 -storm=false $(LOADFLAGS)

## bench-nodes: the mesh in pods on two real kubelet nodes (as root), its figures into bin/nodes-report.md (bench/RESULTS.md, "Real nodes")
bench-nodes: kube-tools node-tools
	@mkdir -p bin
	HORIZON_E2E_REPORT=$(CURDIR)/bin/nodes-report.md $(GO) test -count=1 -run TestMeshOnNodes -v ./e2e/
	@cat bin/nodes-report.md

## bench-load: the ADS load harness (server and a fleet of simulated proxies in two processes; see bench/README.md)
bench-load:
	$(GO) build -o bin/horizon-load ./bench/cmd/horizon-load
	bin/horizon-load run -scenario hot-service,churn -mode sotw,delta -proxies 100,1000 -endpoints 10,100 -changes 20 $(LOADFLAGS)

## bench-scale: the scale issue's target matrix (bench/scale.sh): BEFORE=old horizon-load, this tree's as AFTER; BENCH_BEFORE=old `go test -c ./bench/` adds BenchmarkTranslate (~15 min; QUICK=1 for a smoke check)
bench-scale:
	$(GO) build -o bin/horizon-load ./bench/cmd/horizon-load
	$(if $(BENCH_BEFORE),$(GO) test -c -o bin/bench.test ./bench/)
	AFTER=$${AFTER:-bin/horizon-load} $(if $(BENCH_BEFORE),BENCH_AFTER=$${BENCH_AFTER:-bin/bench.test}) bench/scale.sh

## bench-scenarios: every load scenario of the benchmarks issue at its size, through real kube-apiservers, and the MCS EndpointSlice scenario with CoreDNS (about 12 min; bench/RESULTS.md)
bench-scenarios: kube-tools coredns-tools build
	$(GO) build -o bin/horizon-load ./bench/cmd/horizon-load
	bench/scenarios.sh bin/horizon-load $(BIN)

## lint: formatting and vet
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

## kube-tools: build kube-apiserver, etcd and kube-controller-manager into bin/k8s (skipped when up to date)
kube-tools: $(KUBE_ASSETS)/kube-apiserver $(KUBE_ASSETS)/etcd $(KUBE_ASSETS)/kube-controller-manager

$(KUBE_ASSETS)/kube-apiserver $(KUBE_ASSETS)/etcd $(KUBE_ASSETS)/kube-controller-manager &: $(KUBE_TOOLS)/go.mod $(KUBE_TOOLS)/go.sum $(KUBE_TOOLS)/kube-apiserver/main.go $(KUBE_TOOLS)/etcd/main.go $(KUBE_TOOLS)/kube-controller-manager/main.go
	@mkdir -p $(KUBE_ASSETS)
	cd $(KUBE_TOOLS) && $(GO) build -o $(KUBE_ASSETS)/ ./kube-apiserver ./etcd ./kube-controller-manager
	@touch $(KUBE_ASSETS)/kube-apiserver $(KUBE_ASSETS)/etcd $(KUBE_ASSETS)/kube-controller-manager

## node-tools: what internal/nodetest's real kubelet nodes need: containerd, runc, CNI plugins and
## iptables from the OS packages (as root, only when missing) and the kubelet in bin/k8s (skipped when up to date)
NODE_PACKAGES := containerd runc containernetworking-plugins iptables

node-tools: $(KUBE_ASSETS)/kubelet
	@if [ "$$(id -u)" != 0 ]; then \
		echo "node-tools: not root, so no OS packages installed; the kubelet node tests will skip"; \
	elif command -v containerd >/dev/null && command -v runc >/dev/null && command -v iptables >/dev/null && [ -x /usr/lib/cni/bridge ]; then \
		: ; \
	else \
		echo "node-tools: installing $(NODE_PACKAGES)"; \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y $(NODE_PACKAGES); \
	fi

$(KUBE_ASSETS)/kubelet: $(KUBE_TOOLS)/go.mod $(KUBE_TOOLS)/go.sum $(KUBE_TOOLS)/kubelet/main.go
	@mkdir -p $(KUBE_ASSETS)
	cd $(KUBE_TOOLS) && $(GO) build -o $(KUBE_ASSETS)/ ./kubelet
	@touch $(KUBE_ASSETS)/kubelet

## coredns-tools: build CoreDNS into bin/coredns (skipped when up to date)
coredns-tools: $(COREDNS)

$(COREDNS): $(DNS_TOOLS)/go.mod $(DNS_TOOLS)/go.sum $(wildcard $(DNS_TOOLS)/*/main.go)
	@mkdir -p $(dir $(COREDNS))
	cd $(DNS_TOOLS) && $(GO) build -o $(COREDNS) ./coredns
	@touch $(COREDNS)

## spire-tools: build spire-server and spire-agent into bin/spire (skipped when up to date; long)
spire-tools: $(SPIRE_ASSETS)/spire-server $(SPIRE_ASSETS)/spire-agent

$(SPIRE_ASSETS)/spire-server $(SPIRE_ASSETS)/spire-agent &: $(SPIRE_TOOLS)/go.mod $(SPIRE_TOOLS)/go.sum
	@mkdir -p $(SPIRE_ASSETS)
	cd $(SPIRE_TOOLS) && $(GO) build -o $(SPIRE_ASSETS)/ github.com/spiffe/spire/cmd/spire-server github.com/spiffe/spire/cmd/spire-agent
	@touch $(SPIRE_ASSETS)/spire-server $(SPIRE_ASSETS)/spire-agent

## test-spire: the opt-in SPIRE tier: Horizon's mTLS port and Envoy's SDS secrets from a real SPIRE agent
test-spire: spire-tools
	HORIZON_SPIRE_BIN=$(SPIRE_ASSETS) $(GO) test -race -count=1 -timeout 10m -run 'Spire' -v ./cmd/horizon

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf bin

## demo: two networks on loopback ranges, a horizon gateway each, a proxyless client that fails over through west's gateway and back
.PHONY: demo
demo:
	./examples/demo/demo.sh
