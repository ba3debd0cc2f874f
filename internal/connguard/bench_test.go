package connguard

import (
	"bytes"
	"net"
	"testing"

	"golang.org/x/net/http2"
)

// The cost of the frame watcher on the path of every byte gRPC writes and
// reads: the same Write or Read on a connection that discards or repeats,
// without (plain) and with (watched) the h2Conn around it.
//
//	go test -run '^$' -bench . -benchmem ./internal/connguard

// serverChunks are typical writes of gRPC's writer: one small response (a
// stream's HEADERS, one DATA frame with a discovery response, trailers
// ending the stream), and a full 32 KiB write buffer of DATA frames (a
// large response).
func serverChunks(b *testing.B) map[string][]byte {
	frames := func(write func(fr *http2.Framer) error) []byte {
		var buf bytes.Buffer
		if err := write(http2.NewFramer(&buf, nil)); err != nil {
			b.Fatal(err)
		}
		return buf.Bytes()
	}
	return map[string][]byte{
		"response-1KiB": frames(func(fr *http2.Framer) error {
			if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: make([]byte, 20), EndHeaders: true}); err != nil {
				return err
			}
			if err := fr.WriteData(1, false, make([]byte, 1024)); err != nil {
				return err
			}
			return fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: make([]byte, 30), EndHeaders: true, EndStream: true})
		}),
		"data-32KiB": frames(func(fr *http2.Framer) error {
			for range 2 {
				if err := fr.WriteData(1, false, make([]byte, 16384-frameHeaderLen)); err != nil {
					return err
				}
			}
			return nil
		}),
	}
}

func BenchmarkWrite(b *testing.B) {
	g := New(Config{Port: "bench"})
	for name, chunk := range serverChunks(b) {
		for _, watched := range []bool{false, true} {
			b.Run(name+"/"+map[bool]string{false: "plain", true: "watched"}[watched], func(b *testing.B) {
				var conn net.Conn = &discardConn{}
				if watched {
					conn = newH2Conn(g, conn, conn)
				}
				b.SetBytes(int64(len(chunk)))
				b.ReportAllocs()
				for b.Loop() {
					if _, err := conn.Write(chunk); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkRead reads a client's frames: a full 32 KiB read buffer of
// small DATA frames (discovery requests and ACKs) and WINDOW_UPDATEs.
func BenchmarkRead(b *testing.B) {
	g := New(Config{Port: "bench"})
	var buf bytes.Buffer
	fr := http2.NewFramer(&buf, nil)
	for buf.Len() < 32<<10-600 {
		if err := fr.WriteData(1, false, make([]byte, 500)); err != nil {
			b.Fatal(err)
		}
		if err := fr.WriteWindowUpdate(0, 500); err != nil {
			b.Fatal(err)
		}
	}
	chunk := buf.Bytes()
	for _, watched := range []bool{false, true} {
		b.Run(map[bool]string{false: "plain", true: "watched"}[watched], func(b *testing.B) {
			var conn net.Conn = &repeatConn{chunk: chunk}
			if watched {
				c := newH2Conn(g, conn, conn)
				c.in.preface = 0
				conn = c
			}
			p := make([]byte, len(chunk))
			b.SetBytes(int64(len(chunk)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := conn.Read(p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// discardConn is a net.Conn whose writes go nowhere.
type discardConn struct{ captureConn }

func (*discardConn) Write(p []byte) (int, error) { return len(p), nil }

// repeatConn is a net.Conn that reads chunk again and again.
type repeatConn struct {
	captureConn
	chunk []byte
}

func (c *repeatConn) Read(p []byte) (int, error) { return copy(p, c.chunk), nil }
