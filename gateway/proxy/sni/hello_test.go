package sni

import (
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"
)

// clientHello returns the first TLS record a real crypto/tls client sends: its
// ClientHello.
func clientHello(t testing.TB, conf *tls.Config) []byte {
	t.Helper()
	c, s := net.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		tls.Client(c, conf).Handshake() // fails once s is closed
	}()
	var hdr [RecordHeaderLen]byte
	if _, err := io.ReadFull(s, hdr[:]); err != nil {
		t.Fatal(err)
	}
	rec := make([]byte, RecordHeaderLen+int(binary.BigEndian.Uint16(hdr[3:])))
	copy(rec, hdr[:])
	if _, err := io.ReadFull(s, rec[RecordHeaderLen:]); err != nil {
		t.Fatal(err)
	}
	s.Close()
	<-done
	return rec
}

// reframe splits the handshake bytes of TLS records into records of at most
// size bytes, as a client or a middlebox may.
func reframe(recs []byte, size int) []byte {
	var payload, out []byte
	for len(recs) >= RecordHeaderLen {
		n := int(binary.BigEndian.Uint16(recs[3:5]))
		payload = append(payload, recs[RecordHeaderLen:RecordHeaderLen+n]...)
		recs = recs[RecordHeaderLen+n:]
	}
	for len(payload) > 0 {
		n := min(size, len(payload))
		out = append(out, recordTypeHandshake, 3, 1, byte(n>>8), byte(n))
		out = append(out, payload[:n]...)
		payload = payload[n:]
	}
	return out
}

// record wraps a handshake message body of the given type in one record.
func record(typ byte, body []byte) []byte {
	n := len(body)
	msg := append([]byte{typ, byte(n >> 16), byte(n >> 8), byte(n)}, body...)
	return append([]byte{recordTypeHandshake, 3, 1, byte(len(msg) >> 8), byte(len(msg))}, msg...)
}

// helloBody builds a minimal ClientHello body with the given extensions
// block (nil: no extensions at all).
func helloBody(exts []byte) []byte {
	b := []byte{3, 3}
	b = append(b, make([]byte, 32)...) // random
	b = append(b, 0)                   // session id
	b = append(b, 0, 2, 0x13, 0x01)    // one cipher suite
	b = append(b, 1, 0)                // null compression
	if exts != nil {
		b = binary.BigEndian.AppendUint16(b, uint16(len(exts)))
		b = append(b, exts...)
	}
	return b
}

func ext(typ uint16, data []byte) []byte {
	b := binary.BigEndian.AppendUint16(nil, typ)
	b = binary.BigEndian.AppendUint16(b, uint16(len(data)))
	return append(b, data...)
}

func sniExt(names ...string) []byte {
	var list []byte
	for _, n := range names {
		list = append(list, nameTypeHostName)
		list = binary.BigEndian.AppendUint16(list, uint16(len(n)))
		list = append(list, n...)
	}
	return ext(extensionServerName, append(binary.BigEndian.AppendUint16(nil, uint16(len(list))), list...))
}

