package connguard

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"io"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/peer"

	"github.com/horizonmesh/horizon/internal/testkit"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// unguarded serves the tests' gRPC servers without the Guard (plain
// grpc.NewServer, the port's credentials only): how each attack test was
// shown to fail before this package. go test -run TestX -args -unguarded
var unguarded = flag.Bool("unguarded", false, "serve without the Guard: the attack tests must fail")

// fullDuplex is the path of the test service's bidirectional stream, which
// stands for an ADS stream.
const fullDuplex = "/grpc.testing.TestService/FullDuplexCall"

// testService is the gRPC service the tests attack: FullDuplexCall answers
// each message with an empty one until the client half-closes, and counts
// the handlers running.
type testService struct {
	testpb.UnimplementedTestServiceServer
	started, active, peak atomic.Int64
	hold                  <-chan struct{} // if set, FullDuplexCall waits for it to close
	authInfo              atomic.Value    // credentials.AuthInfo of the last unary call
}

func (s *testService) FullDuplexCall(stream testpb.TestService_FullDuplexCallServer) error {
	s.started.Add(1)
	n := s.active.Add(1)
	defer s.active.Add(-1)
	for p := s.peak.Load(); n > p && !s.peak.CompareAndSwap(p, n); p = s.peak.Load() {
	}
	if s.hold != nil {
		select {
		case <-s.hold:
		case <-stream.Context().Done():
			return stream.Context().Err()
		}
	}
	for {
		if _, err := stream.Recv(); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if err := stream.Send(&testpb.StreamingOutputCallResponse{}); err != nil {
			return err
		}
	}
}

func (s *testService) EmptyCall(ctx context.Context, _ *testpb.Empty) (*testpb.Empty, error) {
	if p, ok := peer.FromContext(ctx); ok && p.AuthInfo != nil {
		s.authInfo.Store(p.AuthInfo)
	}
	return &testpb.Empty{}, nil
}

func (s *testService) UnaryCall(context.Context, *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	return &testpb.SimpleResponse{}, nil
}

// testServer is a gRPC server on loopback behind a Guard (unless
// -unguarded).
type testServer struct {
	addr    string
	svc     *testService
	guard   *Guard
	metrics *Metrics
	port    string
	log     *testkit.Buffer
}

// startServer serves the test service with cfg's Guard until the test ends:
// its options follow opts, as in horizon serve.
func startServer(t *testing.T, cfg Config, opts ...grpc.ServerOption) *testServer {
	t.Helper()
	if cfg.Port == "" {
		cfg.Port = "plaintext"
	}
	s := &testServer{svc: &testService{}, metrics: NewMetrics(nil), port: cfg.Port, log: &testkit.Buffer{}}
	cfg.Metrics = s.metrics
	cfg.Logger = slog.New(slog.NewTextHandler(s.log, nil))
	s.guard = New(cfg)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = lis.Addr().String()
	var gs *grpc.Server
	if *unguarded {
		if cfg.Creds != nil {
			opts = append(opts, grpc.Creds(cfg.Creds))
		}
		gs = grpc.NewServer(opts...)
	} else {
		gs = grpc.NewServer(slices.Concat(opts, s.guard.ServerOptions())...)
		lis = s.guard.Listener(lis)
	}
	testpb.RegisterTestServiceServer(gs, s.svc)
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = gs.Serve(lis)
	}()
	t.Cleanup(func() {
		gs.Stop()
		<-served
	})
	return s
}

func (s *testServer) refusals(reason string) float64 {
	return testutil.ToFloat64(s.metrics.Refusals(s.port, reason))
}

func (s *testServer) handshakeFailures(reason string) float64 {
	return testutil.ToFloat64(s.metrics.HandshakeFailures(s.port, reason))
}

