// Package wsload is the WebSocket side of the gateway's load test
// (test/load BenchmarkGatewayFanout): a swarm of clients that checks every
// delta arrives in order, once, from its own tenant, and times it from its
// committed_at; the bare coder/websocket broadcast server the gateway is
// compared with (Broadcaster, run as cmd/wsbroadcast); the deltas both
// send; and the pacing that spreads many tenants' changes over time.
//
// The clients are only the load generator, and they run in the
// benchmark's process on the cores the server under test needs, so they
// are lean (wsConn, on the low-level github.com/gobwas/ws): after the
// handshake and first message, a few epoll loops (GOMAXPROCS, at least 2;
// a goroutine per connection away from Linux) serve all connections,
// reading each readable one once into a shared buffer and parsing its
// frames in place into a message buffer it reuses; only the type, tenant,
// version and commit time of a message are parsed, with no allocation,
// timer or goroutine per message. They still check the protocol:
// fragments, pings (answered), close frames (the status and reason
// recorded), masked frames and reserved bits (counted as
// malformed, the connection failed), a 16 MiB message limit.
package wsload
