#!/usr/bin/env bash
# The scale issue's target matrix (issue 21; bench/scale): every row, both
# protocols, with one or two horizon-load binaries, before and after
# interleaved row by row. Writes the raw output (every run's command, load
# average, table and figures) to $OUT and prints the markdown tables for
# bench/RESULTS.md, "Scale (issue 21)", and the replica extrapolation.
# About 15 minutes for both binaries on two cores; QUICK=1 is a smoke check
# of the tooling (26 tiny runs, each with a 1 s settle: 75–95 s with one binary at load 15–26 here, not timed on a quiet machine; nothing meaningful).
#
# Usage: BEFORE=/path/old/horizon-load [AFTER=/path/new/horizon-load]
#        [BENCH_BEFORE=old-bench.test BENCH_AFTER=new-bench.test]  # go test -c ./bench/
#        [QUICK=1] [MODES=sotw,delta] [ROWS=c,d,...] [OUT=bench/results/scale-X.txt] bench/scale.sh
set -euo pipefail
if [[ ! -f go.mod || ! -d bench/scale ]]; then
	echo "$0: run it from the repository root" >&2
	exit 2
fi
args=(run)
[[ -n "${BEFORE:-}" ]] && args+=(-before "$BEFORE")
[[ -n "${AFTER:-}" ]] && args+=(-after "$AFTER")
[[ -n "${BENCH_BEFORE:-}" ]] && args+=(-bench-before "$BENCH_BEFORE")
[[ -n "${BENCH_AFTER:-}" ]] && args+=(-bench-after "$BENCH_AFTER")
[[ -n "${QUICK:-}" && "${QUICK}" != 0 ]] && args+=(-quick)
[[ -n "${MODES:-}" ]] && args+=(-modes "$MODES")
[[ -n "${ROWS:-}" ]] && args+=(-rows "$ROWS")
[[ -n "${OUT:-}" ]] && args+=(-out "$OUT")
if [[ -z "${BEFORE:-}" && -z "${AFTER:-}" ]]; then
	echo "usage: BEFORE=old/horizon-load [AFTER=new/horizon-load] $0 (see its header)" >&2
	exit 2
fi
go build -o bin/horizon-scale ./bench/cmd/horizon-scale
exec bin/horizon-scale "${args[@]}"
