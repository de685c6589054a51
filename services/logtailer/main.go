// Command logtailer follows the log files of an Asterisk PBX and publishes
// every log entry as a pbxpulse event on NATS JetStream (stream PBX_LOGS).
package main

import (
	"github.com/pbxpulse/pbxpulse/pkg/service"
	"github.com/pbxpulse/pbxpulse/services/logtailer/internal/logtailer"
)

func main() { service.Main("logtailer", logtailer.Run) }
