// Package wsload is the WebSocket side of the gateway's load test
// (test/load BenchmarkGatewayFanout): a swarm of coder/websocket clients
// that checks every delta arrives in order, once, from its own tenant, and
// times it from its committed_at; the bare broadcast server the gateway is
// compared with (Broadcaster, run as cmd/wsbroadcast); the deltas both
// send; and the pacing that spreads many tenants' changes over time.
package wsload
