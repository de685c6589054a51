// Package collector connects to the AMI of one or many PBXs, normalizes what
// they report and publishes it to JetStream.
package collector

import (
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/pbxpulse/pbxpulse/pkg/ari"
	"github.com/pbxpulse/pbxpulse/pkg/config"
)

// Config is the collector's configuration, read from the environment.
type Config struct {
	// NATSURL is the NATS server or cluster to publish to.
	NATSURL string `env:"NATS_URL" envDefault:"nats://127.0.0.1:4222"`
	// Tenant owns every PBX this collector watches.
	Tenant string `env:"TENANT" envDefault:"default"`
	// AMIHosts lists the PBXs: comma separated "[id=][user:pass@]host:port".
	// Without an id the host name (dots as dashes) is the PBX id.
	AMIHosts string `env:"AMI_HOSTS"`
	// AMIUser and AMIPass are the manager credentials used where an entry
	// of AMIHosts has none of its own.
	AMIUser string `env:"AMI_USER" envDefault:"monitor"`
	AMIPass string `env:"AMI_PASS"`
	// ARIHosts lists the PBXs followed over ARI: comma separated
	// "[id=]http(s)://[user:pass@]host:port[/prefix]". A PBX also in
	// AMIHosts (same id) gets from ARI only what AMI cannot see (Stasis,
	// playbacks, unknown event types); one only here is followed over ARI
	// alone.
	ARIHosts string `env:"ARI_HOSTS"`
	// ARIUser and ARIPass are the ARI credentials for entries without their own.
	ARIUser string `env:"ARI_USER" envDefault:"ari"`
	ARIPass string `env:"ARI_PASS"`
	// ARIApps are the Stasis applications to subscribe to, comma separated.
	ARIApps string `env:"ARI_APPS" envDefault:"pbxpulse"`
	// Keepalive is the interval of AMI Ping; a PBX that does not answer
	// within the same time is considered gone.
	Keepalive time.Duration `env:"AMI_KEEPALIVE" envDefault:"5s"`
	// TrunkPattern / ExtensionPattern override endpoint classification by name.
	TrunkPattern     string `env:"TRUNK_PATTERN"`
	ExtensionPattern string `env:"EXTENSION_PATTERN"`
	// MaxBackoff caps the reconnect delay.
	MaxBackoff time.Duration `env:"AMI_MAX_BACKOFF" envDefault:"30s"`
	// ReconcileInterval is how often the channel, contact and registration
	// lists are compared with what events said (0 disables it).
	ReconcileInterval time.Duration `env:"RECONCILE_INTERVAL" envDefault:"60s"`
	// OutboxCapacity is how many events per PBX wait while NATS is away;
	// beyond it events are counted as dropped and a resync follows.
	OutboxCapacity int `env:"OUTBOX_CAPACITY" envDefault:"50000"`
	// HealthAddr serves /healthz, /readyz and /metrics ("" disables it).
	HealthAddr string `env:"HEALTH_ADDR" envDefault:":9101"`
	// Commands enables call control on pbx.<tenant>.<pbx>.cmd.<action>.
	Commands bool `env:"COMMANDS" envDefault:"true"`
	// LeaseTTL is how long a replica's claim on a PBX outlives it; another
	// replica takes over after it (at once on a clean shutdown).
	LeaseTTL time.Duration `env:"LEASE_TTL" envDefault:"10s"`
	// LeaseBucket is the JetStream KV bucket of the leases.
	LeaseBucket string `env:"LEASE_BUCKET" envDefault:"pbxpulse_leases"`
	config.Logging
}

// PBX is one entry of AMI_HOSTS.
type PBX struct {
	ID     string
	Addr   string
	User   string
	Secret string
}

// String never shows the secret.
func (p PBX) String() string { return p.ID + "=" + p.Addr }

// ARIPBX is one entry of ARIHosts.
type ARIPBX struct {
	ID   string
	Conf ari.Config
}

