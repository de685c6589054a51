// Package logtailer follows Asterisk's log files and publishes every log
// entry as a pbxpulse event (LogLine payload) to the PBX_LOGS stream.
package logtailer

import (
	"fmt"
	"path/filepath"
	"strings"
	"time"

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
	// least every second).
	CommitEvery int `env:"COMMIT_EVERY" envDefault:"256"`
	// MaxMessageBytes caps one entry's message; longer ones are cut and
	// marked.
	MaxMessageBytes int `env:"MAX_MESSAGE_BYTES" envDefault:"65536"`
	config.Logging
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
	return nil
}
