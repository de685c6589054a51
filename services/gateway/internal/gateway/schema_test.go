package gateway

import (
	"bytes"
	"encoding/json"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/pbxpulse/pbxpulse/pkg/pbxpulsev1"
)

const schemaFile = "../../../../docs/websocket.schema.json"

// wsSchemas compiles docs/websocket.schema.json and returns its client and
// server message schemas.
func wsSchemas(t *testing.T) (client, server *jsonschema.Schema) {
	t.Helper()
	f, err := os.Open(schemaFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	if err := c.AddResource("urn:pbxpulse:websocket:v1", doc); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Compile("urn:pbxpulse:websocket:v1"); err != nil {
		t.Fatalf("schema does not compile: %v", err)
	}
	client, err = c.Compile("urn:pbxpulse:websocket:v1#/$defs/clientMessage")
	if err != nil {
		t.Fatal(err)
	}
	server, err = c.Compile("urn:pbxpulse:websocket:v1#/$defs/serverMessage")
	if err != nil {
		t.Fatal(err)
	}
	return client, server
}

func validate(s *jsonschema.Schema, msg []byte) error {
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(msg))
	if err != nil {
		return err
	}
	return s.Validate(v)
}

// The schema's view and log rows have exactly the fields of the proto
// messages they stand for: a field added to the proto fails here until the
// schema has it.
func TestSchemaCoversProto(t *testing.T) {
	var doc struct {
		Defs map[string]struct {
			Properties map[string]json.RawMessage `json:"properties"`
		} `json:"$defs"`
	}
	b, err := os.ReadFile(schemaFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	msgs := []proto.Message{&pb.Snapshot{}, &pb.Delta{}, &pb.Change{}, &pb.PbxView{}, &pb.EndpointView{}, &pb.ContactView{}, &pb.CallView{},
		&pb.Channel{}, &pb.TransferRecord{}, &pb.CallKey{}, &pb.TrunkRegistrationView{}, &pb.QueueView{}, &pb.QueueCallerView{},
		&pb.QueueMemberView{}, &pb.CallRecord{}, &pb.TrunkHealthSample{}, &pb.PbxRefs{}, &pb.LogLine{}}
	for _, m := range msgs {
		md := m.ProtoReflect().Descriptor()
		name := string(md.Name())
		var want []string
		if name == "LogLine" {
			name, want = "LogEntry", []string{"pbx_id", "stream_seq"}
		}
		for i := range md.Fields().Len() {
			want = append(want, string(md.Fields().Get(i).Name()))
		}
		var got []string
		for k := range doc.Defs[name].Properties {
			got = append(got, k)
		}
		sort.Strings(want)
		sort.Strings(got)
		if !slices.Equal(got, want) {
			t.Errorf("$defs/%s has %v, the proto %v", name, got, want)
		}
	}
}

// fill sets every field of m (one element per list), so that protojson
// writes them all and each meets the schema.
func fill(m protoreflect.Message) {
	fs := m.Descriptor().Fields()
	for i := range fs.Len() {
		f := fs.Get(i)
		if f.ContainingOneof() != nil {
			continue
		}
		switch {
		case f.IsList() && f.Kind() == protoreflect.MessageKind:
			l := m.Mutable(f).List()
			e := l.NewElement()
			fill(e.Message())
			l.Append(e)
		case f.IsList():
			m.Mutable(f).List().Append(sample(f))
		case f.Kind() == protoreflect.MessageKind && f.Message().FullName() == "google.protobuf.Timestamp":
			m.Set(f, protoreflect.ValueOfMessage(timestamppb.Now().ProtoReflect()))
		case f.Kind() == protoreflect.MessageKind:
			fill(m.Mutable(f).Message())
		default:
			m.Set(f, sample(f))
		}
	}
}

func sample(f protoreflect.FieldDescriptor) protoreflect.Value {
	switch f.Kind() {
	case protoreflect.StringKind:
		return protoreflect.ValueOfString("x_" + string(f.Name()))
	case protoreflect.BoolKind:
		return protoreflect.ValueOfBool(true)
	case protoreflect.Int32Kind:
		return protoreflect.ValueOfInt32(-7)
	case protoreflect.Uint32Kind:
		return protoreflect.ValueOfUint32(7)
	case protoreflect.Int64Kind:
		return protoreflect.ValueOfInt64(-7_000_000_000)
	case protoreflect.Uint64Kind:
		return protoreflect.ValueOfUint64(7_000_000_000)
	case protoreflect.DoubleKind:
		return protoreflect.ValueOfFloat64(97.5)
	case protoreflect.EnumKind:
		return protoreflect.ValueOfEnum(1)
	}
	panic("no sample of " + f.Kind().String())
}

func filled[M proto.Message](m M) M {
	fill(m.ProtoReflect())
	return m
}

// fullDelta changes a row of every kind, every field set; ids are valid
// PBX ids and keys differ per version.
func fullDelta(v uint64) *pb.Delta {
	key := "k" + string(rune('a'+v))
	pbx := filled(&pb.PbxView{})
	pbx.PbxId = "pbx1"
	ep := filled(&pb.EndpointView{})
	ep.PbxId, ep.Name = "pbx1", "ep"+key
	call := filled(&pb.CallView{})
	call.PbxId, call.Linkedid = "pbx1", "call"+key
	reg := filled(&pb.TrunkRegistrationView{})
	reg.PbxId, reg.Key = "pbx1", "reg"+key
	q := filled(&pb.QueueView{})
	q.PbxId, q.Queue = "pbx1", "q"+key
	h := filled(&pb.CallRecord{})
	h.PbxId, h.Linkedid, h.Disposition = "pbx1", "hist"+key, "answered"
	th := filled(&pb.TrunkHealthSample{})
	th.PbxId, th.Trunk, th.Kind = "pbx1", "trunk", "roundtrip"
	return &pb.Delta{Tenant: "acme", Version: v, CommittedAt: timestamppb.Now(), Changes: []*pb.Change{
		{Row: &pb.Change_Pbx{Pbx: pbx}}, {Row: &pb.Change_Endpoint{Endpoint: ep}}, {Row: &pb.Change_Call{Call: call}},
		{Row: &pb.Change_Registration{Registration: reg}}, {Row: &pb.Change_Queue{Queue: q}}, {Row: &pb.Change_History{History: h}},
		{Row: &pb.Change_TrunkHealth{TrunkHealth: th}}, {Row: &pb.Change_CallRemoved{CallRemoved: &pb.CallKey{PbxId: "pbx1", Linkedid: "gone"}}},
	}}
}

// TestSchemaMatchesMessages validates what a real gateway sends, every
// server message type with every field of the views and log lines, against
// docs/websocket.schema.json, and client messages both ways.
func TestSchemaMatchesMessages(t *testing.T) {
	clientSchema, serverSchema := wsSchemas(t)
	g := startGateway(t, nil)
	g.commitDelta(t, fullDelta(1), true)
	ll := filled(&pb.LogLine{})
	ll.File, ll.Level = "", ""
	publishLogs(t, g, "acme", "pbx1", "NOTICE", ll, line("second", "1001", "PJSIP/1001-00000001", "C-00000001"))

	ws := g.dial(t, tokAcme, "")
	var sent []string
	send := func(m string) {
		sent = append(sent, m)
		ws.send(m)
	}
	ws.nextOf("snapshot", "")
	g.commitDelta(t, fullDelta(2), true)
	ws.nextOf("delta", "")
	send(`{"type":"subscribeLogs","id":"l1","filter":{"pbx":"pbx1","level":["NOTICE"],"endpoint":"","text":""},"backlog":10}`)
	ws.nextOf("logsSubscribed", "l1")
	publishLogs(t, g, "acme", "pbx1", "NOTICE", line("live", "", "", ""))
	ws.nextOf("logs", "l1")
	send(`{"type":"unsubscribeLogs","id":"l1"}`)
	send(`{"type":"unsubscribeLogs","id":"l1"}`)
	ws.nextOf("error", "l1")
	send(`{"type":"subscribeLogs","id":"l2","filter":{"call":"1234.5"}}`)
	ws.nextOf("error", "l2")
	send(`{"type":"requestUpdate"}`)
	ws.nextOf("snapshot", "")
	send(`{"type":"ping"}`)
	ws.nextOf("pong", "")
	send(`{"type":"nonsense"}`)
	ws.nextOf("error", "")

	resumed := g.dial(t, tokAcme, "?since=1")
	resumed.nextOf("delta", "")
	g.commitDelta(t, &pb.Delta{Tenant: "acme", Version: 3, CommittedAt: timestamppb.Now(), Rebuilt: true}, true)
	resumed.nextOf("delta", "")
	ws.nextOf("delta", "")

	seen := map[string]int{}
	for _, raw := range append(ws.raw, resumed.raw...) {
		var m srvMsg
		_ = json.Unmarshal(raw, &m)
		seen[m.Type]++
		if err := validate(serverSchema, raw); err != nil {
			t.Errorf("%s message does not meet the schema: %v\n%s", m.Type, err, raw)
		}
	}
	for _, typ := range []string{"snapshot", "delta", "resumed", "logs", "logsSubscribed", "error", "pong"} {
		if seen[typ] == 0 {
			t.Errorf("no %s message checked", typ)
		}
	}
	// Client messages: those sent above, and what the gateway refuses.
	valid := append(sent, `{"type":"subscribeLogs","id":"a.b:c_d-1"}`, `{"type":"subscribeLogs","id":"x","filter":{"call":"C-0000001f"},"backlog":0}`)
	for _, m := range valid {
		if err := validate(clientSchema, []byte(m)); err != nil && !strings.Contains(m, "nonsense") {
			t.Errorf("%s: %v", m, err)
		}
	}
	for _, m := range []string{`{"type":"nonsense"}`, `{"no":"type"}`, `{"type":"subscribeLogs"}`, `{"type":"subscribeLogs","id":"<b>"}`,
		`{"type":"subscribeLogs","id":"a","backlog":5000}`, `{"type":"subscribeLogs","id":"a","filter":{"pbx":"*"}}`,
		`{"type":"subscribeLogs","id":"a","filter":{"level":"ERROR"}}`, `{"type":"unsubscribeLogs"}`, `[]`} {
		if err := validate(clientSchema, []byte(m)); err == nil {
			t.Errorf("%s meets the schema; the gateway refuses it", m)
		}
	}
}

// The examples in docs/websocket.md meet the schema too.
func TestSchemaMatchesDocExamples(t *testing.T) {
	clientSchema, serverSchema := wsSchemas(t)
	doc, err := os.ReadFile("../../../../docs/websocket.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := strings.Split(string(doc), "```json\n")[1:]
	if len(blocks) < 7 {
		t.Fatalf("%d examples found", len(blocks))
	}
	for _, b := range blocks {
		ex, _, _ := strings.Cut(b, "```")
		var m struct{ Type string }
		if err := json.Unmarshal([]byte(ex), &m); err != nil {
			t.Errorf("example is not JSON: %v\n%s", err, ex)
			continue
		}
		s := serverSchema
		if slices.Contains(clientTypes, m.Type) {
			s = clientSchema
		}
		if err := validate(s, []byte(ex)); err != nil {
			t.Errorf("example does not meet the schema: %v\n%s", err, ex)
		}
	}
}
