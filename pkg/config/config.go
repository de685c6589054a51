// Package config loads a service's configuration from the environment, with
// an optional .env file for single-host installs, and validates the values
// every service shares.
package config

import (
	"errors"
	"fmt"
	"os"
	"regexp"

	"github.com/caarlos0/env/v11"
	"github.com/joho/godotenv"
)

// Load fills cfg (a pointer to a struct with `env` tags) from the
// environment. A .env file in the working directory (or the file named by
// ENV_FILE) is read first; variables already set in the environment win.
func Load(cfg any) error {
	file := os.Getenv("ENV_FILE")
	if file == "" {
		file = ".env"
	}
	if err := godotenv.Load(file); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("config: read %s: %w", file, err)
	}
	if err := env.Parse(cfg); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	return nil
}

var tokenRe = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// ValidToken reports whether s can be a tenant or PBX id: it becomes a NATS
// subject token, so dots, wildcards and spaces are not allowed.
func ValidToken(s string) bool { return tokenRe.MatchString(s) }

// CheckToken returns an error naming the variable when s is not a valid id.
func CheckToken(name, s string) error {
	if !ValidToken(s) {
		return fmt.Errorf("config: %s=%q: must be 1-64 characters of A-Z a-z 0-9 _ -", name, s)
	}
	return nil
}

// Logging is the log settings every service shares; embed it in a Config.
type Logging struct {
	// LogFormat is "text" or "json".
	LogFormat string `env:"LOG_FORMAT" envDefault:"text"`
	// LogLevel is debug, info, warn or error.
	LogLevel string `env:"LOG_LEVEL" envDefault:"info"`
}

// LogSettings returns the settings; embedding Logging gives a Config this method.
func (l Logging) LogSettings() Logging { return l }
