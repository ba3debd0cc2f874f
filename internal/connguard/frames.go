package connguard

import "encoding/binary"

// HTTP/2 frame types, flags and error codes the frame watcher reads or
// writes (RFC 9113, sections 6 and 7).
const (
	frameData         = 0x0
	frameHeaders      = 0x1
	frameRSTStream    = 0x3
	framePushPromise  = 0x5
	frameGoAway       = 0x7
	frameContinuation = 0x9

	flagEndStream  = 0x1
	flagEndHeaders = 0x4

	errCodeEnhanceYourCalm = 0xb

	frameHeaderLen = 9
)

// clientPrefaceLen is the length of the client connection preface, "PRI *
// HTTP/2.0\r\n\r\nSM\r\n\r\n", that comes before a client's first frame.
const clientPrefaceLen = 24

// frameHeader is what the watcher reads of a frame.
type frameHeader struct {
	length uint32
	typ    uint8
	flags  uint8
	stream uint32
}

// frameScanner follows the frame boundaries of one direction of an HTTP/2
// connection, fed its bytes in pieces of any size: a frame header may be
// split between two pieces. It reads frame headers only and skips payloads.
type frameScanner struct {
	preface int // bytes of the client preface still to skip
	hdr     [frameHeaderLen]byte
	hdrN    int    // bytes of the current frame header seen so far
	left    uint32 // payload bytes of the current frame still to come
	inBlock bool   // a header block is open: only CONTINUATION may come next
}

// advance consumes the start of p: up to the end of the preface, of the
// current frame header, or of the current payload, whichever comes first.
// It returns how many bytes it consumed and, if they completed a frame
// header, that header.
func (s *frameScanner) advance(p []byte) (n int, h frameHeader, ok bool) {
	switch {
	case s.preface > 0:
		n = min(s.preface, len(p))
		s.preface -= n
		return n, h, false
	case s.left > 0:
		n = int(min(uint64(s.left), uint64(len(p))))
		s.left -= uint32(n)
		return n, h, false
	}
	n = copy(s.hdr[s.hdrN:], p)
	s.hdrN += n
	if s.hdrN < frameHeaderLen {
		return n, h, false
	}
	s.hdrN = 0
	h = frameHeader{
		length: uint32(s.hdr[0])<<16 | uint32(s.hdr[1])<<8 | uint32(s.hdr[2]),
		typ:    s.hdr[3],
		flags:  s.hdr[4],
		stream: binary.BigEndian.Uint32(s.hdr[5:]) & (1<<31 - 1),
	}
	s.left = h.length
	switch h.typ {
	case frameHeaders, framePushPromise, frameContinuation:
		s.inBlock = h.flags&flagEndHeaders == 0
	}
	return n, h, true
}

// atBoundary says whether a frame may be written next: no frame is begun
// and no header block is open.
func (s *frameScanner) atBoundary() bool {
	return s.preface == 0 && s.hdrN == 0 && s.left == 0 && !s.inBlock
}

// boundaryIn is the offset of the first boundary (atBoundary) in p, 0 if s
// is at one, or -1 if p ends before the next. It does not change s.
func (s frameScanner) boundaryIn(p []byte) int {
	for off := 0; ; {
		if s.atBoundary() {
			return off
		}
		if off == len(p) {
			return -1
		}
		n, _, _ := s.advance(p[off:])
		off += n
	}
}

// goAwayFrame encodes a GOAWAY frame (RFC 9113, 6.8).
func goAwayFrame(lastStream uint32, code uint32, debug string) []byte {
	b := make([]byte, frameHeaderLen+8+len(debug))
	n := 8 + len(debug)
	b[0], b[1], b[2] = byte(n>>16), byte(n>>8), byte(n)
	b[3] = frameGoAway
	binary.BigEndian.PutUint32(b[9:], lastStream&(1<<31-1))
	binary.BigEndian.PutUint32(b[13:], code)
	copy(b[17:], debug)
	return b
}
