// Package gateway serves the live panel and the WebSocket/HTTP API: a
// snapshot of a tenant's views from Postgres, then every delta after it.
package gateway

import (
	"errors"
	"strings"
	"time"

	"github.com/pbxpulse/pbxpulse/pkg/config"
)

// Config is the gateway's configuration, read from the environment.
type Config struct {
	// Addr is the HTTP listen address.
	Addr string `env:"HTTP_ADDR" envDefault:":8080"`
	// NATSURL is where deltas are announced.
	NATSURL string `env:"NATS_URL" envDefault:"nats://127.0.0.1:4222"`
	// DatabaseURL is the projections' Postgres database.
	DatabaseURL string `env:"DATABASE_URL,required"`
	// Tenant whose views this gateway serves.
	Tenant string `env:"TENANT" envDefault:"default"`
	// Tokens are static tokens for small setups: comma-separated
	// tenant:role:token entries (role viewer, supervisor or admin).
	Tokens string `env:"GATEWAY_TOKENS"`
	// JWTSecret verifies HS256/384/512 JWTs; JWTPublicKeyFile (PEM, PKIX)
	// verifies RS*, PS256, ES256/384 and EdDSA ones. A JWT carries the claims
	// tenant, role, sub and exp (required).
	JWTSecret        string `env:"GATEWAY_JWT_SECRET"`
	JWTPublicKeyFile string `env:"GATEWAY_JWT_PUBLIC_KEY_FILE"`
	// JWTIssuer and JWTAudience, when set, must match the token's iss and aud.
	JWTIssuer   string `env:"GATEWAY_JWT_ISSUER"`
	JWTAudience string `env:"GATEWAY_JWT_AUDIENCE"`
	// Open serves TENANT to anyone, as admin, when no token or key is
	// configured: for a trusted network or a laptop only.
	Open bool `env:"GATEWAY_OPEN"`
	// AllowOrigin lists extra WebSocket origins (host patterns, comma
	// separated) besides the gateway's own host, e.g. for an iframe.
	AllowOrigin string `env:"ALLOW_ORIGIN"`
	// PathPrefix serves everything under a prefix such as /monitor/.
	PathPrefix string `env:"PATH_PREFIX" envDefault:"/"`
	// SendBuffer is how many messages may queue for one client before it is
	// cut off as too slow.
	SendBuffer int `env:"WS_SEND_BUFFER" envDefault:"256"`
	// WriteTimeout cuts off a client that does not take a message in time.
	WriteTimeout time.Duration `env:"WS_WRITE_TIMEOUT" envDefault:"10s"`
	// PingInterval keeps idle connections alive through proxies and finds dead ones.
	PingInterval time.Duration `env:"WS_PING_INTERVAL" envDefault:"20s"`
	config.Logging
}

// Validate checks the configuration and normalizes PathPrefix.
func (c *Config) Validate() error {
	if err := config.CheckToken("TENANT", c.Tenant); err != nil {
		return err
	}
	if !strings.HasPrefix(c.PathPrefix, "/") {
		return errors.New("PATH_PREFIX must start with /")
	}
	if !strings.HasSuffix(c.PathPrefix, "/") {
		c.PathPrefix += "/"
	}
	if c.SendBuffer < 8 {
		return errors.New("WS_SEND_BUFFER must be at least 8")
	}
	return nil
}

func (c *Config) origins() []string {
	var out []string
	for _, o := range strings.Split(c.AllowOrigin, ",") {
		if o = strings.TrimSpace(o); o != "" {
			out = append(out, o)
		}
	}
	return out
}
