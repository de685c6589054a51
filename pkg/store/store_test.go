package store

import (
	"testing"

	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/pbxpulse/pbxpulse/pkg/pbxpulsev1"
)

// The delta QueueDelta stores is assembled from the rows it encoded for
// their tables; it must decode to the very delta the projector built.
func TestQueueDeltaEncodesTheDelta(t *testing.T) {
	at := timestamppb.New(timestamppb.Now().AsTime())
	d := &pb.Delta{Tenant: "acme", Version: 42, CommittedAt: at, Changes: []*pb.Change{
		{Row: &pb.Change_Pbx{Pbx: &pb.PbxView{PbxId: "pbx1", State: "connected"}}},
		{Row: &pb.Change_Endpoint{Endpoint: &pb.EndpointView{PbxId: "pbx1", Name: "1001", Status: "online", Calls: []string{"1.0"}}}},
		{Row: &pb.Change_Registration{Registration: &pb.TrunkRegistrationView{PbxId: "pbx1", Key: "sip:x", Status: "Registered"}}},
		{Row: &pb.Change_Queue{Queue: &pb.QueueView{PbxId: "pbx1", Queue: "support", AnsweredToday: 3}}},
		{Row: &pb.Change_CallRemoved{CallRemoved: &pb.CallKey{PbxId: "pbx1", Linkedid: "1.0"}}},
		{Row: &pb.Change_Call{Call: &pb.CallView{PbxId: "pbx1", Linkedid: "1.1", State: "up", StartedAt: at}}},
		{Row: &pb.Change_History{History: &pb.CallRecord{PbxId: "pbx1", Linkedid: "1.0", Disposition: "answered", Parties: []string{"1001", `a"b\c`}}}},
		{Row: &pb.Change_TrunkHealth{TrunkHealth: &pb.TrunkHealthSample{PbxId: "pbx1", Trunk: "provider", At: at, Kind: "roundtrip", RoundtripUsec: 1500}}},
	}}
	b := &pgx.Batch{}
	body, err := QueueDelta(b, d, Position{Gen: 1, StreamSeq: 9})
	if err != nil {
		t.Fatal(err)
	}
	got := &pb.Delta{}
	if err := proto.Unmarshal(body, got); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(got, d) {
		t.Fatalf("stored delta\n%v\nwant\n%v", got, d)
	}
	// position, 7 tables (pbx, endpoints, calls removed, calls, registrations, queues, history, health) and the delta
	if b.Len() != 10 {
		t.Fatalf("%d statements, want one per table plus position and delta (10)", b.Len())
	}
}

func TestPgTextArray(t *testing.T) {
	cases := map[string][]string{`{}`: nil, `{"1001"}`: {"1001"}, `{"a\"b","c\\d",""}`: {`a"b`, `c\d`, ""}}
	for want, in := range cases {
		if got := pgTextArray(in); got != want {
			t.Errorf("pgTextArray(%q) = %s, want %s", in, got, want)
		}
	}
}
