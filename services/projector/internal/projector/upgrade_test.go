package projector

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pbxpulse/pbxpulse/pkg/bus"
	pb "github.com/pbxpulse/pbxpulse/pkg/pbxpulsev1"
	"github.com/pbxpulse/pbxpulse/pkg/projection"
	"github.com/pbxpulse/pbxpulse/pkg/testenv"
)

// TestMovesToTenantStream upgrades a projection that read the single event
// stream of earlier versions (PBX_EVENTS): the projector retires that
// stream, goes on from the start of the tenant's own stream without
// applying an old event again or missing a new one, and a rebuild, which
// would miss the old events, refuses until the old stream is gone.
func TestMovesToTenantStream(t *testing.T) {
	ns := testenv.NATS(t)
	dsn := testenv.Postgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	_, js := testenv.JetStream(t, ns.ClientURL())
	pub := bus.NewPublisher(js)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg := Config{NATSURL: ns.ClientURL(), DatabaseURL: dsn, Tenant: "acme", BatchSize: 50, BatchDelay: 2 * time.Millisecond,
		DeltaRetention: 100, DedupeWindow: 1000, TimeZone: "UTC"}
	run := func() (stop func()) {
		rctx, rcancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { _ = Run(rctx, cfg, log); close(done) }()
		return func() { rcancel(); <-done }
	}

	// An earlier version's state: 10 calls projected from PBX_EVENTS, the
	// position counting in it (as migration 00003 marks such positions).
	// This version projects them from the tenant's stream, then the
	// position is pointed at PBX_EVENTS, which gets the same 10 events.
	var evs []*pb.Event
	for i := range 10 {
		evs = append(evs, createCall("acme", i))
	}
	publish := func(evs []*pb.Event) {
		t.Helper()
		for _, e := range evs {
			if err := pub.Publish(ctx, e); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := bus.EnsureEventStream(ctx, js, "acme", log); err != nil {
		t.Fatal(err)
	}
	publish(evs)
	stop := run()
	waitCalls(t, dsn, 10)
	stop()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `UPDATE projector_position SET stream=$1 WHERE tenant='acme'`, bus.StreamEvents); err != nil {
		t.Fatal(err)
	}
	if err := js.DeleteStream(ctx, bus.EventStream("acme")); err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: bus.StreamEvents, Subjects: []string{bus.EventsFilter}}); err != nil {
		t.Fatal(err)
	}
	publish(evs)

	// The upgrade: the projector starts, new events follow.
	stop = run()
	defer stop()
	testenv.Eventually(t, 20*time.Second, func() error {
		_, err := js.Stream(ctx, bus.EventStream("acme"))
		return err
	})
	for i := 10; i < 15; i++ {
		publish([]*pb.Event{createCall("acme", i)})
	}
	waitCalls(t, dsn, 15)
	var stream string
	var seq int64
	if err := conn.QueryRow(ctx, `SELECT stream, stream_seq FROM projector_position WHERE tenant='acme'`).Scan(&stream, &seq); err != nil {
		t.Fatal(err)
	}
	if stream != bus.EventStream("acme") || seq != 5 {
		t.Errorf("position in %s at %d, want %s at 5", stream, seq, bus.EventStream("acme"))
	}
	old, err := js.Stream(ctx, bus.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	if s := old.CachedInfo(); s.State.Msgs != 10 || s.Config.Subjects[0] == bus.EventsFilter {
		t.Errorf("old stream: %d messages on %v, want 10 retired", s.State.Msgs, s.Config.Subjects)
	}

	if err := Rebuild(ctx, cfg, log, time.Time{}); !errors.Is(err, projection.ErrLegacyEvents) {
		t.Fatalf("rebuild with events in the retired stream: %v", err)
	}
	if err := js.DeleteStream(ctx, bus.StreamEvents); err != nil {
		t.Fatal(err)
	}
	if err := Rebuild(ctx, cfg, log, time.Time{}); err != nil {
		t.Fatalf("rebuild once the old stream is gone: %v", err)
	}
	waitCalls(t, dsn, 5) // what the tenant's stream holds
}
