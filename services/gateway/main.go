// Command gateway serves the pbxpulse live panel and its WebSocket/HTTP API.
package main

import (
	"github.com/pbxpulse/pbxpulse/pkg/service"
	"github.com/pbxpulse/pbxpulse/services/gateway/internal/gateway"
)

func main() { service.Main("gateway", gateway.Run) }
