package load

import (
	"testing"

	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/proto"

	pb "github.com/pbxpulse/pbxpulse/pkg/pbxpulsev1"
	"github.com/pbxpulse/pbxpulse/pkg/projection"
	"github.com/pbxpulse/pbxpulse/pkg/store"
	"github.com/pbxpulse/pbxpulse/test/eventgen"
)

// BenchmarkProjectionCPU is the projector's own work per event, in one
// process and without I/O: decode the stored event, apply it, and per batch
// of 2,500 take the changed rows and encode the commit's statements and
// delta. It isolates the CPU the throughput benchmark's projector spends
// (the rest is NATS delivery and Postgres):
//
//	cd test && go test -run '^$' -bench ProjectionCPU -benchmem ./load/
func BenchmarkProjectionCPU(b *testing.B) {
	events := eventgen.New(eventgen.Config{Tenant: "bench", PBXs: 4, Extensions: 500, ConcurrentCalls: 100, Seed: 7}).Take(100000)
	raw := make([][]byte, len(events))
	for i, ev := range events {
		var err error
		if raw[i], err = proto.Marshal(ev); err != nil {
			b.Fatal(err)
		}
	}
	const batch = 2500
	b.ResetTimer()
	for range b.N {
		st := &projection.Stream{Tenant: "bench", Views: projection.New("bench", nil, nil), Seen: projection.NewSeen(projection.DefaultDedupeWindow)}
		version := uint64(0)
		for i := 0; i < len(raw); i += batch {
			for j := i; j < min(i+batch, len(raw)); j++ {
				ev := &pb.Event{}
				if err := proto.Unmarshal(raw[j], ev); err != nil {
					b.Fatal(err)
				}
				st.ApplyDecoded(projection.Decoded{Seq: uint64(j + 1), Event: ev})
			}
			version++
			d := &pb.Delta{Tenant: "bench", Version: version, Changes: st.Views.TakeChangesShared()}
			if _, err := store.QueueDelta(&pgx.Batch{}, d, store.Position{Gen: 1, StreamSeq: st.Seq}); err != nil {
				b.Fatal(err)
			}
			st.Seen.Take()
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(raw)), "ns/event")
}
