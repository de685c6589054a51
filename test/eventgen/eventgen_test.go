package eventgen

import (
	"context"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/pbxpulse/pbxpulse/pkg/bus"
	pb "github.com/pbxpulse/pbxpulse/pkg/pbxpulsev1"
	"github.com/pbxpulse/pbxpulse/pkg/testenv"
)

func TestSameSeedSameStream(t *testing.T) {
	cfg := Config{Seed: 42, PBXs: 2, ConcurrentCalls: 5}
	a, b := New(cfg), New(cfg)
	for i := range 30_000 {
		x, y := a.Next(), b.Next()
		if !proto.Equal(x, y) {
			t.Fatalf("event %d differs:\n%v\n%v", i, x, y)
		}
	}
	cfg.Seed = 43
	c := New(cfg)
	a = New(Config{Seed: 42, PBXs: 2, ConcurrentCalls: 5})
	same := 0
	for range 1000 {
		if a.Next().GetId() == c.Next().GetId() {
			same++
		}
	}
	if same > 0 {
		t.Errorf("seeds 42 and 43 share %d event ids", same)
	}
}

func TestEnvelope(t *testing.T) {
	g := New(Config{Seed: 7})
	idRe := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	ids := map[string]bool{}
	type sess struct {
		id  string
		seq uint64
	}
	cur := map[string]sess{}
	usedSessions := map[string]bool{}
	var last time.Time
	for i := range 100_000 {
		e := g.Next()
		switch {
		case !idRe.MatchString(e.Id):
			t.Fatalf("event %d: id %q is not a UUIDv7", i, e.Id)
		case ids[e.Id]:
			t.Fatalf("event %d: id %s repeats", i, e.Id)
		case e.Tenant != "acme" || !slices.Contains(g.PBXIDs(), e.PbxId):
			t.Fatalf("event %d: tenant %q pbx %q", i, e.Tenant, e.PbxId)
		case e.Source != pb.Source_SOURCE_AMI:
			t.Fatalf("event %d: source %v", i, e.Source)
		case !e.PbxTime.AsTime().After(last):
			t.Fatalf("event %d: pbx_time %v not after %v", i, e.PbxTime.AsTime(), last)
		case !proto.Equal(e.PbxTime, e.ReceivedTime):
			t.Fatalf("event %d: pbx_time %v, received %v", i, e.PbxTime.AsTime(), e.ReceivedTime.AsTime())
		}
		if i == 0 && e.PbxTime.AsTime().Sub(DefaultStart).Abs() > time.Second {
			t.Errorf("first event at %v, want about %v", e.PbxTime.AsTime(), DefaultStart)
		}
		ids[e.Id] = true
		last = e.PbxTime.AsTime()
		s := cur[e.PbxId]
		switch {
		case e.SessionId == s.id && e.SessionSeq == s.seq+1:
		case e.SessionId != s.id && e.SessionSeq == 1 && !usedSessions[e.SessionId]:
			if e.GetPbxConnection().GetState() != pb.PbxConnection_STATE_RESYNCING {
				t.Fatalf("event %d: session %s starts with %v, want RESYNCING", i, e.SessionId, e.Payload)
			}
			usedSessions[e.SessionId] = true
		default:
			t.Fatalf("event %d of %s: session %s seq %d after session %s seq %d", i, e.PbxId, e.SessionId, e.SessionSeq, s.id, s.seq)
		}
		cur[e.PbxId] = sess{e.SessionId, e.SessionSeq}
	}
	if len(usedSessions) <= len(g.PBXIDs()) {
		t.Errorf("%d sessions in 100,000 events: the link never dropped", len(usedSessions))
	}
}

func TestSubjects(t *testing.T) {
	g := New(Config{Seed: 3, Tenant: "tenant_1"})
	tok := `[A-Za-z0-9_-]{1,64}`
	re := regexp.MustCompile(`^pbx\.(` + tok + `)\.(` + tok + `)\.evt\.([a-z]+)\.([a-z_]+)$`)
	for i := range 50_000 {
		e := g.Next()
		subj, err := bus.EventSubject(e)
		if err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
		m := re.FindStringSubmatch(subj)
		if m == nil || m[1] != "tenant_1" || m[2] != e.PbxId {
			t.Fatalf("event %d: subject %q", i, subj)
		}
		if !subjectMatches(bus.EventsFilter, subj) || !subjectMatches(bus.TenantEvents("tenant_1"), subj) {
			t.Fatalf("event %d: subject %q outside the stream or tenant filter", i, subj)
		}
	}
}

