package load

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"runtime"
	"time"
)

// The fleet runs in a process of its own and is driven over a pipe: one
// JSON command per line in, one JSON reply per line out. The server side
// only ever learns times the proxies recorded themselves (wall clock, Unix
// nanoseconds), never when a reply reached it.

type command struct {
	Op        string   `json:"op"` // start, sync, await, report, storm, quit
	Syncs     int      `json:"syncs,omitempty"`
	Marker    int      `json:"marker,omitempty"`
	Networks  []string `json:"networks,omitempty"`
	TimeoutMS int64    `json:"timeout_ms,omitempty"`
}

type reply struct {
	Error   string       `json:"error,omitempty"`
	At      int64        `json:"at,omitempty"`
	Proxies []ProxyStats `json:"proxies,omitempty"`
	// Fleet process memory, for the record.
	HeapBytes uint64 `json:"heap_bytes,omitempty"`
}

// ServeFleet builds a fleet from cfg and answers commands from in on out
// until "quit", the end of in, or ctx is done.
func ServeFleet(ctx context.Context, cfg FleetConfig, in io.Reader, out io.Writer) error {
	f, err := NewFleet(cfg)
	if err != nil {
		return err
	}
	defer f.Stop()
	dec := json.NewDecoder(bufio.NewReader(in))
	w := bufio.NewWriter(out)
	enc := json.NewEncoder(w)
	for {
		var c command
		if err := dec.Decode(&c); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("fleet: read command: %w", err)
		}
		if c.Op == "quit" {
			return nil
		}
		r := f.handle(ctx, c)
		if err := enc.Encode(r); err != nil {
			return fmt.Errorf("fleet: write reply: %w", err)
		}
		if err := w.Flush(); err != nil {
			return fmt.Errorf("fleet: write reply: %w", err)
		}
	}
}

func (f *Fleet) handle(ctx context.Context, c command) reply {
	var r reply
	var err error
	wait := func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(ctx, time.Duration(c.TimeoutMS)*time.Millisecond)
	}
	switch c.Op {
	case "start":
		err = f.Start(ctx)
		r.At = time.Now().UnixNano()
	case "storm":
		var at time.Time
		at, err = f.Storm(ctx)
		r.At = at.UnixNano()
	case "sync":
		wctx, cancel := wait()
		r.At, err = f.WaitSynced(wctx, c.Syncs)
		cancel()
	case "await":
		wctx, cancel := wait()
		r.At, err = f.Await(wctx, c.Marker, c.Networks)
		cancel()
	case "report":
		r.Proxies = f.Stats()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		r.HeapBytes = ms.HeapInuse
	default:
		err = fmt.Errorf("unknown command %q", c.Op)
	}
	if err != nil {
		r.Error = err.Error()
	}
	return r
}

// FleetClient drives a fleet served by ServeFleet.
type FleetClient struct {
	enc *json.Encoder
	// r reads replies, one JSON document a line. Each is read into a
	// slice of its own rather than through a json.Decoder, whose buffer
	// would keep the size of the largest reply (a report grows with the
	// changes) in the harness's heap, which is the in-process server's.
	r     *bufio.Reader
	close func() error
}

// NewFleetClient talks to a fleet over w (its input) and r (its output);
// close, if not nil, is called by Close after "quit" is sent.
func NewFleetClient(w io.Writer, r io.Reader, close func() error) *FleetClient {
	return &FleetClient{enc: json.NewEncoder(w), r: bufio.NewReader(r), close: close}
}

func (c *FleetClient) do(cmd command) (reply, error) {
	if err := c.enc.Encode(cmd); err != nil {
		return reply{}, fmt.Errorf("fleet %s: %w", cmd.Op, err)
	}
	line, err := c.r.ReadBytes('\n')
	if err != nil && (err != io.EOF || len(line) == 0) {
		return reply{}, fmt.Errorf("fleet %s: read reply: %w", cmd.Op, err)
	}
	var r reply
	if err := json.Unmarshal(line, &r); err != nil {
		return reply{}, fmt.Errorf("fleet %s: read reply: %w", cmd.Op, err)
	}
	if r.Error != "" {
		return r, fmt.Errorf("fleet %s: %s", cmd.Op, r.Error)
	}
	return r, nil
}

// Start connects every proxy.
func (c *FleetClient) Start() error { _, err := c.do(command{Op: "start"}); return err }

// Storm drops and restarts every proxy; it returns when it started.
func (c *FleetClient) Storm() (int64, error) {
	r, err := c.do(command{Op: "storm"})
	return r.At, err
}

// Sync waits until every proxy has synced syncs streams; it returns when
// the last one did (even on error, the latest sync seen).
func (c *FleetClient) Sync(syncs int, timeout time.Duration) (int64, error) {
	r, err := c.do(command{Op: "sync", Syncs: syncs, TimeoutMS: timeout.Milliseconds()})
	return r.At, err
}

// Await waits until every proxy on networks has ACKed change marker.
func (c *FleetClient) Await(marker int, networks []string, timeout time.Duration) (int64, error) {
	r, err := c.do(command{Op: "await", Marker: marker, Networks: networks, TimeoutMS: timeout.Milliseconds()})
	return r.At, err
}

// Report returns every proxy's record and the fleet's heap in use.
func (c *FleetClient) Report() ([]ProxyStats, uint64, error) {
	r, err := c.do(command{Op: "report"})
	return r.Proxies, r.HeapBytes, err
}

// Close tells the fleet to quit.
func (c *FleetClient) Close() error {
	err := c.enc.Encode(command{Op: "quit"})
	if c.close != nil {
		err = errors.Join(err, c.close())
	}
	return err
}
