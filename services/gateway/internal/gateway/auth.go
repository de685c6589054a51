package gateway

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/pbxpulse/pbxpulse/pkg/config"
)

// Role is what a principal may do; each role includes the ones below it.
type Role int

// Roles, weakest first.
const (
	RoleViewer     Role = iota + 1 // sees views, history and logs
	RoleSupervisor                 // also controls calls (hang up, transfer, originate, spy)
	RoleAdmin                      // also reads and changes PBX configuration
)

// ParseRole reads a role name.
func ParseRole(s string) (Role, error) {
	switch s {
	case "viewer":
		return RoleViewer, nil
	case "supervisor":
		return RoleSupervisor, nil
	case "admin":
		return RoleAdmin, nil
	}
	return 0, fmt.Errorf("unknown role %q (want viewer, supervisor or admin)", s)
}

func (r Role) String() string {
	switch r {
	case RoleViewer:
		return "viewer"
	case RoleSupervisor:
		return "supervisor"
	case RoleAdmin:
		return "admin"
	}
	return "none"
}

// Principal is who made a request: its tenant bounds every read and command.
type Principal struct {
	Tenant  string
	Role    Role
	Subject string // the JWT's sub, or "token:<tenant>" for a static token
	// Expires is when a JWT expires (zero for static tokens): a WebSocket
	// opened with it is closed then, and reconnects with a fresh token.
	Expires time.Time
}

// Can reports whether p holds at least role r.
func (p Principal) Can(r Role) bool { return p.Role >= r }

type principalKey struct{}

func withPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// principalFrom returns the principal the auth middleware attached.
func principalFrom(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}

// wsProtocol is the WebSocket subprotocol of API v1. Browsers cannot set
// headers on a WebSocket, so the panel sends its token as a second offered
// subprotocol "bearer.<token>", which keeps it out of URLs and proxy logs.
const (
	wsProtocol     = "pbxpulse.v1"
	wsBearerPrefix = "bearer."
)

var errNoToken = errors.New("no token")

// authenticator turns a token into a principal: a static token, or a JWT
// signed with the configured key.
type authenticator struct {
	static map[[32]byte]Principal // by SHA-256 of the token, so lookups leak nothing about it
	key    any                    // []byte (HS256) or a public key
	parser *jwt.Parser
	open   *Principal // no authentication configured (GATEWAY_OPEN=true)
}

func newAuthenticator(cfg *Config) (*authenticator, error) {
	a := &authenticator{static: map[[32]byte]Principal{}}
	for _, e := range strings.Split(cfg.Tokens, ",") {
		if e = strings.TrimSpace(e); e == "" {
			continue
		}
		parts := strings.SplitN(e, ":", 3)
		if len(parts) != 3 || len(parts[2]) < 16 {
			return nil, errors.New("GATEWAY_TOKENS: want tenant:role:token entries, tokens of at least 16 characters")
		}
		if err := config.CheckToken("GATEWAY_TOKENS tenant", parts[0]); err != nil {
			return nil, err
		}
		role, err := ParseRole(parts[1])
		if err != nil {
			return nil, fmt.Errorf("GATEWAY_TOKENS: %w", err)
		}
		a.static[sha256.Sum256([]byte(parts[2]))] = Principal{Tenant: parts[0], Role: role, Subject: "token:" + parts[0]}
	}
	var methods []string
	switch {
	case cfg.JWTSecret != "" && cfg.JWTPublicKeyFile != "":
		return nil, errors.New("set GATEWAY_JWT_SECRET or GATEWAY_JWT_PUBLIC_KEY_FILE, not both")
	case cfg.JWTSecret != "":
		if len(cfg.JWTSecret) < 32 {
			return nil, errors.New("GATEWAY_JWT_SECRET must be at least 32 bytes")
		}
		a.key, methods = []byte(cfg.JWTSecret), []string{"HS256", "HS384", "HS512"}
	case cfg.JWTPublicKeyFile != "":
		key, err := readPublicKey(cfg.JWTPublicKeyFile)
		if err != nil {
			return nil, err
		}
		a.key, methods = key, []string{"RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA"}
	}
	if a.key != nil {
		opts := []jwt.ParserOption{jwt.WithValidMethods(methods), jwt.WithExpirationRequired(), jwt.WithLeeway(30 * time.Second)}
		if cfg.JWTIssuer != "" {
			opts = append(opts, jwt.WithIssuer(cfg.JWTIssuer))
		}
		if cfg.JWTAudience != "" {
			opts = append(opts, jwt.WithAudience(cfg.JWTAudience))
		}
		a.parser = jwt.NewParser(opts...)
	}
	if len(a.static) == 0 && a.key == nil {
		if !cfg.Open {
			return nil, errors.New("no authentication configured: set GATEWAY_TOKENS, GATEWAY_JWT_SECRET or GATEWAY_JWT_PUBLIC_KEY_FILE (or GATEWAY_OPEN=true for a trusted network)")
		}
		a.open = &Principal{Tenant: cfg.Tenant, Role: RoleAdmin, Subject: "anonymous"}
	}
	return a, nil
}

