// Command collector connects to the AMI of one or many Asterisk PBXs and
// publishes what they report as pbxpulse events on NATS JetStream.
package main

import (
	"github.com/pbxpulse/pbxpulse/pkg/service"
	"github.com/pbxpulse/pbxpulse/services/collector/internal/collector"
)

func main() { service.Main("collector", collector.Run) }
