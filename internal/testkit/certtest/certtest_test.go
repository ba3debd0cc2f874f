package certtest

import (
	"crypto/tls"
	"net"
	"testing"
)

// handshake serves one TLS connection as srv and dials it with client.
func handshake(t *testing.T, srv Server, client *tls.Config) error {
	t.Helper()
	lis, err := tls.Listen("tcp", "127.0.0.1:0", srv.ServerConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	go func() {
		if c, err := lis.Accept(); err == nil {
			_ = c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	c, err := tls.DialWithDialer(&net.Dialer{}, "tcp", lis.Addr().String(), client)
	if err == nil {
		c.Close()
	}
	return err
}

func TestServerIsVerified(t *testing.T) {
	const echoID = "spiffe://cluster.local/ns/demo/sa/echo"
	echo := NewServer(t, echoID)
	if err := handshake(t, echo, echo.ClientConfig("echo.example")); err != nil {
		t.Fatalf("a client of echo refused echo: %v", err)
	}
	// The same ID from another root, and another ID from the same root:
	// both refused.
	if err := handshake(t, NewServer(t, echoID), echo.ClientConfig("echo.example")); err == nil {
		t.Error("a client of echo accepted a server of another root")
	}
	root := Root(t, echo.SVID.ID.TrustDomain())
	echo = Server{SVID: SVID(t, root, echoID), Bundle: root.Bundle()}
	admin := Server{SVID: SVID(t, root, "spiffe://cluster.local/ns/demo/sa/admin"), Bundle: root.Bundle()}
	if err := handshake(t, admin, echo.ClientConfig("echo.example")); err == nil {
		t.Error("a client of echo accepted another identity of its root")
	}
	if err := handshake(t, echo, echo.ClientConfig("echo.example")); err != nil {
		t.Errorf("a client of echo refused echo: %v", err)
	}
}