func readPublicKey(path string) (any, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("GATEWAY_JWT_PUBLIC_KEY_FILE: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("GATEWAY_JWT_PUBLIC_KEY_FILE %s: no PEM block", path)
	}
	key, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("GATEWAY_JWT_PUBLIC_KEY_FILE %s: %w", path, err)
	}
	return key, nil
}

type claims struct {
	Tenant string `json:"tenant"`
	Role   string `json:"role"`
	jwt.RegisteredClaims
}

// authenticate checks a token. Errors never echo the token.
func (a *authenticator) authenticate(token string) (Principal, error) {
	if a.open != nil {
		return *a.open, nil
	}
	if token == "" {
		return Principal{}, errNoToken
	}
	if p, ok := a.static[sha256.Sum256([]byte(token))]; ok {
		return p, nil
	}
	if a.parser == nil {
		return Principal{}, errors.New("unknown token")
	}
	var c claims
	if _, err := a.parser.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) { return a.key, nil }); err != nil {
		return Principal{}, fmt.Errorf("jwt: %w", err)
	}
	if !config.ValidToken(c.Tenant) {
		return Principal{}, errors.New("jwt: missing or invalid tenant claim")
	}
	role, err := ParseRole(c.Role)
	if err != nil {
		return Principal{}, fmt.Errorf("jwt: %w", err)
	}
	sub := c.Subject
	if sub == "" {
		sub = "jwt:" + c.Tenant
	}
	var exp time.Time
	if c.ExpiresAt != nil {
		exp = c.ExpiresAt.Time
	}
	return Principal{Tenant: c.Tenant, Role: role, Subject: sub, Expires: exp}, nil
}

// tokenFrom finds a request's token: "Authorization: Bearer", the WebSocket
// subprotocol "bearer.<token>", or ?token= (for curl and EventSource-like
// clients; it ends up in access logs, so prefer the others).
func tokenFrom(r *http.Request) string {
	if h := r.Header.Get("Authorization"); strings.HasPrefix(h, "Bearer ") {
		return strings.TrimSpace(strings.TrimPrefix(h, "Bearer "))
	}
	for _, h := range r.Header.Values("Sec-WebSocket-Protocol") {
		for _, p := range strings.Split(h, ",") {
			if p = strings.TrimSpace(p); strings.HasPrefix(p, wsBearerPrefix) {
				return strings.TrimPrefix(p, wsBearerPrefix)
			}
		}
	}
	return r.URL.Query().Get("token")
}

// authed attaches the request's principal, or answers 401; with min above
// viewer it also answers 403 to weaker roles.
func (g *Gateway) authed(min Role, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := g.authn.authenticate(tokenFrom(r))
		if err != nil {
			g.log.Debug("unauthorized", "err", err, "remote", r.RemoteAddr)
			w.Header().Set("WWW-Authenticate", `Bearer realm="pbxpulse"`)
			httpError(w, http.StatusUnauthorized, "unauthorized", "a valid token is required")
			return
		}
		if !p.Can(min) {
			httpError(w, http.StatusForbidden, "forbidden", "role "+p.Role.String()+" may not do this; "+min.String()+" required")
			return
		}
		next.ServeHTTP(w, r.WithContext(withPrincipal(r.Context(), p)))
	})
}
