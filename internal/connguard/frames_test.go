package connguard

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// stream is an HTTP/2 byte stream written by x/net's Framer, the reference
// the frame scanner is held to: the header of every frame, and the offsets
// at which a frame may be written (a frame ended and no header block is
// open).
type stream struct {
	bytes      []byte
	headers    []frameHeader
	boundaries map[int]bool
}

// randomStream writes n random frames: DATA and HEADERS of any size, with
// and without END_STREAM, header blocks continued over CONTINUATION frames,
// and control frames. With preface, it starts with the client preface.
func randomStream(t testing.TB, rng *rand.Rand, n int, preface bool) stream {
	var buf bytes.Buffer
	fr := http2.NewFramer(&buf, nil)
	s := stream{boundaries: map[int]bool{}}
	if preface {
		buf.WriteString(http2.ClientPreface)
	}
	s.boundaries[buf.Len()] = true
	payload := func(max int) []byte { return make([]byte, rng.IntN(max+1)) }
	id := func() uint32 { return uint32(rng.IntN(1000))*2 + 1 }
	for range n {
		start := buf.Len()
		var h frameHeader
		var err error
		block := false
		switch rng.IntN(8) {
		case 0, 1:
			end := rng.IntN(2) == 0
			h = frameHeader{typ: frameData, stream: id()}
			if end {
				h.flags = flagEndStream
			}
			err = fr.WriteData(h.stream, end, payload(40000))
		case 2, 3:
			endHeaders, endStream := rng.IntN(3) > 0, rng.IntN(2) == 0
			h = frameHeader{typ: frameHeaders, stream: id()}
			if endStream {
				h.flags |= flagEndStream
			}
			if endHeaders {
				h.flags |= flagEndHeaders
			}
			err = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: h.stream, BlockFragment: payload(300), EndStream: endStream, EndHeaders: endHeaders})
			block = !endHeaders
		case 4:
			h = frameHeader{typ: frameRSTStream, stream: id()}
			err = fr.WriteRSTStream(h.stream, http2.ErrCodeCancel)
		case 5:
			h = frameHeader{typ: 0x6} // PING
			err = fr.WritePing(false, [8]byte{})
		case 6:
			h = frameHeader{typ: 0x8, stream: id()} // WINDOW_UPDATE
			err = fr.WriteWindowUpdate(h.stream, 1+uint32(rng.IntN(1<<20)))
		case 7:
			h = frameHeader{typ: 0x4} // SETTINGS
			err = fr.WriteSettings(http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: 100})
		}
		if err != nil {
			t.Fatal(err)
		}
		h.length = uint32(buf.Len() - start - frameHeaderLen)
		s.headers = append(s.headers, h)
		for block {
			start := buf.Len()
			end := rng.IntN(2) == 0
			if err := fr.WriteContinuation(h.stream, end, payload(100)); err != nil {
				t.Fatal(err)
			}
			c := frameHeader{typ: frameContinuation, stream: h.stream, length: uint32(buf.Len() - start - frameHeaderLen)}
			if end {
				c.flags = flagEndHeaders
			}
			s.headers = append(s.headers, c)
			block = !end
			if block {
				continue
			}
		}
		s.boundaries[buf.Len()] = true
	}
	s.bytes = buf.Bytes()
	return s
}

// randomSplit cuts p into pieces of random sizes, many of them smaller than
// a frame header.
func randomSplit(rng *rand.Rand, p []byte) [][]byte {
	var out [][]byte
	for len(p) > 0 {
		n := 1 + rng.IntN(min(len(p), []int{4, 16, 300, 40000}[rng.IntN(4)]))
		out = append(out, p[:n])
		p = p[n:]
	}
	return out
}

