package wsload

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/pbxpulse/pbxpulse/pkg/pbxpulsev1"
)

// CallsPerTenant is how many calls each tenant's changes cycle through.
const CallsPerTenant = 8

var jsonOpts = protojson.MarshalOptions{UseProtoNames: true}

// CallChange is the n-th change of a tenant's view: one of its
// CallsPerTenant calls, with two channels and caller names, as the
// projector writes it while a call rings, is answered or is put on hold.
// Its frame is about 1 KB of JSON, a typical delta of a busy PBX.
func CallChange(tenant string, n uint64) *pb.Change {
	call := n % CallsPerTenant
	linkedid := fmt.Sprintf("1772438400.%d", call)
	states := [...]string{"ringing", "up", "on_hold", "up"}
	started := time.Date(2026, 3, 2, 8, 0, int(call), 0, time.UTC)
	caller := fmt.Sprintf("10%02d", call)
	callee := fmt.Sprintf("20%02d", call)
	return &pb.Change{Row: &pb.Change_Call{Call: &pb.CallView{
		PbxId:      "pbx1",
		Linkedid:   linkedid,
		CallerNum:  caller,
		CallerName: "Agent " + caller + " (" + tenant + ")",
		CalleeNum:  "+4930" + callee + "55",
		CalleeName: "Müller & Söhne <Sales>",
		State:      states[n%uint64(len(states))],
		StartedAt:  timestamppb.New(started),
		AnsweredAt: timestamppb.New(started.Add(4 * time.Second)),
		Direction:  "outbound",
		Trunk:      "trunk-sipgate",
		BridgeId:   "a3c1e7f2-5b0d-4c4e-9f3a-1b2c3d4e5f60",
		Channels: []*pb.Channel{
			{Name: "PJSIP/" + caller + "-0000002a", Uniqueid: linkedid, Linkedid: linkedid, State: 6, StateDesc: "Up",
				CallerNum: caller, CallerName: "Agent " + caller, ConnectedNum: "+4930" + callee + "55", Context: "from-internal", Exten: "+4930" + callee + "55"},
			{Name: "PJSIP/trunk-sipgate-0000002b", Uniqueid: fmt.Sprintf("1772438400.%d", call+100), Linkedid: linkedid, State: 6, StateDesc: "Up",
				CallerNum: "+4930" + callee + "55", ConnectedNum: caller, ConnectedName: "Agent " + caller, Context: "from-trunk", Application: "Dial"},
		},
		DialStatuses: []string{"ANSWER"},
	}}}
}

// DeltaFrame encodes a delta as the gateway sends it: the envelope
// {"type":"delta","data":<Delta as protojson>}.
func DeltaFrame(d *pb.Delta) ([]byte, error) {
	body, err := jsonOpts.Marshal(d)
	if err != nil {
		return nil, fmt.Errorf("encode delta: %w", err)
	}
	return Envelope("delta", body), nil
}

// Envelope wraps a message body the way the gateway does.
func Envelope(typ string, body []byte) []byte {
	out := make([]byte, 0, len(body)+32)
	out = append(out, `{"type":"`...)
	out = append(out, typ...)
	out = append(out, `","data":`...)
	out = append(out, body...)
	return append(out, '}')
}

// Frame is what a client needs of a server message.
type Frame struct {
	Type        string // "snapshot", "delta", or another type
	Tenant      string
	Version     uint64
	CommittedAt time.Time // deltas only
}

var (
	errNoType    = errors.New("frame has no type")
	errNoVersion = errors.New("frame has no version")
)

// ParseFrame reads the type, version and commit time of a server message
// without decoding it all: 10,000 clients parse 200,000 messages a second
// in the process that measures them, so a full JSON decode would distort
// the figures. It relies on what protojson does (its output is not
// promised stable, which TestParseFrame would catch): fields in declaration
// order, so a Snapshot or Delta opens with its tenant (a plain identifier)
// and version, and the Delta's committed_at is the last "committed_at" key
// (no view has one). protojson may put a space after a colon; both are read.
func ParseFrame(b []byte) (Frame, error) {
	f, tenant, err := parseFrame(b)
	f.Tenant = string(tenant)
	return f, err
}

// parseFrame is ParseFrame leaving the tenant in b, so that a client checks
// it without allocating.
func parseFrame(b []byte) (f Frame, tenant []byte, err error) {
	typ, rest, ok := stringAfter(b, `"type"`)
	if !ok {
		return f, nil, errNoType
	}
	switch string(typ) { // no allocation for the two that matter
	case "delta":
		f.Type = "delta"
	case "snapshot":
		f.Type = "snapshot"
	default:
		f.Type = string(typ)
		return f, nil, nil
	}
	i := bytes.Index(rest, []byte(`"data"`))
	if i < 0 {
		return f, nil, errNoVersion
	}
	rest = bytes.TrimLeft(rest[i+len(`"data"`):], ": {")
	if bytes.HasPrefix(rest, []byte(`"tenant"`)) {
		if t, r, ok := stringAfter(rest, `"tenant"`); ok {
			tenant, rest = t, r
		}
	}
	v, _, ok := stringAfter(rest, `"version"`)
	if !ok {
		if f.Type == "snapshot" {
			return f, tenant, nil // version 0: protojson omits it
		}
		return f, tenant, errNoVersion
	}
	n, err := strconv.ParseUint(string(v), 10, 64)
	if err != nil {
		return f, tenant, fmt.Errorf("version %q: %w", v, err)
	}
	f.Version = n
	if f.Type != "delta" {
		return f, tenant, nil
	}
	j := lastKey(b, `"committed_at"`)
	if j < 0 {
		return f, tenant, nil
	}
	at, _, ok := stringAfter(b[j:], `"committed_at"`)
	if !ok {
		return f, tenant, fmt.Errorf("committed_at is not a string")
	}
	// UnmarshalText reads RFC 3339 from bytes, without the copy to a
	// string time.Parse needs; what it refuses (it is stricter) goes to
	// time.Parse, so the result is time.Parse's.
	if f.CommittedAt.UnmarshalText(at) != nil {
		if f.CommittedAt, err = time.Parse(time.RFC3339Nano, string(at)); err != nil {
			return f, tenant, fmt.Errorf("committed_at: %w", err)
		}
	}
	return f, tenant, nil
}

// lastKey is bytes.LastIndex(b, key) for a key that opens with a quote:
// it tries the quotes from the end, a few for a delta's committed_at (a
// rolling hash over the bytes costs several times more).
func lastKey(b []byte, key string) int {
	for end := len(b); ; {
		i := bytes.LastIndexByte(b[:end], '"')
		if i < 0 {
			return -1
		}
		if bytes.HasPrefix(b[i:], []byte(key)) {
			return i
		}
		end = i
	}
}

// stringAfter finds key and returns the JSON string value after it (no
// escapes expected) and what follows it.
func stringAfter(b []byte, key string) (val, rest []byte, ok bool) {
	i := bytes.Index(b, []byte(key))
	if i < 0 {
		return nil, nil, false
	}
	b = bytes.TrimLeft(b[i+len(key):], " ")
	if len(b) == 0 || b[0] != ':' {
		return nil, nil, false
	}
	b = bytes.TrimLeft(b[1:], " ")
	if len(b) == 0 || b[0] != '"' {
		return nil, nil, false
	}
	end := bytes.IndexByte(b[1:], '"')
	if end < 0 {
		return nil, nil, false
	}
	return b[1 : 1+end], b[2+end:], true
}
