package connguard

import (
	"context"
	"log/slog"
	"time"

	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"k8s.io/utils/clock"

	"github.com/horizonmesh/horizon/internal/ratelog"
)

// LogInterval is how often at most a Guard logs a line of one kind (reason
// and source).
const LogInterval = time.Minute

// Clock tells the time and sets timers for the rate limit, stream ages and
// reset windows; clock.RealClock (k8s.io/utils/clock) is one, and that
// package's testing.FakeClock lets a test step time. Connection deadlines
// (LingerTimeout, HandshakeTimeout) follow the wall clock, as the network
// does.
type Clock interface {
	Now() time.Time
	NewTimer(time.Duration) clock.Timer
}

// Config configures a Guard. Only Port is required.
type Config struct {
	// Port names the port in metrics and logs: a small fixed word such as
	// "plaintext" or "mtls".
	Port string
	// Limits of the port; zero fields take DefaultLimits.
	Limits Limits
	// Creds are the port's transport credentials, such as
	// credentials.NewTLS(conf); nil serves plaintext.
	Creds   credentials.TransportCredentials
	Metrics *Metrics
	Logger  *slog.Logger
	Clock   Clock // default clock.RealClock{}
}

// Guard bounds one gRPC port (see the package doc). It is safe for
// concurrent use.
type Guard struct {
	port    string
	limits  Limits
	creds   credentials.TransportCredentials
	metrics *Metrics
	log     *ratelog.Logger
	clock   Clock
	conns   connCounts
	bucket  *rate.Limiter
}

// New returns the Guard of one port.
func New(cfg Config) *Guard {
	l := cfg.Limits.withDefaults()
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	cfg.Metrics.port(cfg.Port, cfg.Creds != nil)
	return &Guard{
		port:    cfg.Port,
		limits:  l,
		creds:   cfg.Creds,
		metrics: cfg.Metrics,
		log:     ratelog.New(cfg.Logger, LogInterval),
		clock:   cfg.Clock,
		conns:   connCounts{max: l.MaxConns, perSource: l.MaxConnsPerSource, bySource: map[string]int{}},
		bucket:  rate.NewLimiter(rate.Limit(l.StreamRate), l.StreamBurst),
	}
}

// Limits are the Guard's limits, defaults filled in.
func (g *Guard) Limits() Limits { return g.limits }

// ServerOptions are the gRPC server options of the port: its credentials
// (Config.Creds, wrapped: the only grpc.Creds the server may have),
// MaxConcurrentStreams, MaxRecvMsgSize, MaxHeaderListSize, HandshakeTimeout
// (grpc.ConnectionTimeout), and chained stream and unary interceptors that
// take a token of the rate limit and bound the first message.
func (g *Guard) ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.Creds(&creds{inner: g.creds, g: g}),
		grpc.MaxConcurrentStreams(g.limits.MaxConcurrentStreams),
		grpc.MaxRecvMsgSize(g.limits.MaxRecvMsgSize),
		grpc.MaxHeaderListSize(g.limits.MaxHeaderListSize),
		grpc.ConnectionTimeout(g.limits.HandshakeTimeout),
		grpc.ChainStreamInterceptor(g.streamInterceptor),
		grpc.ChainUnaryInterceptor(g.unaryInterceptor),
	}
}

func (g *Guard) streamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if err := g.admit(ss.Context()); err != nil {
		return err
	}
	return handler(srv, &boundedStream{ServerStream: ss, g: g})
}

func (g *Guard) unaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if err := g.admit(ctx); err != nil {
		return nil, err
	}
	if err := g.checkFirst(req); err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

// admit takes a token of the port's rate limit for a new stream or call,
// waiting for it up to MaxStreamWait. A stream that would wait longer is
// refused at once, and one whose client gives up while waiting gives its
// token back.
func (g *Guard) admit(ctx context.Context) error {
	now := g.clock.Now()
	r := g.bucket.ReserveN(now, 1)
	wait := r.DelayFrom(now)
	if !r.OK() || wait > g.limits.MaxStreamWait {
		r.CancelAt(now)
		g.metrics.refused(g.port, ReasonRate)
		g.log.Warn(ReasonRate, "stream refused: new streams arrive faster than the rate limit", "port", g.port, "reason", ReasonRate,
			"rate", g.limits.StreamRate, "burst", g.limits.StreamBurst)
		return status.Error(codes.Unavailable, ReasonRate+": too many new streams; retry with backoff")
	}
	if wait > 0 {
		t := g.clock.NewTimer(wait)
		select {
		case <-t.C():
		case <-ctx.Done():
			t.Stop()
			r.CancelAt(g.clock.Now())
			return status.FromContextError(ctx.Err()).Err()
		}
	}
	g.metrics.waited(g.port, wait)
	return nil
}

// checkFirst refuses a first message (or unary request) over
// MaxFirstMsgSize.
func (g *Guard) checkFirst(m any) error {
	pm, ok := m.(proto.Message)
	if !ok {
		return nil
	}
	if size := proto.Size(pm); size > g.limits.MaxFirstMsgSize {
		return g.tooBig("the first message of a stream is too large", size, g.limits.MaxFirstMsgSize)
	}
	return nil
}

func (g *Guard) tooBig(msg string, size, limit int) error {
	g.metrics.refused(g.port, ReasonMessageSize)
	g.log.Warn(ReasonMessageSize, msg, "port", g.port, "reason", ReasonMessageSize, "bytes", size, "limit", limit)
	return status.Errorf(codes.ResourceExhausted, "%s: message of %d bytes; at most %d before the stream is identified", ReasonMessageSize, size, limit)
}

// boundedStream checks a stream's first message against MaxFirstMsgSize,
// and counts messages gRPC refuses for MaxRecvMsgSize.
type boundedStream struct {
	grpc.ServerStream
	g    *Guard
	seen bool // the first message was received
}

func (s *boundedStream) RecvMsg(m any) error {
	err := s.ServerStream.RecvMsg(m)
	if err != nil {
		if status.Code(err) == codes.ResourceExhausted { // over MaxRecvMsgSize
			s.g.metrics.refused(s.g.port, ReasonMessageSize)
			s.g.log.Warn(ReasonMessageSize, "message refused: too large", "port", s.g.port, "reason", ReasonMessageSize,
				"limit", s.g.limits.MaxRecvMsgSize)
		}
		return err
	}
	if s.seen {
		return nil
	}
	s.seen = true
	return s.g.checkFirst(m)
}