// TestFrameScannerMatchesFramer feeds random HTTP/2 streams, cut at random,
// to a frameScanner, and holds what it reads to what x/net's Framer wrote:
// the same frame headers, and a boundary exactly where a frame may be
// written.
func TestFrameScannerMatchesFramer(t *testing.T) {
	for seed := range uint64(300) {
		rng := rand.New(rand.NewPCG(seed, 1))
		preface := seed%2 == 0
		want := randomStream(t, rng, 1+rng.IntN(60), preface)
		s := frameScanner{}
		if preface {
			s.preface = clientPrefaceLen
		}
		var got []frameHeader
		pos := 0
		for _, piece := range randomSplit(rng, want.bytes) {
			wantB := -1
			for off := 0; off <= len(piece); off++ {
				if want.boundaries[pos+off] {
					wantB = off
					break
				}
			}
			if b := s.boundaryIn(piece); b != wantB {
				t.Fatalf("seed %d, at %d: boundaryIn(%d bytes) = %d, want %d", seed, pos, len(piece), b, wantB)
			}
			for off := 0; off < len(piece); {
				n, h, ok := s.advance(piece[off:])
				off += n
				if ok {
					got = append(got, h)
				}
			}
			pos += len(piece)
			if s.atBoundary() != want.boundaries[pos] {
				t.Fatalf("seed %d, at %d: atBoundary %v, want %v", seed, pos, s.atBoundary(), want.boundaries[pos])
			}
		}
		if len(got) != len(want.headers) {
			t.Fatalf("seed %d: %d frame headers, want %d", seed, len(got), len(want.headers))
		}
		for i := range got {
			if got[i] != want.headers[i] {
				t.Fatalf("seed %d, frame %d: %+v, want %+v", seed, i, got[i], want.headers[i])
			}
		}
	}
}

// TestGoAwayGoesBetweenFrames writes random server streams through an
// h2Conn in random pieces and makes it go away after a random piece. What
// reaches the wire must be the stream up to its first boundary at or after
// that point, then the GOAWAY, then nothing: the client's Framer reads
// every frame whole, and the GOAWAY last.
func TestGoAwayGoesBetweenFrames(t *testing.T) {
	g := New(Config{Port: "test"})
	for seed := range uint64(300) {
		rng := rand.New(rand.NewPCG(seed, 2))
		s := randomStream(t, rng, 1+rng.IntN(40), false)
		pieces := randomSplit(rng, s.bytes)
		trigger := rng.IntN(len(pieces) + 1)
		wire := &captureConn{}
		c := newH2Conn(g, wire, wire)
		pos := 0
		for _, p := range pieces[:trigger] {
			if n, err := c.Write(p); n != len(p) || err != nil {
				t.Fatalf("seed %d: write before the GOAWAY: %d, %v", seed, n, err)
			}
			pos += len(p)
		}
		c.goAway()
		for _, p := range pieces[trigger:] {
			if _, err := c.Write(p); err != nil {
				if !errors.Is(err, net.ErrClosed) {
					t.Fatalf("seed %d: write after the GOAWAY: %v, want net.ErrClosed", seed, err)
				}
				break
			}
		}
		if _, err := c.Write([]byte{0}); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("seed %d: a write after the GOAWAY returned %v, want net.ErrClosed", seed, err)
		}
		c.Close()

		cut := pos
		for !s.boundaries[cut] {
			cut++
		}
		want := append(append([]byte{}, s.bytes[:cut]...), goAwayFrame(0, errCodeEnhanceYourCalm, ReasonRapidReset)...)
		if !bytes.Equal(wire.buf.Bytes(), want) {
			t.Fatalf("seed %d: %d bytes on the wire, want the stream's first %d and the GOAWAY", seed, wire.buf.Len(), cut)
		}
		fr := http2.NewFramer(nil, &wire.buf)
		fr.SetMaxReadFrameSize(1 << 20)
		var last http2.Frame
		for {
			f, err := fr.ReadFrame()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("seed %d: the client reads %v", seed, err)
			}
			last = f
		}
		if ga, ok := last.(*http2.GoAwayFrame); !ok || ga.ErrCode != http2.ErrCodeEnhanceYourCalm {
			t.Fatalf("seed %d: last frame %v, want GOAWAY(ENHANCE_YOUR_CALM)", seed, last)
		}
	}
}

// captureConn is a net.Conn that keeps what is written to it.
type captureConn struct{ buf bytes.Buffer }

func (c *captureConn) Write(p []byte) (int, error)      { return c.buf.Write(p) }
func (c *captureConn) Read([]byte) (int, error)         { return 0, io.EOF }
func (c *captureConn) Close() error                     { return nil }
func (c *captureConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *captureConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *captureConn) SetDeadline(time.Time) error      { return nil }
func (c *captureConn) SetReadDeadline(time.Time) error  { return nil }
func (c *captureConn) SetWriteDeadline(time.Time) error { return nil }
