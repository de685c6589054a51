package store

import (
	"context"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/pbxpulse/pbxpulse/pkg/pbxpulsev1"
	"github.com/pbxpulse/pbxpulse/pkg/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// A removed call deletes its own row and no other: the same Linkedid on
// another PBX, or another Linkedid on the same PBX, stays.
func TestCallRemovalDeletesExactlyItsKeys(t *testing.T) {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, testenv.Postgres(t))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if err := Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	commit := func(version uint64, changes ...*pb.Change) {
		t.Helper()
		b := &pgx.Batch{}
		QueueEnterTenant(b, "acme")
		if _, err := QueueDelta(b, &pb.Delta{Tenant: "acme", Version: version, Changes: changes, CommittedAt: timestamppb.Now()}, Position{Gen: 1, StreamSeq: version}); err != nil {
			t.Fatal(err)
		}
		if err := pgx.BeginTxFunc(ctx, pool, pgx.TxOptions{}, func(tx pgx.Tx) error { return tx.SendBatch(ctx, b).Close() }); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := pool.Exec(ctx, `INSERT INTO projector_position (tenant, gen, stream_seq, version) VALUES ('acme', 1, 0, 0)`); err != nil {
		t.Fatal(err)
	}
	call := func(pbx, id string) *pb.Change {
		return &pb.Change{Row: &pb.Change_Call{Call: &pb.CallView{PbxId: pbx, Linkedid: id, State: "up"}}}
	}
	gone := func(pbx, id string) *pb.Change {
		return &pb.Change{Row: &pb.Change_CallRemoved{CallRemoved: &pb.CallKey{PbxId: pbx, Linkedid: id}}}
	}
	commit(1, call("pbx1", "A"), call("pbx1", "B"), call("pbx2", "A"), call("pbx2", "B"), call("pbx2", "C"))
	commit(2, gone("pbx1", "A"), gone("pbx2", "B"), gone("pbx3", "A"))
	var got []string
	err = InTenant(ctx, pool, "acme", pgx.TxOptions{AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		snap, _, err := ReadSnapshot(ctx, tx, "acme")
		for _, c := range snap.GetCalls() {
			got = append(got, c.PbxId+"/"+c.Linkedid)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	if want := []string{"pbx1/B", "pbx2/A", "pbx2/C"}; !slices.Equal(got, want) {
		t.Fatalf("calls left %v, want %v", got, want)
	}
}