func TestReadClientHello(t *testing.T) {
	const name = "outbound_.8080_._.echo.demo.svc.clusterset.local"
	tls13 := clientHello(t, &tls.Config{ServerName: name, NextProtos: []string{"istio-peer-exchange", "istio"}})
	tls12 := clientHello(t, &tls.Config{ServerName: "a.example", MaxVersion: tls.VersionTLS12})
	noSNI := clientHello(t, &tls.Config{InsecureSkipVerify: true})
	upper := clientHello(t, &tls.Config{ServerName: "Echo.Demo.SVC"})
	big := record(handshakeClientHello, helloBody(append(sniExt("big.example"), ext(21, make([]byte, 3000))...)))

	tests := []struct {
		name     string
		in       []byte
		reader   func(io.Reader) io.Reader
		want     string
		wantErr  error
		consumed int // -1: all of in
	}{
		{name: "tls13", in: tls13, want: name, consumed: -1},
		{name: "tls12", in: tls12, want: "a.example", consumed: -1},
		{name: "upper case is lowered", in: upper, want: "echo.demo.svc", consumed: -1},
		{name: "one byte per read", in: tls13, reader: iotest.OneByteReader, want: name, consumed: -1},
		{name: "split in 1-byte records", in: reframe(tls13, 1), want: name, consumed: -1},
		{name: "split in 7-byte records, one byte per read", in: reframe(tls13, 7), reader: iotest.OneByteReader, want: name, consumed: -1},
		{name: "bytes after the hello are left unread", in: append(append([]byte(nil), tls13...), 0x14, 3, 3, 0, 1, 1), want: name, consumed: len(tls13)},
		{name: "minimal hello", in: record(handshakeClientHello, helloBody(sniExt("x"))), want: "x", consumed: -1},
		{name: "no sni", in: noSNI, wantErr: ErrNoSNI, consumed: -1},
		{name: "no extensions", in: record(handshakeClientHello, helloBody(nil)), wantErr: ErrNoSNI, consumed: -1},
		{name: "empty extensions", in: record(handshakeClientHello, helloBody([]byte{})), wantErr: ErrNoSNI, consumed: -1},
		{name: "empty", in: nil, wantErr: io.EOF, consumed: 0},
		{name: "http", in: []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), wantErr: ErrNotTLS, consumed: RecordHeaderLen},
		{name: "one non-TLS byte then EOF", in: []byte("G"), wantErr: ErrNotTLS, consumed: 1},
		{name: "ssl2 version", in: []byte{0x16, 2, 0, 0, 1, 1}, wantErr: ErrNotTLS, consumed: RecordHeaderLen},
		{name: "server hello", in: record(2, helloBody(sniExt("x"))), wantErr: ErrNotTLS, consumed: -1},
		{name: "truncated header", in: tls13[:3], wantErr: io.ErrUnexpectedEOF, consumed: -1},
		{name: "truncated record", in: tls13[:100], wantErr: io.ErrUnexpectedEOF, consumed: -1},
		{name: "truncated message", in: reframe(tls13, 100)[:200], wantErr: io.ErrUnexpectedEOF, consumed: -1},
		{name: "empty record", in: []byte{0x16, 3, 1, 0, 0}, wantErr: ErrMalformed, consumed: -1},
		{name: "record over 2^14", in: []byte{0x16, 3, 1, 0x40, 1}, wantErr: ErrMalformed, consumed: -1},
		{name: "alert in the middle", in: append(reframe(tls13, 50)[:55:55], 0x15, 3, 3, 0, 2, 2, 40), wantErr: ErrMalformed, consumed: 60},
		{name: "message over the cap", in: []byte{0x16, 3, 1, 0, 4, 1, 0, 0x40, 0}, wantErr: ErrTooLarge, consumed: -1},
		{name: "tiny records over the cap", in: reframe(big, 1), wantErr: ErrTooLarge, consumed: MaxHelloLen - MaxHelloLen%6},
		{name: "big hello in big records", in: reframe(big, 1000), want: "big.example", consumed: -1},
		{name: "trailing bytes in the record", in: func() []byte {
			r := append(record(handshakeClientHello, helloBody(sniExt("x"))), 0)
			binary.BigEndian.PutUint16(r[3:], uint16(len(r)-RecordHeaderLen))
			return r
		}(), wantErr: ErrMalformed, consumed: -1},
		{name: "bytes after extensions", in: record(handshakeClientHello, append(helloBody(sniExt("x")), 0)), wantErr: ErrMalformed, consumed: -1},
		{name: "odd cipher suites", in: record(handshakeClientHello, func() []byte {
			b := helloBody(sniExt("x"))
			b[2+32+1+1] = 3
			return b
		}()), wantErr: ErrMalformed, consumed: -1},
		{name: "duplicate extension", in: record(handshakeClientHello, helloBody(append(sniExt("x"), sniExt("y")...))), wantErr: ErrMalformed, consumed: -1},
		{name: "two host names", in: record(handshakeClientHello, helloBody(sniExt("x", "y"))), wantErr: ErrMalformed, consumed: -1},
		{name: "bad character", in: record(handshakeClientHello, helloBody(sniExt("a b"))), wantErr: ErrMalformed, consumed: -1},
		{name: "nul byte", in: record(handshakeClientHello, helloBody(sniExt("a\x00.b"))), wantErr: ErrMalformed, consumed: -1},
		{name: "empty label", in: record(handshakeClientHello, helloBody(sniExt("a..b"))), wantErr: ErrMalformed, consumed: -1},
		{name: "trailing dot", in: record(handshakeClientHello, helloBody(sniExt("a.b."))), wantErr: ErrMalformed, consumed: -1},
		{name: "name too long", in: record(handshakeClientHello, helloBody(sniExt(strings.Repeat("a", 254)))), wantErr: ErrMalformed, consumed: -1},
		{name: "extension length past the end", in: record(handshakeClientHello, helloBody([]byte{0, 0, 0, 9})), wantErr: ErrMalformed, consumed: -1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var r io.Reader = bytes.NewReader(tc.in)
			if tc.reader != nil {
				r = tc.reader(r)
			}
			got, consumed, err := ReadClientHello(r)
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if got != tc.want {
				t.Errorf("name = %q, want %q", got, tc.want)
			}
			want := tc.consumed
			if want < 0 {
				want = len(tc.in)
			}
			if len(consumed) != want || !bytes.Equal(consumed, tc.in[:len(consumed)]) {
				t.Errorf("consumed %d bytes (prefix of the input: %t), want %d", len(consumed), bytes.HasPrefix(tc.in, consumed), want)
			}
		})
	}
}

