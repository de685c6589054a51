// Package logtailer follows Asterisk's log files and publishes every log
// entry as a pbxpulse event (LogLine payload) to the PBX_LOGS stream.
package logtailer

import (
	"fmt"
	"math"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/pbxpulse/pbxpulse/pkg/bus"
	"github.com/pbxpulse/pbxpulse/pkg/config"
)

// Config is the log tailer's configuration, read from the environment.
type Config struct {
	// NATSURL is the NATS server or cluster to publish to.
	NATSURL string `env:"NATS_URL" envDefault:"nats://127.0.0.1:4222"`
	// Tenant owns the PBX.
	Tenant string `env:"TENANT" envDefault:"default"`
	// PBXID is the id of the PBX whose logs are read (the same id the
	// collector uses for it).
	PBXID string `env:"PBX_ID,required"`
	// LogFiles lists the files to follow: comma separated paths or globs.
	// Globs are expanded at start and every 10 s; a match whose name starts
	// with the name of a followed file (full.1, full-20261121) is a rotated
	// copy and is not followed on its own.
	LogFiles string `env:"LOG_FILES" envDefault:"/var/log/asterisk/full"`
	// StateDir keeps the position reached in each file, so a restart
	// neither loses nor repeats lines.
	StateDir string `env:"STATE_DIR" envDefault:"./.logtailer-state"`
	// StartAt is where a file present at start without saved position is
	// read from: "beginning" or "end".
	StartAt string `env:"START_AT" envDefault:"beginning"`
	// TimeZone is the PBX's time zone (IANA name or "Local"): log dates
	// carry none.
	TimeZone string `env:"LOG_TIMEZONE" envDefault:"Local"`
	// Poll is how often idle files are checked for new lines.
	Poll time.Duration `env:"POLL_INTERVAL" envDefault:"200ms"`
	// CommitEvery is how many acknowledged entries may pass before the
	// position is saved (it is also saved whenever the file is idle and at
	// least every second). Each save is an fsync: a small value costs
	// throughput, a large one means more entries published again (and
	// mostly deduplicated) after a crash.
	CommitEvery int `env:"COMMIT_EVERY" envDefault:"8192"`
	// MaxMessageBytes caps one entry's message; longer ones are cut and
	// marked.
	MaxMessageBytes int `env:"MAX_MESSAGE_BYTES" envDefault:"65536"`
	// LogStreamMaxBytes caps the tenant's log stream (PBX_LOGS_<tenant>);
	// the oldest messages go first. Accepts KiB, MiB, GiB suffixes.
	LogStreamMaxBytes ByteSize `env:"LOG_STREAM_MAX_BYTES" envDefault:"1GiB"`
	// LogStreamMaxAge is how long the tenant's log stream keeps a message.
	LogStreamMaxAge time.Duration `env:"LOG_STREAM_MAX_AGE" envDefault:"168h"`
	config.Logging
}

// ByteSize is a size in bytes, written as a number with an optional KiB,
// MiB or GiB suffix.
type ByteSize int64

// UnmarshalText reads "1073741824", "512MiB" or "1GiB".
func (b *ByteSize) UnmarshalText(text []byte) error {
	s := strings.TrimSpace(string(text))
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}} {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > math.MaxInt64/mult {
		return fmt.Errorf("%q is not a size (bytes, or a number with KiB, MiB or GiB)", text)
	}
	*b = ByteSize(n * mult)
	return nil
}

// LogLimits returns the configured limits of the tenant's log stream.
func (c Config) LogLimits() bus.LogLimits {
	return bus.LogLimits{MaxBytes: int64(c.LogStreamMaxBytes), MaxAge: c.LogStreamMaxAge}
}

// Patterns returns the entries of LogFiles.
func (c Config) Patterns() []string {
	var out []string
	for _, p := range strings.Split(c.LogFiles, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// Location returns the time zone of TimeZone.
func (c Config) Location() (*time.Location, error) {
	if c.TimeZone == "" || c.TimeZone == "Local" {
		return time.Local, nil
	}
	loc, err := time.LoadLocation(c.TimeZone)
	if err != nil {
		return nil, fmt.Errorf("LOG_TIMEZONE: %w", err)
	}
	return loc, nil
}

// Validate checks the values that can be checked without connecting.
func (c Config) Validate() error {
	if err := config.CheckToken("TENANT", c.Tenant); err != nil {
		return err
	}
	if err := config.CheckToken("PBX_ID", c.PBXID); err != nil {
		return err
	}
	pats := c.Patterns()
	if len(pats) == 0 {
		return fmt.Errorf("LOG_FILES: no file listed")
	}
	for _, p := range pats {
		if _, err := filepath.Match(p, ""); err != nil {
			return fmt.Errorf("LOG_FILES: %q: %w", p, err)
		}
	}
	if c.StateDir == "" {
		return fmt.Errorf("STATE_DIR must not be empty")
	}
	if c.StartAt != "beginning" && c.StartAt != "end" {
		return fmt.Errorf("START_AT=%q: want beginning or end", c.StartAt)
	}
	if _, err := c.Location(); err != nil {
		return err
	}
	if c.Poll <= 0 {
		return fmt.Errorf("POLL_INTERVAL must be positive")
	}
	if c.CommitEvery <= 0 {
		return fmt.Errorf("COMMIT_EVERY must be positive")
	}
	if c.MaxMessageBytes < 1024 || c.MaxMessageBytes > 512<<10 {
		return fmt.Errorf("MAX_MESSAGE_BYTES must be between 1024 and 524288")
	}
	if c.LogStreamMaxBytes < 1<<20 {
		return fmt.Errorf("LOG_STREAM_MAX_BYTES=%d: must be at least 1MiB", c.LogStreamMaxBytes)
	}
	if c.LogStreamMaxAge < time.Minute {
		return fmt.Errorf("LOG_STREAM_MAX_AGE=%v: must be at least 1m", c.LogStreamMaxAge)
	}
	return nil
}
