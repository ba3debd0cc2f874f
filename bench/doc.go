// Package bench holds Horizon's performance benchmarks (in its test files)
// and, in bench/gen, the synthetic ClusterSet generator they run on. See
// README.md for how to run them and what they measured.
package bench
