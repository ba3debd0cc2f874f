package server

import (
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"
)

// DefaultSendTimeout bounds how long one response may wait for a proxy to
// read it. go-control-plane has no such bound: a proxy that stops reading
// would hold its stream, and the memory of what is queued for it, forever.
const DefaultSendTimeout = 30 * time.Second

// SendTimeout returns a stream interceptor that ends a stream whose proxy
// does not take a response within d. The proxy reconnects and is served
// afresh; nothing else waits for it meanwhile.
func SendTimeout(d time.Duration, m *Metrics) grpc.StreamServerInterceptor {
	if d <= 0 {
		d = DefaultSendTimeout
	}
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		return handler(srv, &timedStream{ServerStream: ss, timeout: d, metrics: m})
	}
}

type timedStream struct {
	grpc.ServerStream
	timeout time.Duration
	metrics *Metrics
}

// SendMsg sends in a goroutine of its own and gives up after the timeout:
// the handler then returns, gRPC closes the stream, and the stuck send
// fails and ends with it.
func (s *timedStream) SendMsg(m any) error {
	done := make(chan error, 1)
	go func() { done <- s.ServerStream.SendMsg(m) }()
	timer := time.NewTimer(s.timeout)
	defer timer.Stop()
	select {
	case err := <-done:
		return err
	case <-timer.C:
		s.metrics.rejectedStream("send_timeout")
		return status.Errorf(codes.DeadlineExceeded, "proxy did not read a response within %v", s.timeout)
	}
}

// KeepaliveMinTime is the shortest interval between a client's HTTP/2 PINGs
// that Horizon's xDS servers accept: a client that pings more often is sent
// GOAWAY (too_many_pings) and disconnected. Client keepalives, such as the
// Envoy bootstraps' connection_keepalive, must not be shorter.
const KeepaliveMinTime = 10 * time.Second

// GRPCOptions are the gRPC server options of Horizon's xDS servers (horizon
// serve, and the load harnesses, which must measure the same server): the
// zero-copy codec, the send timeout, and keepalives that drop dead peers
// without letting clients ping too often.
func GRPCOptions(sendTimeout time.Duration, m *Metrics) []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ForceServerCodecV2(Codec()),
		grpc.StreamInterceptor(SendTimeout(sendTimeout, m)),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: KeepaliveMinTime, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
	}
}
