package collector

import (
	"sort"
	"strings"

	"google.golang.org/protobuf/proto"

	pb "github.com/pbxpulse/pbxpulse/pkg/pbxpulsev1"
)

// channelTracker follows the live channels of one connection so that the
// CoreShowChannels list, which Asterisk builds while events keep flowing,
// can be corrected for channels created or hung up while it was read.
type channelTracker struct {
	live    map[string]*pb.Channel
	created map[string]uint64 // uniqueid -> event seq of Newchannel
	hungup  map[string]uint64 // uniqueid -> event seq of Hangup
	updated map[string]uint64 // uniqueid -> event seq of the last change
}

func newChannelTracker() *channelTracker {
	return &channelTracker{
		live: map[string]*pb.Channel{}, created: map[string]uint64{}, hungup: map[string]uint64{}, updated: map[string]uint64{},
	}
}

func (t *channelTracker) observe(seq uint64, e *pb.Event) {
	if id := e.GetRefs().GetUniqueid(); id != "" {
		t.updated[strings.Clone(id)] = seq // a copy: the event's string pins its AMI frame
	}
	switch p := e.Payload.(type) {
	case *pb.Event_ChannelCreated:
		ch := p.ChannelCreated.Channel
		t.live[ch.Uniqueid] = proto.Clone(ch).(*pb.Channel)
		t.created[strings.Clone(ch.Uniqueid)] = seq
	case *pb.Event_ChannelStateChanged:
		t.update(p.ChannelStateChanged.Channel)
	case *pb.Event_CallerIdChanged:
		t.update(p.CallerIdChanged.Channel)
	case *pb.Event_BridgeEnter:
		t.update(p.BridgeEnter.Channel)
	case *pb.Event_BridgeLeave:
		if ch, ok := t.live[p.BridgeLeave.Channel.Uniqueid]; ok {
			ch.BridgeId = ""
		}
	case *pb.Event_ChannelRenamed:
		if ch, ok := t.live[p.ChannelRenamed.Channel.Uniqueid]; ok {
			ch.Name = p.ChannelRenamed.NewName
		}
	case *pb.Event_ChannelHungUp:
		id := p.ChannelHungUp.Channel.Uniqueid
		delete(t.live, id)
		t.hungup[strings.Clone(id)] = seq
	}
}

func (t *channelTracker) update(ch *pb.Channel) {
	cur, ok := t.live[ch.Uniqueid]
	if !ok {
		t.live[ch.Uniqueid] = proto.Clone(ch).(*pb.Channel)
		return
	}
	bridge := cur.BridgeId
	if ch.BridgeId != "" {
		bridge = ch.BridgeId
	}
	proto.Reset(cur)
	proto.Merge(cur, ch)
	cur.BridgeId = bridge
}

// reconcile returns the true channel set: the listed channels, minus those
// hung up after the list was requested (seq > sent), plus those created after
// it; the tracker then adopts that set.
func (t *channelTracker) reconcile(listed []*pb.Channel, sent uint64) []*pb.Channel {
	set := map[string]*pb.Channel{}
	for _, ch := range listed {
		if t.hungup[ch.Uniqueid] > sent {
			continue
		}
		set[ch.Uniqueid] = ch
	}
	for id, seq := range t.created {
		if seq > sent {
			if ch, ok := t.live[id]; ok {
				if _, listed := set[id]; !listed {
					set[id] = proto.Clone(ch).(*pb.Channel)
				}
			}
		}
	}
	t.live = set
	out := make([]*pb.Channel, 0, len(set))
	for _, ch := range set {
		out = append(out, ch)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Uniqueid < out[j].Uniqueid })
	return out
}

// drift counts the channels on which the tracker and a list requested at
// sent disagree (present or not, state), ignoring channels that events
// changed after the list was requested.
func (t *channelTracker) drift(listed []*pb.Channel, sent uint64) int {
	n := 0
	in := map[string]bool{}
	for _, ch := range listed {
		in[ch.Uniqueid] = true
		if t.updated[ch.Uniqueid] > sent {
			continue
		}
		if cur, ok := t.live[ch.Uniqueid]; !ok || cur.State != ch.State {
			n++
		}
	}
	for id := range t.live {
		if !in[id] && t.updated[id] <= sent {
			n++
		}
	}
	return n
}

// forgetBefore drops bookkeeping that no pending list can need any more.
func (t *channelTracker) forgetBefore(seq uint64) {
	for id, s := range t.created {
		if s <= seq {
			delete(t.created, id)
		}
	}
	for id, s := range t.hungup {
		if s <= seq {
			delete(t.hungup, id)
		}
	}
	for id, s := range t.updated {
		if _, live := t.live[id]; !live && s <= seq {
			delete(t.updated, id)
		}
	}
}
