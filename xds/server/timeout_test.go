package server

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// stuckStream is a server stream whose peer never reads: SendMsg blocks
// until the stream ends, as gRPC's does behind exhausted flow control.
type stuckStream struct {
	grpc.ServerStream
	ctx  context.Context
	sent chan struct{}
}

func (s *stuckStream) Context() context.Context { return s.ctx }

func (s *stuckStream) SendMsg(any) error {
	<-s.ctx.Done()
	close(s.sent)
	return s.ctx.Err()
}

// TestSendTimeout: the interceptor gives up on a send the peer does not take
// within the bound, so the stream's handler returns and gRPC ends the
// stream; the stuck send then fails with it and its goroutine ends.
func TestSendTimeout(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	m := NewMetrics(prometheus.NewRegistry())
	interceptor := SendTimeout(100*time.Millisecond, m)
	ctx, endStream := context.WithCancel(context.Background())
	ss := &stuckStream{ctx: ctx, sent: make(chan struct{})}

	start := time.Now()
	err := interceptor(nil, ss, &grpc.StreamServerInfo{}, func(_ any, stream grpc.ServerStream) error {
		return stream.SendMsg("response") // what the handler's send loop does
	})
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("handler returned %v, want DeadlineExceeded", err)
	}
	if waited := time.Since(start); waited > 30*time.Second {
		t.Fatalf("the send was not abandoned (%v)", waited) // a bound, not a speed
	}
	if got := testutil.ToFloat64(m.rejected.WithLabelValues("send_timeout")); got != 1 {
		t.Errorf("rejected_streams_total{reason=send_timeout} = %v, want 1", got)
	}
	// gRPC ends the stream when the handler returns; the stuck send ends too.
	endStream()
	<-ss.sent

	// A send the peer takes in time passes through untouched.
	ok := &stuckStream{ctx: context.Background(), sent: make(chan struct{})}
	err = interceptor(nil, quickStream{ok}, &grpc.StreamServerInfo{}, func(_ any, stream grpc.ServerStream) error {
		return stream.SendMsg("response")
	})
	if err != nil {
		t.Fatalf("a prompt send failed: %v", err)
	}
}

type quickStream struct{ *stuckStream }

func (quickStream) SendMsg(any) error { return nil }