// FuzzReadClientHello checks the reader's invariants on any input: no panic;
// it consumes a prefix of the input, at most MaxHelloLen bytes; a name it
// returns is a checked, lower-case host name; and how the input is split
// into reads changes nothing. Seeds: real hellos here and testdata/fuzz.
func FuzzReadClientHello(f *testing.F) {
	for _, conf := range []*tls.Config{
		{ServerName: "outbound_.8080_._.echo.demo.svc.clusterset.local"},
		{ServerName: "a.example", MaxVersion: tls.VersionTLS12},
		{InsecureSkipVerify: true},
	} {
		h := clientHello(f, conf)
		f.Add(h)
		f.Add(reframe(h, 16))
	}
	f.Add(record(handshakeClientHello, helloBody(sniExt("x"))))
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		name, consumed, err := ReadClientHello(bytes.NewReader(in))
		if len(consumed) > MaxHelloLen || !bytes.HasPrefix(in, consumed) {
			t.Fatalf("consumed %d bytes, not a prefix of the input or over the cap", len(consumed))
		}
		if err == nil {
			if _, cerr := checkHostName([]byte(name)); cerr != nil || name != strings.ToLower(name) {
				t.Fatalf("returned a bad name %q", name)
			}
		} else if name != "" {
			t.Fatalf("name %q with error %v", name, err)
		}
		name2, consumed2, err2 := ReadClientHello(iotest.OneByteReader(bytes.NewReader(in)))
		if name2 != name || !bytes.Equal(consumed2, consumed) || (err == nil) != (err2 == nil) {
			t.Fatalf("one byte per read: %q %d %v, whole: %q %d %v", name2, len(consumed2), err2, name, len(consumed), err)
		}
	})
}

// TestFuzzCorpus keeps the checked-in corpus readable by go test.
func TestFuzzCorpus(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "fuzz", "FuzzReadClientHello", "*"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no seed corpus: %v", err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil || !bytes.HasPrefix(b, []byte("go test fuzz v1\n")) {
			t.Errorf("%s: not a fuzz corpus file: %v", f, err)
		}
	}
}
