// Command mediabridge runs a media bridge worker (see internal/mediabridge).
package main

import (
	"github.com/pbxpulse/pbxpulse/pkg/service"
	"github.com/pbxpulse/pbxpulse/services/mediabridge/internal/mediabridge"
)

func main() { service.Main("mediabridge", mediabridge.Run) }
