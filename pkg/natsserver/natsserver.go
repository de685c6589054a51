// Package natsserver runs an embedded NATS server with JetStream, for dev
// mode and tests. Production uses a real cluster through NATS_URL.
package natsserver

import (
	"fmt"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Start runs a JetStream-enabled server on host:port (port -1 picks a free
// one) storing its data under dir. Call Shutdown on the result.
func Start(host string, port int, dir string) (*server.Server, error) {
	opts := &server.Options{
		ServerName: "pbxpulse-embedded",
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   dir,
		NoSigs:     true,
		NoLog:      true,
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("nats server: %w", err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return nil, fmt.Errorf("nats server: not ready after 10s")
	}
	return s, nil
}
