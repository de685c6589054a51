// Package wsload is the WebSocket side of the gateway's load test
// (test/load BenchmarkGatewayFanout): a swarm of clients that checks every
// delta arrives in order, once, from its own tenant, and times it from its
// committed_at; the bare coder/websocket broadcast server the gateway is
// compared with (Broadcaster, run as cmd/wsbroadcast); the deltas both
// send; and the pacing that spreads many tenants' changes over time.
//
// The clients are only the load generator, and they run in the
// benchmark's process on the cores the server under test needs, so they
// are lean (wsConn, on the low-level github.com/gobwas/ws): a goroutine
// per connection reads frames with one 4 KiB bufio.Reader into a buffer it
// reuses, and parses only the type, tenant, version and commit time of a
// message, with no allocation, timer or extra goroutine per message. They
// still check the protocol: fragments, pings (answered), close frames (the
// status and reason recorded), masked frames and reserved bits (counted as
// malformed, the connection failed), a 16 MiB message limit.
package wsload
