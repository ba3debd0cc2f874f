// Package xdstest is a test's end of an ADS stream, state of the world
// (SotW) or incremental (Delta): send, expect, expect none, ACK and NACK;
// and the tables a test reads an EDS assignment as (address →
// weight@priority). It speaks the xDS protocol only and does not import
// Horizon's xds package, whose own tests use it.
package xdstest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

const (
	// Timeout is how long Expect waits for a response that must come.
	Timeout = 10 * time.Second
	// Quiet is how long ExpectNone waits to be sure that a response does
	// not come. It bounds an absence, not a speed.
	Quiet = 300 * time.Millisecond
)

// Stream is one ADS stream of requests Req and responses Res: what SotW
// and Delta share. A goroutine receives the responses as they come; the
// stream ends when the test does, or at Close.
type Stream[Req, Res any] struct {
	t        testing.TB
	stream   grpc.BidiStreamingClient[Req, Res] // nil if it could not be opened
	describe func(*Res) string                  // a response, in a failure message
	resps    chan *Res
	done     chan struct{} // closed when the stream has ended, with err
	err      error
	cancel   context.CancelFunc
}

func open[Req, Res any](t testing.TB, start func(context.Context) (grpc.BidiStreamingClient[Req, Res], error), describe func(*Res) string) *Stream[Req, Res] {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	s := &Stream[Req, Res]{t: t, describe: describe, resps: make(chan *Res, 16), done: make(chan struct{}), cancel: cancel}
	stream, err := start(ctx)
	if err != nil {
		// A stream the server or the transport refuses at once ends here;
		// Next reports it like any other end.
		s.err = err
		close(s.done)
		return s
	}
	s.stream = stream
	go func() {
		for {
			r, err := stream.Recv()
			if err != nil {
				s.err = err
				close(s.done)
				return
			}
			select {
			case s.resps <- r:
			case <-ctx.Done():
			}
		}
	}()
	return s
}

// Send sends req, failing the test on an error of the client's own. A
// stream the server has ended takes no more requests, and that is no
// failure here: the end shows at the next Expect.
func (s *Stream[Req, Res]) Send(req *Req) {
	s.t.Helper()
	if err := s.send(req); err != nil {
		s.t.Fatalf("send: %v", err)
	}
}

func (s *Stream[Req, Res]) send(req *Req) error {
	if s.stream == nil {
		return nil // never opened: Next says why
	}
	// gRPC's Send says io.EOF when the stream has ended; its status is
	// what Recv returns.
	if err := s.stream.Send(req); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}

// Next returns the next response, or the error that ended the stream, or
// an error if neither comes within Timeout. Responses that came before the
// end are returned first.
func (s *Stream[Req, Res]) Next() (*Res, error) {
	select {
	case r := <-s.resps:
		return r, nil
	case <-s.done:
		select {
		case r := <-s.resps:
			return r, nil
		default:
			return nil, s.err
		}
	case <-time.After(Timeout):
		return nil, fmt.Errorf("no response within %v", Timeout)
	}
}

// Expect returns the next response; the test fails if the stream ends or
// nothing comes within Timeout.
func (s *Stream[Req, Res]) Expect() *Res {
	s.t.Helper()
	r, err := s.Next()
	if err != nil {
		s.t.Fatalf("want a response: %v", err)
	}
	return r
}

// ExpectNone fails the test if a response comes within Quiet, or the
// stream ends.
func (s *Stream[Req, Res]) ExpectNone() {
	s.t.Helper()
	select {
	case r := <-s.resps:
		s.t.Fatalf("unexpected response: %s", s.describe(r))
	case <-s.done:
		s.t.Fatalf("stream ended: %v", s.err)
	case <-time.After(Quiet):
	}
}

// ExpectError fails the test unless the server ends the stream, without a
// response, with code and a message containing contains.
func (s *Stream[Req, Res]) ExpectError(code codes.Code, contains string) {
	s.t.Helper()
	r, err := s.Next()
	switch {
	case r != nil:
		s.t.Fatalf("got a response (%s), want the stream refused", s.describe(r))
	case status.Code(err) != code || !strings.Contains(err.Error(), contains):
		s.t.Fatalf("stream error %v, want %s containing %q", err, code, contains)
	}
}

// Close ends the stream, as a proxy that goes away does.
func (s *Stream[Req, Res]) Close() { s.cancel() }
