package projection

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	pb "github.com/pbxpulse/pbxpulse/pkg/pbxpulsev1"
	"github.com/pbxpulse/pbxpulse/pkg/testenv"
)

// checkLikeProto fails unless DecodeEvent accepts data exactly when
// proto.Unmarshal does, into an equal message. Unknown fields are not
// compared: nothing reads them, and vtprotobuf's decoder of the
// well-known types (a Timestamp) drops them.
func checkLikeProto(t *testing.T, data []byte) (*pb.Event, error) {
	t.Helper()
	got, err := DecodeEvent(data)
	want := &pb.Event{}
	werr := proto.Unmarshal(data, want)
	switch {
	case (err == nil) != (werr == nil):
		t.Fatalf("DecodeEvent error %v, proto.Unmarshal error %v, for %x", err, werr, data)
	case err == nil && !cmp.Equal(got, want, protocmp.Transform(), protocmp.IgnoreUnknown()):
		t.Fatalf("DecodeEvent differs from proto.Unmarshal (-want +got):\n%s", cmp.Diff(want, got, protocmp.Transform(), protocmp.IgnoreUnknown()))
	}
	return got, err
}

func TestDecodeEvent(t *testing.T) {
	placeholder := func(name string) []byte {
		b, err := proto.Marshal(event("pbx1", 0, &pb.ChannelCreated{Channel: &pb.Channel{Name: "PJSIP/1001-00000001", CallerName: name}}))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	withBytes := func(old, new string) []byte {
		return bytes.Replace(placeholder(old), []byte(old), []byte(new), 1)
	}
	// A known string field (Event.tenant, 1) sent as a varint: proto-go
	// keeps it as an unknown field, vtprotobuf refuses it.
	wrongType := protowire.AppendVarint(protowire.AppendTag(placeholder("Ann"), 1, protowire.VarintType), 7)
	tests := []struct {
		name    string
		data    []byte
		wantErr bool
	}{
		{"caller name in UTF-8", placeholder("Zoë 日本"), false},
		{"caller name not UTF-8 (a nested string)", withBytes("XXXX", "\xff\xfe\xc3\x28"), true},
		{"tenant not UTF-8 (a top-level string)", bytes.Replace(placeholder("Ann"), []byte("acme"), []byte("ac\xffe"), 1), true},
		{"truncated", func() []byte { b := placeholder("Ann"); return b[:len(b)-2] }(), true},
		{"known field with another wire type", wrongType, false},
		{"unknown field", protowire.AppendBytes(protowire.AppendTag(placeholder("Ann"), 900, protowire.BytesType), []byte("\xff")), false},
		{"empty", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := checkLikeProto(t, tt.data)
			if (err != nil) != tt.wantErr {
				t.Fatalf("error %v, want error: %v", err, tt.wantErr)
			}
		})
	}
	// Every kind of event the views read.
	for _, e := range restartScenario() {
		b, err := proto.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := checkLikeProto(t, b); err != nil {
			t.Fatalf("%s: %v", describe(e), err)
		}
	}
}

// FuzzDecodeEvent: whatever the bytes, DecodeEvent and proto.Unmarshal
// agree. Seeds: every event of restartScenario.
func FuzzDecodeEvent(f *testing.F) {
	for _, e := range restartScenario() {
		b, err := proto.Marshal(e)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkLikeProto(t, data)
	})
}

// BenchmarkDecodeEvent compares DecodeEvent with proto.Unmarshal, and
// shows what its UTF-8 check costs, over restartScenario's events.
func BenchmarkDecodeEvent(b *testing.B) {
	var data [][]byte
	for _, e := range restartScenario() {
		d, err := proto.Marshal(e)
		if err != nil {
			b.Fatal(err)
		}
		data = append(data, d)
	}
	run := func(name string, f func([]byte) error) {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for i := range b.N {
				if err := f(data[i%len(data)]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	run("proto.Unmarshal", func(d []byte) error { return proto.Unmarshal(d, &pb.Event{}) })
	run("DecodeEvent", func(d []byte) error { _, err := DecodeEvent(d); return err })
	run("UTF-8 check", func(d []byte) error {
		if !eventStrings.valid(d, 0) {
			return errors.New("invalid")
		}
		return nil
	})
}

// TestViewEncodingMatchesProto: the store encodes views and changes with
// vtprotobuf's MarshalVT; its bytes must be proto.Marshal's deterministic
// ones, so that rows and deltas do not depend on which encoder wrote them.
func TestViewEncodingMatchesProto(t *testing.T) {
	v := New("acme", nil, nil)
	n := 0
	for _, e := range restartScenario() {
		v.Apply(e)
		for _, c := range v.TakeChanges() {
			want, err := proto.MarshalOptions{Deterministic: true}.Marshal(c)
			if err != nil {
				t.Fatal(err)
			}
			got, err := c.MarshalVT()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("MarshalVT of %v:\n%x\nproto.Marshal:\n%x", c, got, want)
			}
			n++
		}
	}
	if n < 100 {
		t.Fatalf("only %d changes compared", n)
	}
}

func TestStreamSeq(t *testing.T) {
	for _, tt := range []struct {
		reply string
		seq   uint64
		ok    bool
	}{
		{"$JS.ACK.PBX_EVENTS_acme.cons.1.42.7.1700000000000000000.3", 42, true},                            // v1
		{"$JS.ACK._.ABCDEF.PBX_EVENTS_acme.cons.1.42.7.1700000000000000000.3.xyz", 42, true},               // v2
		{"$JS.ACK.hub.ABCDEF.PBX_EVENTS_acme.cons.2.9000000000.7.1700000000000000000.0", 9000000000, true}, // v2 without the token
		{"$JS.ACK.PBX_EVENTS_acme.cons.1.42.7.1700000000000000000", 0, false},                              // 8 tokens
		{"$JS.ACK._.H.S.c.1.42.7.1700000000000000000", 0, false},                                           // 10 tokens
		{"$JS.ACK.S.c.1.x.7.1.3", 0, false},
		{"$JS.ACK.S.c.1.0.7.1.3", 0, false},
		{"_INBOX.abc", 0, false},
		{"", 0, false},
	} {
		seq, ok := streamSeq(tt.reply)
		if seq != tt.seq || ok != tt.ok {
			t.Errorf("streamSeq(%q) = %d, %v; want %d, %v", tt.reply, seq, ok, tt.seq, tt.ok)
		}
	}
}

// streamSeq agrees with jetstream.Msg.Metadata on what a real server sends.
func TestStreamSeqOfRealMessages(t *testing.T) {
	_, js := testenv.JetStream(t, testenv.NATS(t).ClientURL())
	ctx := context.Background()
	st, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "SEQ", Subjects: []string{"seq.>"}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if _, err := js.Publish(ctx, fmt.Sprintf("seq.%d", i), []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		m, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			t.Fatal(err)
		}
		md, err := m.Metadata()
		if err != nil {
			t.Fatal(err)
		}
		if seq, ok := streamSeq(m.Reply()); !ok || seq != md.Sequence.Stream {
			t.Fatalf("streamSeq(%q) = %d, %v; Metadata says %d", m.Reply(), seq, ok, md.Sequence.Stream)
		}
	}
}
