package connguard

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/horizonmesh/horizon/internal/testkit"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// TestReconnectStormIsPaced opens 20 streams at once against a bucket of
// 10 a second with a burst of 5 and MaxStreamWait 1 s, on a clock that
// only the test moves. Unguarded, all 20 are served at once. Guarded, the
// burst is served at once; the next 10, which can have a token within a
// second, wait for it; the last 5 are refused with Unavailable ("rate").
// Then each tenth of a second admits exactly one more stream.
func TestReconnectStormIsPaced(t *testing.T) {
	clock := clocktesting.NewFakeClock(t0)
	srv := startServer(t, Config{Clock: clock, Limits: Limits{StreamRate: 10, StreamBurst: 5, MaxStreamWait: time.Second}})
	client := srv.client(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	refused := make(chan error, 20)
	for range 20 {
		wg.Go(func() {
			stream, err := client.FullDuplexCall(ctx)
			if err == nil {
				err = stream.Send(&testpb.StreamingOutputCallRequest{})
			}
			// Send returns io.EOF when the server has ended the stream;
			// Recv returns its status.
			if err == nil || errors.Is(err, io.EOF) {
				_, err = stream.Recv()
			}
			if err != nil && ctx.Err() == nil {
				refused <- err
			}
		})
	}
	defer wg.Wait()
	admitted := func() int64 { return srv.svc.started.Load() }

	testkit.Eventually(t, 10*time.Second, "the burst admitted, 10 waiting, 5 refused", func() bool {
		return admitted() == 5 && clock.Waiters() == 10 && len(refused) == 5
	})
	for range 5 {
		err := <-refused
		if status.Code(err) != codes.Unavailable || !strings.HasPrefix(status.Convert(err).Message(), ReasonRate+":") {
			t.Errorf("refused with %v, want Unavailable %q", err, ReasonRate+": ...")
		}
	}
	if got := srv.refusals(ReasonRate); got != 5 {
		t.Errorf("refusals{reason=rate} = %v, want 5", got)
	}
	for k := 1; k <= 10; k++ {
		// A token every 100ms; the millisecond more absorbs rounding.
		clock.SetTime(t0.Add(time.Duration(k)*100*time.Millisecond + time.Millisecond))
		testkit.Eventually(t, 10*time.Second, "one more stream admitted", func() bool { return admitted() >= int64(5+k) })
		if got := admitted(); got != int64(5+k) {
			t.Fatalf("at %v: %d streams admitted, want %d", time.Duration(k)*100*time.Millisecond, got, 5+k)
		}
	}
	if clock.HasWaiters() {
		t.Error("streams still wait after every token came")
	}
}

// TestCancelledWaitReturnsItsToken: a stream whose client gives up while it
// waits for a token gives the token back, so the next stream waits for one
// token, not two.
func TestCancelledWaitReturnsItsToken(t *testing.T) {
	clock := clocktesting.NewFakeClock(t0)
	srv := startServer(t, Config{Clock: clock, Limits: Limits{StreamRate: 1, StreamBurst: 1, MaxStreamWait: 10 * time.Second}})
	client := srv.client(t, nil)
	first, err := client.FullDuplexCall(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	echo(t, first)

	ctx, cancel := context.WithCancel(context.Background())
	if _, err := client.FullDuplexCall(ctx); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 10*time.Second, "the second stream waiting", func() bool { return clock.Waiters() == 1 })
	cancel()
	testkit.Eventually(t, 10*time.Second, "the second stream gone", func() bool { return !clock.HasWaiters() })

	if _, err := client.FullDuplexCall(context.Background()); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 10*time.Second, "the third stream waiting", func() bool { return clock.Waiters() == 1 })
	clock.Step(time.Second + time.Millisecond)
	testkit.Eventually(t, 10*time.Second, "the third stream admitted after one token's time", func() bool {
		return srv.svc.started.Load() == 2
	})
}

// TestFirstMessageIsBounded sends a first message over MaxFirstMsgSize,
// and later messages under and over MaxRecvMsgSize. Unguarded, the large
// first message is served. Guarded, it is refused with ResourceExhausted
// ("message_size"), on a stream as in a unary call; a later message may be
// larger, up to MaxRecvMsgSize.
func TestFirstMessageIsBounded(t *testing.T) {
	srv := startServer(t, Config{Limits: Limits{MaxFirstMsgSize: 1 << 10, MaxRecvMsgSize: 64 << 10}})
	client := srv.client(t, nil)
	payload := func(n int) *testpb.Payload { return &testpb.Payload{Body: make([]byte, n)} }
	refusedForSize := func(t *testing.T, err error) {
		t.Helper()
		if status.Code(err) != codes.ResourceExhausted {
			t.Fatalf("got %v, want ResourceExhausted", err)
		}
	}

	t.Run("large first message", func(t *testing.T) {
		stream, err := client.FullDuplexCall(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if err := stream.Send(&testpb.StreamingOutputCallRequest{Payload: payload(2 << 10)}); err != nil {
			t.Fatal(err)
		}
		_, err = stream.Recv()
		refusedForSize(t, err)
		if msg := status.Convert(err).Message(); !strings.HasPrefix(msg, ReasonMessageSize+":") {
			t.Errorf("message %q, want it to start with %q", msg, ReasonMessageSize+":")
		}
	})
	t.Run("large unary request", func(t *testing.T) {
		_, err := client.UnaryCall(context.Background(), &testpb.SimpleRequest{Payload: payload(2 << 10)})
		refusedForSize(t, err)
	})
	t.Run("larger later message", func(t *testing.T) {
		stream, err := client.FullDuplexCall(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		echo(t, stream)
		if err := stream.Send(&testpb.StreamingOutputCallRequest{Payload: payload(32 << 10)}); err != nil {
			t.Fatal(err)
		}
		if _, err := stream.Recv(); err != nil {
			t.Fatalf("a 32 KiB second message: %v", err)
		}
		if err := stream.Send(&testpb.StreamingOutputCallRequest{Payload: payload(128 << 10)}); err != nil {
			t.Fatal(err)
		}
		_, err = stream.Recv()
		refusedForSize(t, err)
	})
	if got := srv.refusals(ReasonMessageSize); got != 3 {
		t.Errorf("refusals{reason=message_size} = %v, want 3", got)
	}
}
