package pbxsim

import (
	"slices"
	"time"
)

// Truth is the simulator's own view of the PBX at one instant, in plain
// exported structs, for tests that compare a state projected from AMI/ARI
// events against what really is.
type Truth struct {
	Endpoints []EndpointTruth // in configuration order
	Channels  []ChannelTruth  // oldest first
	Bridges   []BridgeTruth
	Trunk     TrunkTruth
	Queues    []QueueTruth
}

// EndpointTruth is one PJSIP endpoint.
type EndpointTruth struct {
	Name        string
	Registered  bool
	DeviceState string // NOT_INUSE, BUSY, UNAVAILABLE (as in DeviceStateChange)
	Contacts    []ContactTruth
	Channels    []string // Uniqueids of the endpoint's live channels
}

// ContactTruth is a registered contact (AOR = endpoint name).
type ContactTruth struct {
	URI     string
	Status  string // "NonQualified": the reference PBX does not qualify
	CallID  string // Call-ID of the REGISTER that created it
	Expires time.Time
}

// ChannelTruth is one live channel.
type ChannelTruth struct {
	Name          string
	Uniqueid      string
	Linkedid      string
	Endpoint      string // "" for Local channels
	State         string // ast_state2str: Down, Ring, Ringing, Up
	CallerNum     string
	CallerName    string
	ConnectedNum  string
	ConnectedName string
	Context       string
	Exten         string
	Priority      int
	App, AppData  string
	BridgeID      string
	OnHold        bool
	Stasis        string // Stasis application, if in one
	Created       time.Time
}

// BridgeTruth is one bridge.
type BridgeTruth struct {
	ID         string
	Type       string // AMI BridgeType: basic, parking
	Technology string
	Channels   []string // Uniqueids
}

// TrunkTruth is the outbound registration of the trunk.
type TrunkTruth struct {
	Endpoint     string // "provider"
	Registration string // "provider-reg"
	Registered   bool
}

// QueueTruth is an app_queue queue.
type QueueTruth struct {
	Name      string
	Members   []QueueMemberTruth
	Callers   []string // Uniqueids of the waiting callers, in position order
	Completed int
	Abandoned int
}

// QueueMemberTruth is one queue member.
type QueueMemberTruth struct {
	Interface  string // "PJSIP/1004"
	Name       string // MemberName
	Status     int    // AMI Status (ast_device_state): 1 not in use, 2 in use, 3 busy, 5 unavailable
	Paused     bool
	InCall     bool
	CallsTaken int
}

// Truth returns the current state of the simulated PBX.
func (s *Server) Truth() Truth {
	s.mu.Lock()
	defer s.mu.Unlock()
	var t Truth
	byExt := map[string][]string{}
	for _, c := range s.chans {
		ct := ChannelTruth{Name: c.name, Uniqueid: c.uniqueid, Linkedid: c.linkedid, Endpoint: c.ext,
			State: stateDesc[c.state], CallerNum: c.cidNum, CallerName: c.cidName, ConnectedNum: c.connNum,
			ConnectedName: c.connName, Context: c.context, Exten: c.exten, Priority: c.priority,
			App: c.app, AppData: c.appData, OnHold: c.held, Stasis: c.stasis, Created: c.created}
		if c.br != nil {
			ct.BridgeID = c.br.id
		}
		t.Channels = append(t.Channels, ct)
		if c.ext != "" {
			byExt[c.ext] = append(byExt[c.ext], c.uniqueid)
		}
	}
	t.Endpoints = make([]EndpointTruth, 0, len(s.order))
	for _, e := range s.order {
		et := EndpointTruth{Name: e.name, Registered: e.registered, DeviceState: e.computeDev(), Channels: byExt[e.name]}
		if e.registered {
			et.Contacts = []ContactTruth{{URI: e.uri(), Status: "NonQualified", CallID: e.callID, Expires: e.expires}}
		}
		t.Endpoints = append(t.Endpoints, et)
	}
	for _, b := range s.bridges {
		bt := BridgeTruth{ID: b.id, Type: b.class, Technology: b.tech}
		for _, c := range b.chans {
			bt.Channels = append(bt.Channels, c.uniqueid)
		}
		t.Bridges = append(t.Bridges, bt)
	}
	t.Trunk = TrunkTruth{Endpoint: s.cfg.Trunk, Registration: s.cfg.Trunk + "-reg", Registered: s.trunkUp}
	q := s.queue
	qt := QueueTruth{Name: q.name, Completed: q.completed, Abandoned: q.abandoned}
	for _, m := range q.members {
		qt.Members = append(qt.Members, QueueMemberTruth{Interface: m.iface, Name: m.name, Status: m.status,
			Paused: m.paused, InCall: m.inCall, CallsTaken: m.calls})
	}
	for _, e := range q.entries {
		qt.Callers = append(qt.Callers, e.call.a.uniqueid)
	}
	t.Queues = []QueueTruth{qt}
	return t
}

// Endpoint returns the named endpoint of t, if present.
func (t Truth) Endpoint(name string) (EndpointTruth, bool) {
	i := slices.IndexFunc(t.Endpoints, func(e EndpointTruth) bool { return e.Name == name })
	if i < 0 {
		return EndpointTruth{}, false
	}
	return t.Endpoints[i], true
}

// Channel returns the channel of t with that name or Uniqueid, if present.
func (t Truth) Channel(nameOrID string) (ChannelTruth, bool) {
	i := slices.IndexFunc(t.Channels, func(c ChannelTruth) bool { return c.Name == nameOrID || c.Uniqueid == nameOrID })
	if i < 0 {
		return ChannelTruth{}, false
	}
	return t.Channels[i], true
}

// CallOf returns the call a live channel (name or Uniqueid) belongs to,
// e.g. to answer or hang up a call started by an AMI Originate or Atxfer.
func (s *Server) CallOf(nameOrID string) *Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.findChannel(nameOrID); c != nil {
		return callOf(c)
	}
	return nil
}

// Transfers returns the attended transfers started with the AMI Atxfer
// action that are still pending, oldest first.
func (s *Server) Transfers() []*Transfer {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.transfers = slices.DeleteFunc(s.transfers, func(t *Transfer) bool {
		return t.done || t.first.gone || t.consult.state == callEnded
	})
	return slices.Clone(s.transfers)
}
