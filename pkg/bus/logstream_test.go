package bus

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

func TestEnsureLogStream(t *testing.T) {
	js := testJetStream(t)
	ctx := context.Background()
	log := slog.New(slog.DiscardHandler)

	// the single stream of earlier versions, holding a log line
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: StreamLogs, Subjects: []string{LogsFilter}}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "pbx.acme.pbx1.log.notice", []byte("old")); err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name   string
		tenant string
		lim    LogLimits
	}{
		{"first tenant retires the old stream", "acme", LogLimits{MaxBytes: 64 << 20, MaxAge: time.Hour}},
		{"second tenant", "beta", DefaultLogLimits},
		{"limits changed", "acme", LogLimits{MaxBytes: 32 << 20, MaxAge: 30 * time.Minute}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := EnsureLogStream(ctx, js, tc.tenant, tc.lim, log); err != nil {
				t.Fatal(err)
			}
			st, err := js.Stream(ctx, LogStream(tc.tenant))
			if err != nil {
				t.Fatal(err)
			}
			c := st.CachedInfo().Config
			if c.MaxBytes != tc.lim.MaxBytes || c.MaxAge != tc.lim.MaxAge || c.Discard != jetstream.DiscardOld {
				t.Errorf("limits %d bytes %v age, discard %v; want %+v", c.MaxBytes, c.MaxAge, c.Discard, tc.lim)
			}
		})
	}

	// each tenant's lines and counts land in its own stream
	for _, subj := range []string{"pbx.acme.pbx1.log.notice", LogStatsSubject("acme", "pbx1"), "pbx.beta.pbx9.log.error"} {
		ack, err := js.Publish(ctx, subj, []byte("new"))
		if err != nil {
			t.Fatalf("%s: %v", subj, err)
		}
		want := LogStream("acme")
		if subj == "pbx.beta.pbx9.log.error" {
			want = LogStream("beta")
		}
		if ack.Stream != want {
			t.Errorf("%s stored in %s, want %s", subj, ack.Stream, want)
		}
	}
	// the retired stream keeps what it had
	old, err := js.Stream(ctx, StreamLogs)
	if err != nil {
		t.Fatal(err)
	}
	info, err := old.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 1 || info.Config.Subjects[0] != "pbxpulse.retired."+StreamLogs {
		t.Errorf("retired stream: %d msgs, subjects %v", info.State.Msgs, info.Config.Subjects)
	}

	if err := EnsureLogStream(ctx, js, "acme", LogLimits{}, log); err == nil {
		t.Error("zero limits accepted")
	}
}
