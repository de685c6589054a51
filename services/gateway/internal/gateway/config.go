// Package gateway serves the live panel and the WebSocket/HTTP API to many
// tenants at once: each principal's tenant decides every byte it is served.
// Per tenant, a hub turns the projector's delta announcements into one
// gap-free sequence and fans it out (encoded once) to that tenant's
// WebSocket clients, which can also follow the tenant's PBX log lines.
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
	// NATSURL is where deltas are announced and logs are kept.
	NATSURL string `env:"NATS_URL" envDefault:"nats://127.0.0.1:4222"`
	// DatabaseURL is the projections' Postgres database.
	DatabaseURL string `env:"DATABASE_URL,required"`
	// Tenant is the tenant GATEWAY_OPEN serves; with tokens, each token
	// names its own tenant and this is unused.
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
	// FrameAncestors is the Content-Security-Policy source list of the
	// sites that may show the panel in an iframe, e.g. "'self'
	// https://portal.example.com". Only the gateway's own pages by default:
	// a page of any site could otherwise frame the panel and trick a
	// supervisor into clicking its actions.
	FrameAncestors string `env:"FRAME_ANCESTORS" envDefault:"'self'"`
	// MetricsAddr is where /metrics is served, apart from the panel: its
	// series name every tenant, which no tenant's user may see.
	// metricsWithPanel ("panel") serves it with the panel instead, under
	// the prefix (a trusted network only).
	MetricsAddr string `env:"METRICS_ADDR" envDefault:":9102"`
	// PathPrefix serves everything under a prefix such as /monitor/.
	PathPrefix string `env:"PATH_PREFIX" envDefault:"/"`
	// SendBuffer is how many messages may queue for one client before it is
	// cut off as too slow (1013).
	SendBuffer int `env:"WS_SEND_BUFFER" envDefault:"128"`
	// WriteTimeout cuts off a client that does not take a message in time.
	WriteTimeout time.Duration `env:"WS_WRITE_TIMEOUT" envDefault:"10s"`
	// PingInterval: a connection that was sent nothing for this long is
	// pinged, which keeps it open through proxies and finds dead peers.
	PingInterval time.Duration `env:"WS_PING_INTERVAL" envDefault:"20s"`
	// MessageRate and MessageBurst limit the messages one client may send
	// (per second, and at once); beyond them it gets errors, then 1008.
	MessageRate  float64 `env:"WS_MESSAGE_RATE" envDefault:"20"`
	MessageBurst int     `env:"WS_MESSAGE_BURST" envDefault:"40"`
	// ResumeMax is the most deltas a reconnecting client (?since=) is sent
	// to catch up; further behind, it gets a fresh snapshot.
	ResumeMax int `env:"WS_RESUME_MAX" envDefault:"1000"`
	// HubIdle is how long a tenant's hub outlives its last client, so that
	// a reconnecting panel finds it warm.
	HubIdle time.Duration `env:"WS_HUB_IDLE" envDefault:"30s"`
	config.Logging
}

// Validate checks the configuration and normalizes PathPrefix.
func (c *Config) Validate() error {
	if err := config.CheckToken("TENANT", c.Tenant); err != nil {
		return err
	}
	if !strings.HasPrefix(c.PathPrefix, "/") {
		return errors.New("config: PATH_PREFIX must start with /")
	}
	if !strings.HasSuffix(c.PathPrefix, "/") {
		c.PathPrefix += "/"
	}
	c.FrameAncestors = frameAncestors(c.FrameAncestors)
	switch {
	case c.FrameAncestors == "" || strings.ContainsAny(c.FrameAncestors, ";,"):
		return errors.New("config: FRAME_ANCESTORS must be a CSP source list (space separated, e.g. 'self' https://portal.example.com)")
	case c.SendBuffer < 8:
		return errors.New("config: WS_SEND_BUFFER must be at least 8")
	case c.WriteTimeout <= 0 || c.PingInterval <= 0:
		return errors.New("config: WS_WRITE_TIMEOUT and WS_PING_INTERVAL must be positive")
	case c.MessageRate <= 0 || c.MessageBurst < 1:
		return errors.New("config: WS_MESSAGE_RATE must be positive and WS_MESSAGE_BURST at least 1")
	case c.ResumeMax < 0:
		return errors.New("config: WS_RESUME_MAX must not be negative")
	case c.HubIdle < 0:
		return errors.New("config: WS_HUB_IDLE must not be negative")
	}
	return nil
}

// metricsWithPanel is the METRICS_ADDR that serves /metrics with the panel.
const metricsWithPanel = "panel"

// frameAncestors normalizes a FRAME_ANCESTORS source list: one space
// between sources, and the keywords quoted as CSP wants them (an env file's
// 'self' loses its quotes to the parser).
func frameAncestors(v string) string {
	srcs := strings.Fields(v)
	for i, s := range srcs {
		if s == "self" || s == "none" {
			srcs[i] = "'" + s + "'"
		}
	}
	return strings.Join(srcs, " ")
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
