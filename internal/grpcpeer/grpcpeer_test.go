package grpcpeer

import (
	"context"
	"testing"

	"google.golang.org/grpc/metadata"
)

func TestBearerToken(t *testing.T) {
	for _, c := range []struct {
		values []string
		want   string
		ok     bool
	}{
		{nil, "", false},
		{[]string{"Basic abc"}, "", false},
		{[]string{"Bearer   "}, "", false},
		{[]string{"Basic abc", "Bearer  tok "}, "tok", true},
	} {
		md := metadata.MD{}
		for _, v := range c.values {
			md.Append("authorization", v)
		}
		got, ok := BearerToken(metadata.NewIncomingContext(context.Background(), md))
		if got != c.want || ok != c.ok {
			t.Errorf("%q: %q %v, want %q %v", c.values, got, ok, c.want, c.ok)
		}
	}
}

func TestHost(t *testing.T) {
	for addr, want := range map[string]string{"10.0.0.1:443": "10.0.0.1", "[::1]:80": "::1", "unix-socket": "unix-socket"} {
		if got := Host(addr); got != want {
			t.Errorf("Host(%q) = %q, want %q", addr, got, want)
		}
	}
	if got := Addr(context.Background()); got != "" {
		t.Errorf("Addr without a peer = %q", got)
	}
	if _, ok := TLS(context.Background()); ok {
		t.Error("TLS without a peer")
	}
}