// subjectMatches is NATS wildcard matching ('*' one token, '>' the rest).
func subjectMatches(filter, subj string) bool {
	f, s := strings.Split(filter, "."), strings.Split(subj, ".")
	for i, t := range f {
		if t == ">" {
			return len(s) > i
		}
		if i >= len(s) || (t != "*" && t != s[i]) {
			return false
		}
	}
	return len(f) == len(s)
}

// live follows the channels a consumer of the stream must believe exist.
type live struct {
	chans map[string]map[string]string // pbx -> uniqueid -> linkedid
	seen  map[string]bool              // pbx/uniqueid ever created
	names map[string]bool              // pbx/name ever created
	calls map[string]bool              // pbx/linkedid with a channel created
}

func newLive() *live {
	return &live{chans: map[string]map[string]string{}, seen: map[string]bool{}, names: map[string]bool{}, calls: map[string]bool{}}
}

func (l *live) apply(e *pb.Event) error {
	pbx := e.PbxId
	if l.chans[pbx] == nil {
		l.chans[pbx] = map[string]string{}
	}
	set := l.chans[pbx]
	need := func(chs ...*pb.Channel) error {
		for _, c := range chs {
			if c == nil {
				continue
			}
			if _, ok := set[c.Uniqueid]; !ok {
				return fmt.Errorf("%T names channel %s (%s), which is not live", e.Payload, c.Uniqueid, c.Name)
			}
		}
		return nil
	}
	switch p := e.Payload.(type) {
	case *pb.Event_ChannelCreated:
		c := p.ChannelCreated.Channel
		if l.seen[pbx+"/"+c.Uniqueid] || l.names[pbx+"/"+c.Name] {
			return fmt.Errorf("channel %s (%s) created twice", c.Uniqueid, c.Name)
		}
		l.seen[pbx+"/"+c.Uniqueid], l.names[pbx+"/"+c.Name] = true, true
		l.calls[pbx+"/"+c.Linkedid] = true
		set[c.Uniqueid] = c.Linkedid
	case *pb.Event_ChannelHungUp:
		if err := need(p.ChannelHungUp.Channel); err != nil {
			return err
		}
		delete(set, p.ChannelHungUp.Channel.Uniqueid)
	case *pb.Event_ChannelsSnapshot:
		clear(set)
		for _, c := range p.ChannelsSnapshot.Channels {
			set[c.Uniqueid] = c.Linkedid
			l.seen[pbx+"/"+c.Uniqueid], l.names[pbx+"/"+c.Name] = true, true
		}
	case *pb.Event_ChannelStateChanged:
		return need(p.ChannelStateChanged.Channel)
	case *pb.Event_CallerIdChanged:
		return need(p.CallerIdChanged.Channel)
	case *pb.Event_DialBegin:
		return need(p.DialBegin.Caller, p.DialBegin.Callee)
	case *pb.Event_DialEnd:
		return need(p.DialEnd.Caller, p.DialEnd.Callee)
	case *pb.Event_BridgeEnter:
		return need(p.BridgeEnter.Channel)
	case *pb.Event_BridgeLeave:
		return need(p.BridgeLeave.Channel)
	case *pb.Event_ChannelHold:
		return need(p.ChannelHold.Channel)
	case *pb.Event_Dtmf:
		return need(p.Dtmf.Channel)
	case *pb.Event_ChannelHangupRequest:
		return need(p.ChannelHangupRequest.Channel)
	case *pb.Event_Transfer:
		t := p.Transfer
		return need(t.Transferer, t.Transferee, t.SecondTransferer, t.Target)
	case *pb.Event_QueueCaller:
		return need(p.QueueCaller.Channel)
	case *pb.Event_QueueAgent:
		return need(p.QueueAgent.Caller, p.QueueAgent.Agent)
	}
	return nil
}

// Every channel a consumer hears of ends (by its Hangup, or by a snapshot
// after a lost one), channel ids are unique, and no event names a
// channel that is not live.
func TestEveryCallEnds(t *testing.T) {
	cases := []struct {
		name string
		cfg  Config
		n    int
	}{
		{"default", Config{Seed: 1}, 60_000},
		{"busy", Config{Seed: 2, PBXs: 2, Extensions: 8, Trunks: 1, ConcurrentCalls: 12}, 40_000},
		{"one pbx", Config{Seed: 3, PBXs: 1, Extensions: 40, Trunks: 4, ConcurrentCalls: 3}, 20_000},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := New(tc.cfg)
			l := newLive()
			evs := append(g.Take(tc.n), g.Drain()...)
			for i, e := range evs {
				if err := l.apply(e); err != nil {
					t.Fatalf("event %d (%s seq %d): %v", i, e.PbxId, e.SessionSeq, err)
				}
			}
			for pbx, set := range l.chans {
				if len(set) > 0 {
					t.Errorf("%s: %d channels never ended: %v", pbx, len(set), set)
				}
			}
			if len(l.calls) < tc.n/100 {
				t.Errorf("only %d calls in %d events", len(l.calls), len(evs))
			}
			t.Logf("%d events, %d calls, %d channels, until %s", len(evs), len(l.calls), len(l.seen), g.Now().Format(time.RFC3339))
		})
	}
}

