package projector

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/pbxpulse/pbxpulse/pkg/bus"
	pb "github.com/pbxpulse/pbxpulse/pkg/pbxpulsev1"
	"github.com/pbxpulse/pbxpulse/pkg/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func event(tenant string, i int, payload func(*pb.Event)) *pb.Event {
	e := &pb.Event{Id: uuid.NewString(), Tenant: tenant, PbxId: "pbx1", Source: pb.Source_SOURCE_AMI,
		PbxTime: timestamppb.New(time.Unix(1795288171, 0).Add(time.Duration(i) * time.Millisecond))}
	payload(e)
	return e
}

func createCall(tenant string, i int) *pb.Event {
	return event(tenant, i, func(e *pb.Event) {
		id := fmt.Sprintf("1795288171.%d", i)
		e.Payload = &pb.Event_ChannelCreated{ChannelCreated: &pb.ChannelCreated{Channel: &pb.Channel{
			Name: fmt.Sprintf("PJSIP/1001-%08x", i), Uniqueid: id, Linkedid: id, State: 4, CallerNum: "1001", Exten: "600"}}}
	})
}

// TestCommitsPositionAndAnnouncesDeltas runs the projector against real
// NATS and Postgres: rows and position land together, deltas are announced
// with consecutive versions, a restart resumes without applying anything
// twice, a re-published event (same id) is stored once, and events of
// another tenant are not applied.
func TestCommitsPositionAndAnnouncesDeltas(t *testing.T) {
	ns := testenv.NATS(t)
	dsn := testenv.Postgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	nc, js := testenv.JetStream(t, ns.ClientURL())
	for _, tenant := range []string{"acme", "other"} {
		if err := bus.EnsureEventStream(ctx, js, tenant, slog.New(slog.DiscardHandler)); err != nil {
			t.Fatal(err)
		}
	}
	pub := bus.NewPublisher(js)
	deltas, _ := nc.SubscribeSync(bus.DeltaSubject("acme"))

	cfg := Config{NATSURL: ns.ClientURL(), DatabaseURL: dsn, Tenant: "acme", BatchSize: 50, BatchDelay: 2 * time.Millisecond, DeltaRetention: 100}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	start := func() (stop func()) {
		rctx, rcancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { _ = Run(rctx, cfg, log); close(done) }()
		return func() { rcancel(); <-done }
	}
	stop := start()
	first := createCall("acme", 0)
	for i := 0; i < 100; i++ {
		e := createCall("acme", i)
		if i == 0 {
			e = first
		}
		if err := pub.Publish(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	if err := pub.Publish(ctx, createCall("other", 500)); err != nil {
		t.Fatal(err)
	}
	waitCalls(t, dsn, 100)
	stop()

	// Restart, re-publish an old event (deduplicated by its id) and add more.
	stop = start()
	defer stop()
	if err := pub.Publish(ctx, first); err != nil {
		t.Fatal(err)
	}
	for i := 100; i < 120; i++ {
		if err := pub.Publish(ctx, createCall("acme", i)); err != nil {
			t.Fatal(err)
		}
	}
	waitCalls(t, dsn, 120)

	var last uint64
	for {
		m, err := deltas.NextMsg(500 * time.Millisecond)
		if err != nil {
			break
		}
		d := &pb.Delta{}
		if err := proto.Unmarshal(m.Data, d); err != nil {
			t.Fatal(err)
		}
		if d.Version != last+1 {
			t.Fatalf("delta version %d after %d", d.Version, last)
		}
		last = d.Version
	}
	if last == 0 {
		t.Fatal("no delta announced")
	}
	conn, _ := pgx.Connect(ctx, dsn)
	defer conn.Close(ctx)
	var version, stored int64
	if err := conn.QueryRow(ctx, `SELECT version FROM projector_position WHERE tenant='acme'`).Scan(&version); err != nil {
		t.Fatal(err)
	}
	_ = conn.QueryRow(ctx, `SELECT count(*) FROM deltas WHERE tenant='acme'`).Scan(&stored)
	if uint64(version) != last || stored != version {
		t.Fatalf("position version %d, last announced %d, stored deltas %d", version, last, stored)
	}
	var others int64
	_ = conn.QueryRow(ctx, `SELECT count(*) FROM calls WHERE tenant<>'acme'`).Scan(&others)
	if others != 0 {
		t.Fatalf("%d calls of another tenant", others)
	}
}

func waitCalls(t *testing.T, dsn string, n int) {
	t.Helper()
	testenv.Eventually(t, 20*time.Second, func() error {
		conn, err := pgx.Connect(context.Background(), dsn)
		if err != nil {
			return err
		}
		defer conn.Close(context.Background())
		var got int
		if err := conn.QueryRow(context.Background(), `SELECT count(*) FROM calls WHERE tenant='acme'`).Scan(&got); err != nil {
			return err
		}
		if got != n {
			return fmt.Errorf("%d calls, want %d", got, n)
		}
		return nil
	})
}
