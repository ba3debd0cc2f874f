// Package connguard bounds what a client can make one of Horizon's gRPC
// ports hold before, and while, it is trusted: connections, TLS handshakes,
// HTTP/2 streams, new streams per second and message bytes. It sits between
// the listener and the services:
//
//	TCP accept ──► Guard.Listener          MaxConns, MaxConnsPerSource: closed at accept
//	      │
//	      ▼
//	grpc.Creds (ServerOptions)             the port's TLS (Config.Creds) within HandshakeTimeout;
//	      │                                failures counted by reason, logged rate-limited
//	      ▼  HTTP/2 bytes, both ways
//	frame watcher (h2conn.go)              streams reset early or opened past the limit:
//	      │                                GOAWAY(ENHANCE_YOUR_CALM), then the connection is closed
//	      ▼
//	grpc.Server (ServerOptions)            MaxConcurrentStreams, MaxRecvMsgSize, MaxHeaderListSize
//	      │
//	      ▼
//	interceptors (ServerOptions)           a token per new stream or call (StreamRate, StreamBurst,
//	      │                                waiting at most MaxStreamWait); first message ≤ MaxFirstMsgSize
//	      ▼
//	xDS (ADS) and certificate services
//
// One Guard serves one port ("plaintext", "mtls": the port label of its
// metrics). Wiring it is two calls, both needed:
//
//	g := connguard.New(connguard.Config{Port: "mtls", Creds: credentials.NewTLS(conf), Metrics: m, Logger: log})
//	gs := grpc.NewServer(slices.Concat(otherOptions, g.ServerOptions())...)
//	gs.Serve(g.Listener(lis))
//
// ServerOptions sets grpc.Creds itself (the port's own credentials, wrapped,
// or none for plaintext): a later grpc.Creds option would replace it and
// switch off the handshake counting and the frame watcher. Its interceptors
// are chained (grpc.ChainStreamInterceptor, grpc.ChainUnaryInterceptor), so
// they run after any set with grpc.StreamInterceptor or chained before them.
//
// # Rapid reset
//
// grpc-go has no defence of its own against HTTP/2 rapid reset
// (CVE-2023-44487: HEADERS then RST_STREAM, repeated): MaxConcurrentStreams
// only bounds how many handlers run at once, while each reset stream still
// costs a header decode, a goroutine and a handler start. Nor does it offer a
// way to close one connection. So the Guard watches the HTTP/2 frames of each
// connection itself, in both directions, at the one place it sees them in
// clear: the net.Conn its credentials return to gRPC. It reads only the
// 9-byte frame headers (length, type, flags, stream) and keeps, per
// connection, the client streams the server has not ended yet:
//
//   - a stream the client resets less than MinStreamLifetime after opening
//     it, before the server ended it, counts as an early reset;
//   - so does a stream opened while MaxConcurrentStreams are already open
//     (gRPC refuses it: the client ignored the limit it was sent).
//
// More than RapidResets of these within RapidResetWindow and the connection
// is abusive: the Guard writes a GOAWAY frame with ENHANCE_YOUR_CALM, and the
// highest stream the client opened that gRPC was handed as last stream, into
// the server's byte stream exactly between two frames (never inside a frame
// or a header block), drops what gRPC writes after it, stops handing gRPC
// the client's frames, half-closes, and closes the connection after
// LingerTimeout at most. An honest client resets few streams: Envoy and
// gRPC keep one ADS stream per connection and end it by closing the
// connection. Counting by lifetime rather than by messages means a client
// cannot hide its resets by sending a message first; to avoid counting it
// must keep each stream a second, and MaxConcurrentStreams then bounds it to
// 100 streams a second per connection (with the defaults).
//
// Everything a client triggers is counted (Metrics) and logged at most once
// per key per LogInterval (internal/ratelog).
package connguard
