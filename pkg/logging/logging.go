// Package logging builds the slog logger every service uses.
package logging

import (
	"log/slog"
	"os"
	"strings"
)

// New returns a logger writing to stderr: JSON when format is "json",
// text otherwise, at the given level (debug, info, warn, error).
func New(service, format, level string) *slog.Logger {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(strings.ToUpper(level))); err != nil {
		lv = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: lv}
	var h slog.Handler
	if format == "json" {
		h = slog.NewJSONHandler(os.Stderr, opts)
	} else {
		h = slog.NewTextHandler(os.Stderr, opts)
	}
	return slog.New(h).With("service", service)
}