// client is a gRPC client of the test service at s, closed when the test ends.
func (s *testServer) client(t *testing.T, creds credentials.TransportCredentials) testpb.TestServiceClient {
	t.Helper()
	if creds == nil {
		creds = insecure.NewCredentials()
	}
	cc, err := grpc.NewClient(s.addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return testpb.NewTestServiceClient(cc)
}

// echo sends one message on stream and waits for the answer.
func echo(t *testing.T, stream testpb.TestService_FullDuplexCallClient) {
	t.Helper()
	if err := stream.Send(&testpb.StreamingOutputCallRequest{}); err != nil {
		t.Fatalf("send: %v", err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatalf("recv: %v", err)
	}
}

// h2Client speaks raw HTTP/2 to a server, as an attacker does: it writes
// the frames it is told to and reads the server's in a goroutine.
type h2Client struct {
	t    *testing.T
	conn net.Conn
	bw   *bufio.Writer
	fr   *http2.Framer // writes only
	hbuf bytes.Buffer
	enc  *hpack.Encoder

	mu      sync.Mutex
	goAway  *goAwayInfo
	refused int // RST_STREAM(REFUSED_STREAM) from the server
	done    chan struct{}
	readErr error
}

type goAwayInfo struct {
	lastStream uint32
	code       http2.ErrCode
	debug      string
}

// dialH2 connects to addr (over TLS if conf is set) and sends the client
// preface and SETTINGS.
func dialH2(t *testing.T, addr string, conf *tls.Config) *h2Client {
	t.Helper()
	var conn net.Conn
	var err error
	if conf != nil {
		conn, err = tls.Dial("tcp", addr, conf)
	} else {
		conn, err = net.Dial("tcp", addr)
	}
	if err != nil {
		t.Fatal(err)
	}
	c := &h2Client{t: t, conn: conn, bw: bufio.NewWriterSize(conn, 64<<10), done: make(chan struct{})}
	c.fr = http2.NewFramer(c.bw, nil)
	c.enc = hpack.NewEncoder(&c.hbuf)
	go c.readLoop(http2.NewFramer(nil, conn))
	t.Cleanup(func() {
		conn.Close()
		<-c.done
	})
	if _, err := c.bw.WriteString(http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	if err := c.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	if err := c.flush(); err != nil {
		t.Fatal(err)
	}
	return c
}

func (c *h2Client) readLoop(fr *http2.Framer) {
	defer close(c.done)
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			c.mu.Lock()
			c.readErr = err
			c.mu.Unlock()
			c.conn.Close() // as a client does once the server has closed
			return
		}
		c.mu.Lock()
		switch f := f.(type) {
		case *http2.GoAwayFrame:
			if c.goAway == nil {
				c.goAway = &goAwayInfo{lastStream: f.LastStreamID, code: f.ErrCode, debug: string(f.DebugData())}
			}
		case *http2.RSTStreamFrame:
			if f.ErrCode == http2.ErrCodeRefusedStream {
				c.refused++
			}
		}
		c.mu.Unlock()
	}
}

// headers opens stream id on path, with extra header fields (name, value,
// name, value...), in CONTINUATION frames past 16 KiB.
func (c *h2Client) headers(id uint32, path string, extra ...string) error {
	c.hbuf.Reset()
	fields := append([]string{
		":method", "POST", ":scheme", "http", ":path", path, ":authority", "horizon",
		"content-type", "application/grpc", "te", "trailers",
	}, extra...)
	for i := 0; i+1 < len(fields); i += 2 {
		_ = c.enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
	}
	block := c.hbuf.Bytes()
	const maxFrame = 16 << 10
	first := block[:min(len(block), maxFrame)]
	if err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: first, EndHeaders: len(first) == len(block)}); err != nil {
		return err
	}
	for rest := block[len(first):]; len(rest) > 0; {
		n := min(len(rest), maxFrame)
		if err := c.fr.WriteContinuation(id, n == len(rest), rest[:n]); err != nil {
			return err
		}
		rest = rest[n:]
	}
	return nil
}

func (c *h2Client) reset(id uint32) error { return c.fr.WriteRSTStream(id, http2.ErrCodeCancel) }

func (c *h2Client) flush() error { return c.bw.Flush() }

// ended says whether the server closed the connection.
func (c *h2Client) ended() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

func (c *h2Client) received() (*goAwayInfo, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.goAway, c.refused
}

// waitGoAway waits until the server has closed the connection, and returns
// the GOAWAY it sent first.
func (c *h2Client) waitGoAway(t *testing.T) *goAwayInfo {
	t.Helper()
	testkit.Eventually(t, 10*time.Second, "the server closes the connection", c.ended)
	ga, _ := c.received()
	if ga == nil {
		t.Fatalf("the server closed the connection without a GOAWAY (read error %v)", c.readErr)
	}
	return ga
}
