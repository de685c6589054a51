package bus

import (
	"context"
	"log/slog"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pbxpulse/pbxpulse/pkg/testenv"
)

func TestEnsureEventStream(t *testing.T) {
	js := testJetStream(t)
	ctx := context.Background()
	log := slog.New(slog.DiscardHandler)

	// the single stream of earlier versions, holding an event
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: StreamEvents, Subjects: []string{EventsFilter}}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "pbx.acme.pbx1.evt.call.channel_created", []byte("old")); err != nil {
		t.Fatal(err)
	}
	for _, tenant := range []string{"acme", "beta", "acme"} { // the first retires the old stream; again is a no-op
		if err := EnsureEventStream(ctx, js, tenant, log); err != nil {
			t.Fatalf("%s: %v", tenant, err)
		}
		st, err := js.Stream(ctx, EventStream(tenant))
		if err != nil {
			t.Fatal(err)
		}
		c := st.CachedInfo().Config
		if len(c.Subjects) != 1 || c.Subjects[0] != TenantEvents(tenant) || c.Duplicates != DedupWindow || c.Storage != jetstream.FileStorage {
			t.Errorf("%s: config %+v", tenant, c)
		}
	}
	// each tenant's events land in its own stream; other subjects in none
	cases := []struct{ subject, stream string }{
		{"pbx.acme.pbx1.evt.call.channel_created", EventStream("acme")},
		{"pbx.acme.pbx2.evt.endpoint.state", EventStream("acme")},
		{"pbx.beta.pbx1.evt.security.invalidpassword", EventStream("beta")},
	}
	for _, tc := range cases {
		ack, err := js.Publish(ctx, tc.subject, []byte("new"))
		if err != nil {
			t.Fatalf("%s: %v", tc.subject, err)
		}
		if ack.Stream != tc.stream {
			t.Errorf("%s stored in %s, want %s", tc.subject, ack.Stream, tc.stream)
		}
	}
	if _, err := js.Publish(ctx, "pbx.gamma.pbx1.evt.call.channel_created", []byte("x")); err == nil {
		t.Error("an event of a tenant without a stream was stored")
	}
	// the retired stream keeps what it had
	old, err := js.Stream(ctx, StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	info, err := old.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 1 || info.Config.Subjects[0] != "pbxpulse.retired."+StreamEvents {
		t.Errorf("retired stream: %d msgs, subjects %v", info.State.Msgs, info.Config.Subjects)
	}

	for tenant, want := range map[string]uint64{"acme": 1, "beta": 0} {
		if n, err := LegacyEvents(ctx, js, tenant); err != nil || n != want {
			t.Errorf("LegacyEvents(%s) = %d, %v; want %d", tenant, n, err, want)
		}
	}

	// a stream of the operator's on the same subjects is not touched
	if err := js.DeleteStream(ctx, EventStream("beta")); err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "MINE", Subjects: []string{"pbx.beta.>"}}); err != nil {
		t.Fatal(err)
	}
	if err := EnsureEventStream(ctx, js, "beta", log); err == nil {
		t.Error("created over an overlapping stream of the operator's")
	}
}

// testJetStream connects to a fresh embedded NATS server.
func testJetStream(t *testing.T) jetstream.JetStream {
	t.Helper()
	_, js := testenv.JetStream(t, testenv.NATS(t).ClientURL())
	return js
}
