// Package sni is Horizon's own east-west gateway data path: it reads the
// server name from a TLS ClientHello without terminating TLS, and forwards the
// still-encrypted connection to a local endpoint chosen by that name. It is
// the data half of gateway/proxy; gateway/proxy/ads, the control half, sets
// its routing table (Proxy.SetTable) from xDS.
//
// What a client can make the gateway hold is bounded: a connection gets
// HelloTimeout from accept to send its whole ClientHello (MaxHelloLen bytes
// at most), and Serve keeps at most MaxConns connections open, and
// MaxConnsPerSource from one IP address, shedding the oldest connections
// still without a hello before it refuses a new one (admission.go).
package sni

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Sizes of the parts of a ClientHello the reader handles.
const (
	// RecordHeaderLen is the length of a TLS record header.
	RecordHeaderLen = 5
	// MaxRecordLen is the largest plaintext record payload TLS allows (2^14).
	MaxRecordLen = 1 << 14
	// MaxHelloLen bounds the bytes ReadClientHello consumes, record headers
	// included: a client that needs more is refused. Real ClientHellos,
	// post-quantum key shares included, are a few KiB.
	MaxHelloLen = MaxRecordLen + RecordHeaderLen
)

const (
	recordTypeHandshake  = 0x16
	handshakeClientHello = 0x01
	extensionServerName  = 0x0000
	nameTypeHostName     = 0x00
	maxHostNameLen       = 253
)

// Errors ReadClientHello returns, to be told apart with errors.Is. Errors from
// the reader itself (a deadline, EOF before the first byte) are returned
// wrapped as they are; an EOF in the middle of a hello is io.ErrUnexpectedEOF.
var (
	// ErrNotTLS: the first bytes are not a TLS handshake record.
	ErrNotTLS = errors.New("not a TLS handshake")
	// ErrMalformed: a TLS handshake, but not a well-formed ClientHello.
	ErrMalformed = errors.New("malformed ClientHello")
	// ErrTooLarge: the ClientHello does not fit in MaxHelloLen bytes.
	ErrTooLarge = errors.New("ClientHello too large")
	// ErrNoSNI: a well-formed ClientHello without a host name.
	ErrNoSNI = errors.New("ClientHello has no server name")
)

// ReadClientHello reads TLS records from r until it holds one whole
// ClientHello handshake message, which may be split over many records and any
// number of reads, and returns the server name (lower case) it carries. It
// reads exactly the records that make up the hello, never more, and returns
// them in consumed so that they can be replayed to the upstream unchanged;
// consumed holds what was read even on error. It never reads more than
// MaxHelloLen bytes. Time limits are the caller's: set a deadline on the
// connection.
func ReadClientHello(r io.Reader) (serverName string, consumed []byte, err error) {
	var msg []byte // handshake bytes reassembled from the records' payloads
	for {
		if len(consumed)+RecordHeaderLen > MaxHelloLen {
			return "", consumed, ErrTooLarge
		}
		var hdr [RecordHeaderLen]byte
		m, err := io.ReadFull(r, hdr[:])
		first := len(consumed) == 0
		consumed = append(consumed, hdr[:m]...)
		if m > 0 && hdr[0] != recordTypeHandshake {
			if first {
				return "", consumed, ErrNotTLS
			}
			return "", consumed, fmt.Errorf("%w: record of type %d in the middle of the hello", ErrMalformed, hdr[0])
		}
		if err != nil {
			if len(consumed) > 0 && errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return "", consumed, err
		}
		if hdr[1] != 3 {
			if first {
				return "", consumed, ErrNotTLS
			}
			return "", consumed, fmt.Errorf("%w: record version %d.%d", ErrMalformed, hdr[1], hdr[2])
		}
		length := int(binary.BigEndian.Uint16(hdr[3:5]))
		switch {
		case length == 0:
			return "", consumed, fmt.Errorf("%w: empty handshake record", ErrMalformed)
		case length > MaxRecordLen:
			return "", consumed, fmt.Errorf("%w: record of %d bytes", ErrMalformed, length)
		case len(consumed)+length > MaxHelloLen:
			return "", consumed, ErrTooLarge
		}
		at := len(consumed)
		consumed = append(consumed, make([]byte, length)...)
		m, err = io.ReadFull(r, consumed[at:])
		consumed = consumed[:at+m]
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return "", consumed, err
		}
		msg = append(msg, consumed[at:]...)
		if len(msg) < 4 {
			continue
		}
		if msg[0] != handshakeClientHello {
			if first {
				return "", consumed, fmt.Errorf("%w: first handshake message is of type %d", ErrNotTLS, msg[0])
			}
			return "", consumed, fmt.Errorf("%w: handshake message of type %d", ErrMalformed, msg[0])
		}
		msgLen := 4 + (int(msg[1])<<16 | int(msg[2])<<8 | int(msg[3]))
		switch {
		case msgLen+RecordHeaderLen > MaxHelloLen:
			return "", consumed, ErrTooLarge
		case len(msg) < msgLen:
			continue
		case len(msg) > msgLen:
			// A client sends nothing after its hello before the server
			// answers; trailing bytes in the hello's last record are bogus.
			return "", consumed, fmt.Errorf("%w: %d bytes after the hello", ErrMalformed, len(msg)-msgLen)
		}
		name, err := parseClientHello(msg[4:])
		return name, consumed, err
	}
}

