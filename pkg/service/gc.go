package service

import (
	"log/slog"
	"os"
	"runtime/debug"
)

// TuneGC trades memory for CPU where the operator has not said otherwise:
// GOGC=percent unless GOGC is set, and a soft memory limit of limit bytes
// unless GOMEMLIMIT is set, so that the larger GOGC does not let bursts
// inflate the RSS. The limit is soft: past it the GC works harder (at most
// half the CPU, by the runtime's own limiter) rather than failing.
func TuneGC(log *slog.Logger, percent int, limit int64) {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(percent)
		log.Debug("GOGC set", "percent", percent)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(limit)
		log.Debug("GOMEMLIMIT set", "bytes", limit)
	}
}
