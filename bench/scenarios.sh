#!/usr/bin/env bash
# The benchmarks issue's load scenarios at their sizes, one table each
# (make bench-scenarios; bench/RESULTS.md keeps the latest). About ten
# minutes on two cores, and the MCS EndpointSlice benchmark (bench/kube,
# about 2 minutes more). Usage: bench/scenarios.sh [bin/horizon-load [bin/horizon]]
set -euo pipefail
load=${1:-bin/horizon-load}
horizon=${2:-bin/horizon}
run() {
	echo
	echo "## $1"
	shift
	"$load" "$@" || echo "(failed: $*)"
}
run "(b) one hot service, 3 clusters, E x P, 50 changes" \
	run -scenario hot-service -networks 3 -mode sotw,delta -proxies 100,1000,5000 -endpoints 10,100,1000 -changes 50 -storm=false
run "(c) 2 clusters x 500 services x 2000 proxies, churn 5/s" \
	run -scenario churn -networks 2 -services 500 -endpoints 20 -proxies 2000 -rate 5 -changes 100 -mode sotw,delta -storm=false
run "(d) 3 clusters x 200 services x 50 endpoints each x 2000 proxies, 30 changes/s" \
	run -scenario churn -networks 3 -services 200 -endpoints 150 -proxies 2000 -rate 30 -changes 150 -mode sotw,delta -storm=false
run "(e) a remote cluster's gateway address changes, 10 services" \
	run -scenario gateway -services 10 -endpoints 100 -proxies 1000,5000 -changes 20 -mode sotw,delta -storm=false
run "(f) reconnect storms, 50 proxies per gRPC connection" \
	run -scenario idle -endpoints 100 -services 10 -proxies 1000,5000 -conns 0 -mode sotw,delta -storm
run "(f') reconnect storms, a gRPC connection per proxy (as Envoys)" \
	run -scenario idle -endpoints 100 -services 10 -proxies 1000 -conns 1000 -mode sotw,delta -storm
run "(g) idle memory per connected proxy" \
	run -scenario idle -endpoints 100 -proxies 1000,5000,10000 -mode sotw,delta -storm=false
run "(h) a new service (CDS) versus an endpoint change (EDS only)" \
	run -scenario new-service -endpoints 100 -proxies 1000,5000 -changes 20 -mode sotw,delta -storm=false
run "(b) through the horizon serve binary, changing its ClusterSet file" \
	run -horizon "$horizon" -scenario hot-service -networks 3 -mode sotw,delta -proxies 1000 -endpoints 100 -changes 50 -storm=false
run "through real kube-apiservers (needs make kube-tools)" \
	kube -clusters 3 -services 10 -endpoints 30 -proxies 200 -changes 20 -mode sotw,delta
run "through real kube-apiservers, 1,000 proxies and 50 services" \
	kube -clusters 3 -services 50 -endpoints 30 -proxies 1000 -changes 30 -mode sotw,delta
echo
echo "## MCS EndpointSlices through real kube-apiservers and CoreDNS (needs make kube-tools coredns-tools)"
go test -count=1 -run '^$' -bench MCS -benchtime 1x -timeout 30m ./bench/kube/ || echo "(failed: BenchmarkMCS)"