// parseClientHello returns the host name of a ClientHello body (RFC 8446
// 4.1.2, RFC 6066 3).
func parseClientHello(b []byte) (string, error) {
	p := parser{b: b}
	p.skip(2 + 32)     // legacy_version, random
	p.vector(1, 0, 32) // legacy_session_id
	suites := p.vector(2, 2, 1<<16-2)
	p.vector(1, 1, 255) // legacy_compression_methods
	if p.err == nil && len(suites)%2 != 0 {
		return "", fmt.Errorf("%w: odd cipher suites length", ErrMalformed)
	}
	if p.err != nil {
		return "", p.err
	}
	if len(p.b) == 0 {
		return "", ErrNoSNI // no extensions at all
	}
	exts := parser{b: p.vector(2, 0, 1<<16-1)}
	if p.err == nil && len(p.b) != 0 {
		return "", fmt.Errorf("%w: %d bytes after the extensions", ErrMalformed, len(p.b))
	}
	if p.err != nil {
		return "", p.err
	}
	var name string
	seen := map[uint16]bool{}
	for len(exts.b) > 0 && exts.err == nil {
		typ := exts.uint16()
		data := exts.vector(2, 0, 1<<16-1)
		if exts.err != nil {
			break
		}
		if seen[typ] {
			return "", fmt.Errorf("%w: extension %d twice", ErrMalformed, typ)
		}
		seen[typ] = true
		if typ != extensionServerName {
			continue
		}
		var err error
		if name, err = parseServerName(data); err != nil {
			return "", err
		}
	}
	if exts.err != nil {
		return "", exts.err
	}
	if name == "" {
		return "", ErrNoSNI
	}
	return name, nil
}

// parseServerName reads a server_name extension: a list holding one host_name.
func parseServerName(b []byte) (string, error) {
	p := parser{b: b}
	list := parser{b: p.vector(2, 1, 1<<16-1)}
	if p.err == nil && len(p.b) != 0 {
		return "", fmt.Errorf("%w: bytes after the server name list", ErrMalformed)
	}
	if p.err != nil {
		return "", p.err
	}
	var host string
	for len(list.b) > 0 && list.err == nil {
		typ := list.uint8()
		name := list.vector(2, 1, 1<<16-1)
		if list.err != nil || typ != nameTypeHostName {
			continue
		}
		if host != "" {
			return "", fmt.Errorf("%w: two host names", ErrMalformed)
		}
		h, err := checkHostName(name)
		if err != nil {
			return "", err
		}
		host = h
	}
	if list.err != nil {
		return "", list.err
	}
	if host == "" {
		return "", ErrNoSNI
	}
	return host, nil
}

// checkHostName accepts the characters of DNS names and of Horizon's SNI form
// (outbound_.<port>_._.<host>, with underscores) and lowers their case.
func checkHostName(b []byte) (string, error) {
	if len(b) > maxHostNameLen {
		return "", fmt.Errorf("%w: host name of %d bytes", ErrMalformed, len(b))
	}
	for _, c := range b {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '.', c == '_':
		default:
			return "", fmt.Errorf("%w: host name with byte %#x", ErrMalformed, c)
		}
	}
	if b[0] == '.' || b[len(b)-1] == '.' || strings.Contains(string(b), "..") {
		return "", fmt.Errorf("%w: host name %q has an empty label", ErrMalformed, b)
	}
	return strings.ToLower(string(b)), nil
}

// parser reads big-endian TLS vectors; the first error sticks.
type parser struct {
	b   []byte
	err error
}

func (p *parser) take(n int) []byte {
	if p.err != nil {
		return nil
	}
	if n > len(p.b) {
		p.err = fmt.Errorf("%w: truncated", ErrMalformed)
		return nil
	}
	v := p.b[:n]
	p.b = p.b[n:]
	return v
}

func (p *parser) skip(n int) { p.take(n) }

func (p *parser) uint8() uint8 {
	if v := p.take(1); v != nil {
		return v[0]
	}
	return 0
}

func (p *parser) uint16() uint16 {
	if v := p.take(2); v != nil {
		return binary.BigEndian.Uint16(v)
	}
	return 0
}

// vector reads a length-prefixed vector whose length is within [min, max].
func (p *parser) vector(lenBytes, min, max int) []byte {
	var n int
	switch lenBytes {
	case 1:
		n = int(p.uint8())
	case 2:
		n = int(p.uint16())
	}
	if p.err == nil && (n < min || n > max) {
		p.err = fmt.Errorf("%w: vector of %d bytes, want %d to %d", ErrMalformed, n, min, max)
		return nil
	}
	return p.take(n)
}
