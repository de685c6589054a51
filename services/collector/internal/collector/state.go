package collector

import (
	pb "github.com/pbxpulse/pbxpulse/pkg/pbxpulsev1"
	"strings"
)

// seen is the last known status of one contact or registration and the
// event sequence number that set it, so that a list read while events kept
// flowing is not trusted over a newer event.
type seen struct {
	status string
	seq    uint64
	aor    string
}

// objectTracker follows the contacts and outbound registrations of one
// connection, for the periodic reconciliation.
type objectTracker struct {
	contacts map[string]seen // endpoint|uri
	regs     map[string]seen // client URI
	devices  map[string]seen // device name
}

func newObjectTracker() *objectTracker {
	return &objectTracker{contacts: map[string]seen{}, regs: map[string]seen{}, devices: map[string]seen{}}
}

func contactKey(c *pb.ContactStatus) string { return c.GetEndpoint() + "|" + c.GetUri() }

func (t *objectTracker) observe(seq uint64, e *pb.Event) {
	switch p := e.Payload.(type) {
	case *pb.Event_ContactStatus:
		c := p.ContactStatus
		// Event strings are slices of whole AMI frames: keep copies.
		t.contacts[contactKey(c)] = seen{status: strings.Clone(c.Status), seq: seq, aor: strings.Clone(c.Aor)}
	case *pb.Event_DeviceState:
		t.devices[strings.Clone(p.DeviceState.Device)] = seen{status: strings.Clone(p.DeviceState.State), seq: seq}
	case *pb.Event_TrunkRegistration:
		if uri := p.TrunkRegistration.ClientUri; uri != "" {
			t.regs[strings.Clone(uri)] = seen{status: strings.Clone(p.TrunkRegistration.Status), seq: seq}
		}
	}
}

// contactDrift compares a contact list read at sent with what events said,
// and returns the corrections to publish: listed contacts the events got
// wrong, and remembered contacts the PBX no longer has, as "Removed".
func (t *objectTracker) contactDrift(listed []*pb.ContactStatus, sent uint64) []*pb.ContactStatus {
	var out []*pb.ContactStatus
	present := map[string]bool{}
	for _, c := range listed {
		k := contactKey(c)
		present[k] = true
		cur, ok := t.contacts[k]
		if ok && cur.seq > sent {
			continue // an event newer than the list already said
		}
		if !ok || !sameContactStatus(cur.status, c.Status) {
			out = append(out, c)
		}
		t.contacts[k] = seen{status: c.Status, seq: sent, aor: c.Aor}
	}
	for k, cur := range t.contacts {
		if present[k] || cur.seq > sent || cur.status == "Removed" {
			continue
		}
		ep, uri := splitKey(k)
		out = append(out, &pb.ContactStatus{Endpoint: ep, Aor: cur.aor, Uri: uri, Status: "Removed"})
		t.contacts[k] = seen{status: "Removed", seq: sent, aor: cur.aor}
	}
	return out
}

// sameContactStatus treats the transitional statuses of events ("Created",
// "Updated") as agreeing with whatever a list says about a present contact.
func sameContactStatus(event, listed string) bool {
	if event == listed {
		return true
	}
	switch event {
	case "Created", "Updated":
		return listed != "Removed"
	}
	return false
}

// regDrift is contactDrift for outbound registrations.
func (t *objectTracker) regDrift(listed []*pb.TrunkRegistration, sent uint64) []*pb.TrunkRegistration {
	var out []*pb.TrunkRegistration
	for _, r := range listed {
		cur, ok := t.regs[r.ClientUri]
		if ok && cur.seq > sent {
			continue
		}
		if !ok || cur.status != r.Status {
			out = append(out, r)
		}
		t.regs[r.ClientUri] = seen{status: r.Status, seq: sent}
	}
	return out
}

// deviceDrift returns the device states a DeviceStateList read at sent
// shows the events got wrong (a lost DeviceStateChange leaves a phone "in
// use" forever otherwise).
func (t *objectTracker) deviceDrift(listed []*pb.DeviceState, sent uint64) []*pb.DeviceState {
	var out []*pb.DeviceState
	for _, d := range listed {
		cur, ok := t.devices[d.Device]
		if ok && cur.seq > sent {
			continue
		}
		if ok && cur.status != d.State {
			out = append(out, d)
		}
		t.devices[d.Device] = seen{status: d.State, seq: sent}
	}
	return out
}

// reset adopts full lists after a resync.
func (t *objectTracker) reset(contacts []*pb.ContactStatus, regs []*pb.TrunkRegistration, seq uint64) {
	t.contacts, t.regs = map[string]seen{}, map[string]seen{}
	for _, c := range contacts {
		t.contacts[contactKey(c)] = seen{status: c.Status, seq: seq, aor: c.Aor}
	}
	for _, r := range regs {
		t.regs[r.ClientUri] = seen{status: r.Status, seq: seq}
	}
}

func splitKey(k string) (string, string) {
	for i := 0; i < len(k); i++ {
		if k[i] == '|' {
			return k[:i], k[i+1:]
		}
	}
	return k, ""
}
