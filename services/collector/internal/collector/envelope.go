package collector

import (
	"fmt"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/pbxpulse/pbxpulse/pkg/pbxpulsev1"
)

// envelope fills the envelope of the events of one connection to a PBX (AMI
// or ARI): its id, who it belongs to, when, and its place in the session.
type envelope struct {
	tenant, pbx string
	source      pb.Source
	sessionID   string
	seq         uint64
}

// newSession starts a new numbering: a reconnect is a new session.
func (v *envelope) newSession() {
	v.sessionID = uuid.NewString()
	v.seq = 0
}

func (v *envelope) stamp(e *pb.Event) error {
	id, err := uuid.NewV7()
	if err != nil {
		return fmt.Errorf("event id: %w", err)
	}
	v.seq++
	e.Id = id.String()
	e.Tenant = v.tenant
	e.PbxId = v.pbx
	e.Source = v.source
	e.ReceivedTime = timestamppb.New(time.Now())
	if e.PbxTime == nil {
		e.PbxTime = e.ReceivedTime
	}
	e.SessionSeq = v.seq
	e.SessionId = v.sessionID
	return nil
}
