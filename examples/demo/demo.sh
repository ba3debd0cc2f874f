#!/usr/bin/env bash
# make demo: two networks on loopback address ranges, Horizon serving both,
# one `horizon gateway` each, an echo server in each, and a proxyless gRPC
# client in east that prints which cluster answered: east first, west through
# west's gateway while east's server is stopped, then east again.
#
# Everything is a process of this script on 127.0.0.1 and 127.9x.x.x; it stops
# them all when it ends. Logs go to $DEMO_DIR (default: a temporary directory).
set -euo pipefail

cd "$(dirname "$0")/../.."
BIN=${BIN:-bin/horizon}
APP=bin/demo-app
DEMO_DIR=${DEMO_DIR:-$(mktemp -d -t horizon-demo.XXXXXX)}
XDS=127.0.0.1:25010
MTLS=127.0.0.1:25012
HTTP=127.0.0.1:25014

go build -o "$BIN" ./cmd/horizon
go build -o "$APP" ./examples/demo/app
if ! { "$BIN" gateway -h 2>&1 || true; } | grep -q -- -listen; then
	echo "demo: this horizon has no 'gateway' command" >&2
	exit 1
fi

pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	echo "logs: $DEMO_DIR"
}
trap cleanup EXIT
start() { # start NAME COMMAND...: run in the background, output to DEMO_DIR/NAME.log
	local name=$1; shift
	"$@" >"$DEMO_DIR/$name.log" 2>&1 &
	pids+=($!)
	eval "pid_$name=$!"
}
wait_for() { # wait_for WHAT COMMAND...: retry for up to 30s
	local what=$1; shift
	for _ in $(seq 300); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
	echo "demo: timed out waiting for $what (logs: $DEMO_DIR)" >&2
	exit 1
}

echo "== one trust root, an intermediate per cluster (horizon ca)"
"$BIN" ca init --trust-domain cluster.local --out "$DEMO_DIR/ca" >/dev/null
for c in east-1 west-1; do
	"$BIN" ca intermediate --cluster "$c" --root-dir "$DEMO_DIR/ca" --out "$DEMO_DIR/ca/$c" >/dev/null
done

echo "== horizon serve on examples/demo/clusterset.yaml (xDS $XDS, certificates $MTLS)"
start horizon "$BIN" serve --clusterset examples/demo/clusterset.yaml --ca-dir "$DEMO_DIR/ca" \
	--xds-address "$XDS" --mtls-address "$MTLS" --http-address "$HTTP"
wait_for "horizon /readyz" curl -sf "http://$HTTP/readyz"

# workload CLUSTER SA: a first SVID from the cluster's intermediate (no
# Kubernetes token to ask Horizon with), which `horizon agent` renews from
# Horizon and keeps current; the workload reads the agent's files.
workload() {
	local cluster=$1 sa=$2 dir="$DEMO_DIR/certs-$1-$2"
	"$BIN" ca issue --ca-dir "$DEMO_DIR/ca/$cluster" --id "spiffe://cluster.local/ns/demo/sa/$sa" --out "$dir" --ttl 1m >/dev/null
	start "agent_${cluster//-/_}_$sa" "$BIN" agent --address "$MTLS" --out "$dir"
	"$BIN" bootstrap --role proxyless --cluster "$cluster" --namespace demo --service-account "$sa" \
		--xds-address "$XDS" --cert-dir "$dir" --id "proxyless~$cluster~$sa" >"$DEMO_DIR/bootstrap-$cluster-$sa.json"
}
echo "== workloads: SVIDs kept current by horizon agent"
workload east-1 echo
workload west-1 echo
workload east-1 client

start_echo() { # start_echo CLUSTER PORT
	start "echo_${1//-/_}" env GRPC_XDS_BOOTSTRAP="$DEMO_DIR/bootstrap-$1-echo.json" \
		"$APP" server --cluster "$1" --port "$2" --allow spiffe://cluster.local/ns/demo/sa/client
	wait_for "echo server in $1" grep -q '^serving' "$DEMO_DIR/echo_${1//-/_}.log"
}
echo "== echo servers (xDS-enabled grpc-go, mutual TLS, only the client's SPIFFE ID allowed)"
start_echo east-1 17070
start_echo west-1 27070

echo "== one horizon gateway per network"
start gw_east "$BIN" gateway --xds-address "$XDS" --cluster east-1 --id gateway~east-1 \
	--listen 127.91.0.2:15443 --http-address 127.91.0.2:15021 --drain-timeout 1s
start gw_west "$BIN" gateway --xds-address "$XDS" --cluster west-1 --id gateway~west-1 \
	--listen 127.92.0.2:15443 --http-address 127.92.0.2:15021 --drain-timeout 1s
wait_for "east's gateway" curl -sf http://127.91.0.2:15021/readyz
wait_for "west's gateway" curl -sf http://127.92.0.2:15021/readyz

echo
echo "== a client in east-1 calls echo.demo.svc.clusterset.local:7070 every 500ms:"
echo "   its own network first; west, through west's gateway (127.92.0.2:15443), while"
echo "   east's echo server is stopped; east again once it is back"
GRPC_XDS_BOOTSTRAP="$DEMO_DIR/bootstrap-east-1-client.json" GRPC_EXPERIMENTAL_XDS_SNI=true \
	"$APP" client --interval 500ms --count 36 &
client=$!
pids+=($client)
sleep 4
echo "-- stopping east's echo server"
kill "$pid_echo_east_1"
wait "$pid_echo_east_1" 2>/dev/null || true
sleep 6
echo "-- starting east's echo server again"
start_echo east-1 17070
wait "$client"
