package scale

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"strings"
)

// BenchPattern selects BenchmarkTranslate's sidecar shapes the issue's
// rendering target names: 100 services of 1 endpoint (at most a fifth of
// the time, half the allocations), and the two it must not lose.
// (go test splits a -bench pattern at every slash, the shapes' too.)
const BenchPattern = `^BenchmarkTranslate$/^role=sidecar$/^endpoints=(1|100|1000)$/^services=(1|10|100)$`

// BenchShapes are BenchPattern's shapes, in table order.
var BenchShapes = []string{"endpoints=1/services=100", "endpoints=1000/services=1", "endpoints=100/services=10"}

// BenchRounds is how many times each binary runs the benchmarks,
// alternating.
const BenchRounds = 3

const benchLine = "#bench "

// runBench runs the benchmark binaries in turn, BenchRounds times, and
// records every result line.
func runBench(ctx context.Context, cfg Config, fig *Figures) error {
	for round := range BenchRounds {
		for _, b := range cfg.Bench {
			la := loadAvg()
			fig.Load = append(fig.Load, la)
			fmt.Fprintf(cfg.Raw, "\n## BenchmarkTranslate · round %d · %s\n# loadavg before: %.2f\n", round+1, b.Label, la)
			if cfg.Progress != nil {
				fmt.Fprintf(cfg.Progress, "BenchmarkTranslate round %d %s (loadavg %.2f)\n", round+1, b.Label, la)
			}
			var out bytes.Buffer
			cmd := exec.CommandContext(ctx, b.Path, "-test.run", "^$", "-test.bench", BenchPattern, "-test.benchmem", "-test.count", "1")
			cmd.Stdout, cmd.Stderr = &out, &out
			err := cmd.Run()
			cfg.Raw.Write(out.Bytes())
			if err != nil {
				return fmt.Errorf("%s %s: %w", b.Label, b.Path, err)
			}
			sc := bufio.NewScanner(&out)
			for sc.Scan() {
				if t := sc.Text(); strings.HasPrefix(t, "BenchmarkTranslate/") {
					fmt.Fprintf(cfg.Raw, "%s%s %s\n", benchLine, b.Label, t)
					if err := fig.addBench(b.Label, t); err != nil {
						return err
					}
				}
			}
		}
	}
	return nil
}

// addBench parses one `go test -bench` result line.
func (f *Figures) addBench(label, line string) error {
	fields := strings.Fields(line)
	if len(fields) < 4 {
		return fmt.Errorf("benchmark line %q", line)
	}
	name := fields[0]
	if i := strings.LastIndex(name, "-"); i > 0 {
		name = name[:i] // GOMAXPROCS suffix
	}
	shape := strings.TrimPrefix(name, "BenchmarkTranslate/role=sidecar/")
	bf := f.Bench[BenchKey{label, shape}]
	for i := 2; i+1 < len(fields); i += 2 {
		v, err := strconv.ParseFloat(fields[i], 64)
		if err != nil {
			continue
		}
		switch fields[i+1] {
		case "ns/op":
			bf.NsPerOp = append(bf.NsPerOp, v)
		case "allocs/op":
			bf.AllocsPerOp = append(bf.AllocsPerOp, v)
		case "B/op":
			bf.BytesPerOp = append(bf.BytesPerOp, v)
		}
	}
	f.Bench[BenchKey{label, shape}] = bf
	return nil
}

// median of vs; 0 if none.
func median(vs []float64) float64 {
	if len(vs) == 0 {
		return 0
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	return s[len(s)/2]
}
