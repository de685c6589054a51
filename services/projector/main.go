// Command projector applies a tenant's PBX events from NATS JetStream to the
// live views in Postgres and announces every committed change.
package main

import (
	"github.com/pbxpulse/pbxpulse/pkg/service"
	"github.com/pbxpulse/pbxpulse/services/projector/internal/projector"
)

func main() { service.Main("projector", projector.Run) }