// The stream holds everything a projector must handle.
func TestCoverage(t *testing.T) {
	g := New(Config{Seed: 11})
	evs := g.Take(100_000)
	has := func(f func(e *pb.Event) bool) bool { return slices.ContainsFunc(evs, f) }
	hungUp := func(cause int32) func(*pb.Event) bool {
		return func(e *pb.Event) bool { return e.GetChannelHungUp() != nil && e.GetChannelHungUp().Cause == cause }
	}
	dialEnd := func(st string) func(*pb.Event) bool {
		return func(e *pb.Event) bool { return e.GetDialEnd().GetDialStatus() == st }
	}
	conn := func(st pb.PbxConnection_State) func(*pb.Event) bool {
		return func(e *pb.Event) bool { return e.GetPbxConnection() != nil && e.GetPbxConnection().State == st }
	}
	contact := func(st string) func(*pb.Event) bool {
		return func(e *pb.Event) bool { return e.GetContactStatus().GetStatus() == st }
	}
	agent := func(a pb.QueueAgent_Action) func(*pb.Event) bool {
		return func(e *pb.Event) bool { return e.GetQueueAgent() != nil && e.GetQueueAgent().Action == a }
	}
	caller := func(a pb.QueueCaller_Action) func(*pb.Event) bool {
		return func(e *pb.Event) bool { return e.GetQueueCaller() != nil && e.GetQueueCaller().Action == a }
	}
	cases := []struct {
		name string
		f    func(*pb.Event) bool
	}{
		{"connected", conn(pb.PbxConnection_STATE_CONNECTED)},
		{"resyncing", conn(pb.PbxConnection_STATE_RESYNCING)},
		{"disconnected", conn(pb.PbxConnection_STATE_DISCONNECTED)},
		{"extension listed", func(e *pb.Event) bool {
			return e.GetEndpointState().GetKind() == pb.EndpointKind_ENDPOINT_KIND_EXTENSION
		}},
		{"trunk listed", func(e *pb.Event) bool { return e.GetEndpointState().GetKind() == pb.EndpointKind_ENDPOINT_KIND_TRUNK }},
		{"contact created", contact("Created")},
		{"contact reachable with rtt", func(e *pb.Event) bool {
			return e.GetContactStatus().GetStatus() == "Reachable" && e.GetContactStatus().GetRoundtripUsec() > 0
		}},
		{"contact removed", contact("Removed")},
		{"contact unreachable", contact("Unreachable")},
		{"contact listed with user agent", func(e *pb.Event) bool { return e.GetContactStatus().GetUserAgent() != "" }},
		{"device state", func(e *pb.Event) bool { return e.GetDeviceState().GetState() == "RINGING" }},
		{"peer status", func(e *pb.Event) bool { return e.GetPeerStatus() != nil }},
		{"trunk registered", func(e *pb.Event) bool { return e.GetTrunkRegistration().GetStatus() == "Registered" }},
		{"trunk rejected with cause", func(e *pb.Event) bool {
			return e.GetTrunkRegistration().GetStatus() == "Rejected" && e.GetTrunkRegistration().GetCause() != ""
		}},
		{"channel created", func(e *pb.Event) bool { return e.GetChannelCreated() != nil }},
		{"trunk channel", func(e *pb.Event) bool {
			return strings.HasPrefix(e.GetChannelCreated().GetChannel().GetName(), "PJSIP/provider-")
		}},
		{"channel state", func(e *pb.Event) bool { return e.GetChannelStateChanged().GetChannel().GetState() == 6 }},
		{"caller id", func(e *pb.Event) bool { return e.GetCallerIdChanged() != nil }},
		{"dial begin", func(e *pb.Event) bool { return e.GetDialBegin() != nil }},
		{"dial answer", dialEnd("ANSWER")},
		{"dial no answer", dialEnd("NOANSWER")},
		{"dial busy", dialEnd("BUSY")},
		{"dial cancel", dialEnd("CANCEL")},
		{"dial unavailable", dialEnd("CHANUNAVAIL")},
		{"dial congestion", dialEnd("CONGESTION")},
		{"bridge created", func(e *pb.Event) bool {
			return e.GetBridgeLifecycle().GetAction() == pb.BridgeLifecycle_ACTION_CREATED
		}},
		{"bridge destroyed", func(e *pb.Event) bool {
			return e.GetBridgeLifecycle().GetAction() == pb.BridgeLifecycle_ACTION_DESTROYED
		}},
		{"bridge enter", func(e *pb.Event) bool { return e.GetBridgeEnter() != nil }},
		{"bridge leave", func(e *pb.Event) bool { return e.GetBridgeLeave() != nil }},
		{"hold", func(e *pb.Event) bool { return e.GetChannelHold().GetHeld() }},
		{"unhold", func(e *pb.Event) bool { return e.GetChannelHold() != nil && !e.GetChannelHold().Held }},
		{"dtmf", func(e *pb.Event) bool { return e.GetDtmf() != nil }},
		{"blind transfer", func(e *pb.Event) bool { return e.GetTransfer().GetKind() == pb.Transfer_KIND_BLIND }},
		{"attended transfer", func(e *pb.Event) bool { return e.GetTransfer().GetKind() == pb.Transfer_KIND_ATTENDED }},
		{"hard hangup request", func(e *pb.Event) bool {
			return e.GetChannelHangupRequest() != nil && !e.GetChannelHangupRequest().Soft
		}},
		{"soft hangup request", func(e *pb.Event) bool { return e.GetChannelHangupRequest().GetSoft() }},
		{"hangup 0", hungUp(0)},
		{"hangup 16", hungUp(16)},
		{"hangup 17", hungUp(17)},
		{"hangup 19", hungUp(19)},
		{"hangup 20", hungUp(20)},
		{"hangup 21", hungUp(21)},
		{"hangup 26", hungUp(26)},
		{"queue join", caller(pb.QueueCaller_ACTION_JOIN)},
		{"queue leave", caller(pb.QueueCaller_ACTION_LEAVE)},
		{"queue abandon", caller(pb.QueueCaller_ACTION_ABANDON)},
		{"agent called", agent(pb.QueueAgent_ACTION_CALLED)},
		{"agent connect", agent(pb.QueueAgent_ACTION_CONNECT)},
		{"agent complete", agent(pb.QueueAgent_ACTION_COMPLETE)},
		{"agent ring no answer", agent(pb.QueueAgent_ACTION_RING_NO_ANSWER)},
		{"member status", func(e *pb.Event) bool { return e.GetQueueMember().GetStatus() == 2 }},
		{"member paused with reason", func(e *pb.Event) bool {
			return e.GetQueueMember().GetPaused() && e.GetQueueMember().GetPausedReason() != ""
		}},
		{"queue summary", func(e *pb.Event) bool { return e.GetQueueSummary().GetCompleted() > 0 }},
		{"queues snapshot", func(e *pb.Event) bool { return len(e.GetQueuesSnapshot().GetMembers()) > 0 }},
		{"channels snapshot with channels", func(e *pb.Event) bool { return len(e.GetChannelsSnapshot().GetChannels()) > 0 }},
		{"reconciliation with drift", func(e *pb.Event) bool { return e.GetReconciliation().GetChannelsDrift() > 0 }},
	}
	for _, tc := range cases {
		if !has(tc.f) {
			t.Errorf("no %s in 100,000 events", tc.name)
		}
	}
}