// ARIPBXs parses and validates ARIHosts.
func (c Config) ARIPBXs() ([]ARIPBX, error) {
	var out []ARIPBX
	seen := map[string]bool{}
	var apps []string
	for _, a := range strings.Split(c.ARIApps, ",") {
		if a = strings.TrimSpace(a); a != "" {
			apps = append(apps, a)
		}
	}
	for _, entry := range strings.Split(c.ARIHosts, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		p := ARIPBX{Conf: ari.Config{User: c.ARIUser, Password: c.ARIPass, Apps: apps}}
		if id, rest, ok := strings.Cut(entry, "="); ok && !strings.Contains(id, "/") {
			p.ID, entry = id, rest
		}
		u, err := url.Parse(entry)
		if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
			return nil, fmt.Errorf("ARI_HOSTS: entry %d: want http(s)://host:port[/prefix]", len(out)+1)
		}
		if u.User != nil {
			p.Conf.User = u.User.Username()
			p.Conf.Password, _ = u.User.Password()
			u.User = nil
		}
		p.Conf.URL = u.String()
		if p.ID == "" {
			p.ID = strings.NewReplacer(".", "-", ":", "-").Replace(u.Hostname())
		}
		if err := config.CheckToken("ARI_HOSTS id", p.ID); err != nil {
			return nil, err
		}
		if seen[p.ID] {
			return nil, fmt.Errorf("ARI_HOSTS: PBX id %q appears twice", p.ID)
		}
		if len(apps) == 0 {
			return nil, fmt.Errorf("ARI_APPS: at least one Stasis application is needed")
		}
		seen[p.ID] = true
		out = append(out, p)
	}
	return out, nil
}

// PBXs parses and validates AMIHosts.
func (c Config) PBXs() ([]PBX, error) {
	var out []PBX
	seen := map[string]bool{}
	for _, entry := range strings.Split(c.AMIHosts, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		p := PBX{User: c.AMIUser, Secret: c.AMIPass}
		if id, rest, ok := strings.Cut(entry, "="); ok {
			p.ID, entry = id, rest
		}
		if cred, addr, ok := strings.Cut(entry, "@"); ok {
			u, err := url.PathUnescape(cred)
			if err != nil {
				return nil, fmt.Errorf("AMI_HOSTS: entry for %s: bad credentials encoding", addr)
			}
			p.User, p.Secret, _ = strings.Cut(u, ":")
			entry = addr
		}
		host, port, err := net.SplitHostPort(entry)
		if err != nil {
			return nil, fmt.Errorf("AMI_HOSTS: %q: want host:port", entry)
		}
		p.Addr = net.JoinHostPort(host, port)
		if p.ID == "" {
			p.ID = strings.NewReplacer(".", "-", ":", "-").Replace(host)
		}
		if err := config.CheckToken("AMI_HOSTS id", p.ID); err != nil {
			return nil, err
		}
		if seen[p.ID] {
			return nil, fmt.Errorf("AMI_HOSTS: PBX id %q appears twice", p.ID)
		}
		seen[p.ID] = true
		out = append(out, p)
	}
	return out, nil
}

// Validate checks the values that can be checked without connecting.
func (c Config) Validate() error {
	if err := config.CheckToken("TENANT", c.Tenant); err != nil {
		return err
	}
	amis, err := c.PBXs()
	if err != nil {
		return err
	}
	aris, err := c.ARIPBXs()
	if err != nil {
		return err
	}
	if len(amis)+len(aris) == 0 {
		return fmt.Errorf("AMI_HOSTS or ARI_HOSTS: no PBX listed")
	}
	for name, p := range map[string]string{"TRUNK_PATTERN": c.TrunkPattern, "EXTENSION_PATTERN": c.ExtensionPattern} {
		if _, err := regexp.Compile(p); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	if c.Keepalive <= 0 {
		return fmt.Errorf("AMI_KEEPALIVE must be positive")
	}
	if c.ReconcileInterval < 0 {
		return fmt.Errorf("RECONCILE_INTERVAL must not be negative")
	}
	if c.OutboxCapacity < 100 {
		return fmt.Errorf("OUTBOX_CAPACITY must be at least 100")
	}
	if c.LeaseTTL < time.Second {
		return fmt.Errorf("LEASE_TTL must be at least 1s")
	}
	return nil
}
