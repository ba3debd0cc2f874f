package scale

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/horizonmesh/horizon/bench/load"
)

// Binary is one horizon-load build: "before" or "after".
type Binary struct {
	Label string
	Path  string
}

// Config is one run of the matrix.
type Config struct {
	Binaries []Binary // one or two; each row runs them in this order
	Modes    []string // sotw, delta
	Rows     []Row
	// Bench, optional, are `go test -c ./bench/` binaries with the same
	// labels: BenchmarkTranslate's shapes, run interleaved, -count 3.
	Bench []Binary
	// Raw receives every run's command, load average, table and figures.
	Raw io.Writer
	// Progress receives one line per run (nil: none).
	Progress io.Writer
}

// Figures are every run's summary, by label, row and mode.
type Figures struct {
	Machine string
	Runs    map[Key]load.Summary
	// Bench are BenchmarkTranslate's figures, by label and shape.
	Bench map[BenchKey]BenchFigure
	// Load are /proc/loadavg's first field before each run, for the record.
	Load []float64
}

// Key names one run.
type Key struct{ Label, Row, Mode string }

// BenchKey names one benchmark shape of one binary.
type BenchKey struct{ Label, Shape string }

// BenchFigure is one shape's median over its runs.
type BenchFigure struct {
	NsPerOp     []float64
	AllocsPerOp []float64
	BytesPerOp  []float64
}

// figuresLine prefixes the machine-readable line of a run in the raw
// output, which ReadFigures parses back.
const figuresLine = "#figures "

type rawFigures struct {
	Label   string       `json:"label"`
	Row     string       `json:"row"`
	Mode    string       `json:"mode"`
	Summary load.Summary `json:"summary"`
}

// Run runs every row for every mode and binary, interleaved (row 1 sotw
// before, row 1 sotw after, row 1 delta before, ...). A run that fails is
// recorded (its figures, if it printed any, are kept) and the matrix goes
// on; the failures are returned joined.
func Run(ctx context.Context, cfg Config) (*Figures, error) {
	fig := &Figures{Machine: load.Machine(), Runs: map[Key]load.Summary{}, Bench: map[BenchKey]BenchFigure{}}
	fmt.Fprintf(cfg.Raw, "# scale matrix (bench/scale), %s\n# machine: %s\n", time.Now().UTC().Format(time.RFC3339), fig.Machine)
	for _, b := range cfg.Binaries {
		fmt.Fprintf(cfg.Raw, "# %s: %s\n", b.Label, b.Path)
	}
	tmp, err := os.MkdirTemp("", "scale-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	var errs []error
	for _, row := range cfg.Rows {
		for _, mode := range cfg.Modes {
			for _, b := range cfg.Binaries {
				if ctx.Err() != nil {
					return fig, errors.Join(append(errs, ctx.Err())...)
				}
				s, err := runOne(ctx, cfg, fig, tmp, row, mode, b)
				if err != nil {
					errs = append(errs, fmt.Errorf("%s %s %s: %w", row.ID, mode, b.Label, err))
				}
				if s != nil {
					fig.Runs[Key{b.Label, row.ID, mode}] = *s
				}
			}
		}
	}
	if len(cfg.Bench) > 0 {
		if err := runBench(ctx, cfg, fig); err != nil {
			errs = append(errs, err)
		}
	}
	return fig, errors.Join(errs...)
}

func runOne(ctx context.Context, cfg Config, fig *Figures, tmp string, row Row, mode string, b Binary) (*load.Summary, error) {
	jsonPath := filepath.Join(tmp, "figures.json")
	os.Remove(jsonPath)
	args := append([]string{"run"}, row.Args...)
	args = append(args, "-mode", mode, "-json", jsonPath)
	la := loadAvg()
	fig.Load = append(fig.Load, la)
	fmt.Fprintf(cfg.Raw, "\n## %s · %s · %s: %s\n# loadavg before: %.2f\n# %s %s\n", row.ID, mode, b.Label, row.Title, la, b.Path, strings.Join(args, " "))
	if cfg.Progress != nil {
		fmt.Fprintf(cfg.Progress, "%s %s %s %s (loadavg %.2f)\n", time.Now().UTC().Format("15:04:05"), row.ID, mode, b.Label, la)
	}
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, b.Path, args...)
	cmd.Stdout = &out
	cmd.Stderr = &out
	start := time.Now()
	runErr := cmd.Run()
	cfg.Raw.Write(out.Bytes())
	fmt.Fprintf(cfg.Raw, "# wall %.1f s, loadavg after: %.2f\n", time.Since(start).Seconds(), loadAvg())
	data, err := os.ReadFile(jsonPath)
	if err != nil {
		return nil, errors.Join(runErr, fmt.Errorf("no figures: %w", err))
	}
	var s load.Summary
	if err := json.Unmarshal(bytes.TrimSpace(data), &s); err != nil {
		return nil, errors.Join(runErr, fmt.Errorf("figures: %w", err))
	}
	line, err := json.Marshal(rawFigures{Label: b.Label, Row: row.ID, Mode: mode, Summary: s})
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(cfg.Raw, "%s%s\n", figuresLine, line)
	return &s, runErr
}

// loadAvg is the 1-minute load average.
func loadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return -1
	}
	var l float64
	fmt.Sscan(string(b), &l)
	return l
}

// ReadFigures reads back the figures a Run wrote to its raw output.
func ReadFigures(r io.Reader) (*Figures, error) {
	fig := &Figures{Runs: map[Key]load.Summary{}, Bench: map[BenchKey]BenchFigure{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 16<<20)
	line := 0
	for sc.Scan() {
		line++
		t := sc.Text()
		switch {
		case strings.HasPrefix(t, "# machine: ") && fig.Machine == "":
			fig.Machine = strings.TrimPrefix(t, "# machine: ")
		case strings.HasPrefix(t, "# loadavg before: "):
			if l, err := strconv.ParseFloat(strings.TrimPrefix(t, "# loadavg before: "), 64); err == nil {
				fig.Load = append(fig.Load, l)
			}
		case strings.HasPrefix(t, figuresLine):
			var rf rawFigures
			if err := json.Unmarshal([]byte(strings.TrimPrefix(t, figuresLine)), &rf); err != nil {
				return nil, fmt.Errorf("line %d: %w", line, err)
			}
			fig.Runs[Key{rf.Label, rf.Row, rf.Mode}] = rf.Summary
		case strings.HasPrefix(t, benchLine):
			label, rest, ok := strings.Cut(strings.TrimPrefix(t, benchLine), " ")
			if !ok {
				return nil, fmt.Errorf("line %d: %q: want %s<label> <benchmark line>", line, t, benchLine)
			}
			if err := fig.addBench(label, rest); err != nil {
				return nil, fmt.Errorf("line %d: %w", line, err)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(fig.Runs) == 0 {
		return nil, errors.New("no " + strings.TrimSpace(figuresLine) + " line")
	}
	return fig, nil
}

// Labels returns the labels of the figures' runs, "before" first.
func (f *Figures) Labels() []string {
	seen := map[string]bool{}
	for k := range f.Runs {
		seen[k.Label] = true
	}
	var out []string
	for _, l := range []string{"before", "after"} {
		if seen[l] {
			out = append(out, l)
			delete(seen, l)
		}
	}
	for l := range seen {
		out = append(out, l)
	}
	return out
}