// Publish stores every event once, in order, on its subject with the
// collector's headers; publishing again stores nothing new.
func TestPublish(t *testing.T) {
	ns := testenv.NATS(t)
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := bus.EnsureEventStream(ctx, js, "acme", slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	evs := New(Config{Seed: 5}).Take(5000)
	for range 2 {
		if err := Publish(ctx, js, evs); err != nil {
			t.Fatal(err)
		}
	}
	st, err := js.Stream(ctx, bus.EventStream("acme"))
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != uint64(len(evs)) {
		t.Fatalf("stream holds %d messages, want %d", info.State.Msgs, len(evs))
	}
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	it, err := cons.Messages()
	if err != nil {
		t.Fatal(err)
	}
	defer it.Stop()
	for i, want := range evs {
		m, err := it.Next()
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		subj, _ := bus.EventSubject(want)
		got := &pb.Event{}
		if err := proto.Unmarshal(m.Data(), got); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		switch {
		case m.Subject() != subj:
			t.Fatalf("message %d on %s, want %s", i, m.Subject(), subj)
		case m.Headers().Get(jetstream.MsgIDHeader) != want.Id:
			t.Fatalf("message %d: Nats-Msg-Id %q, want %q", i, m.Headers().Get(jetstream.MsgIDHeader), want.Id)
		case !strings.HasPrefix(m.Headers().Get("Content-Type"), "application/protobuf"):
			t.Fatalf("message %d: Content-Type %q", i, m.Headers().Get("Content-Type"))
		case !proto.Equal(got, want):
			t.Fatalf("message %d: %v, want %v", i, got, want)
		}
	}
}
