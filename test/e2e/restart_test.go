package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pbxpulse/pbxpulse/pkg/bus"
	"github.com/pbxpulse/pbxpulse/pkg/testenv"
)

var projectionTables = []string{"pbx_status", "endpoints", "calls", "trunk_registrations", "queues", "call_history", "trunk_health"}

// dump returns every projection row of a database as sorted JSON lines.
func dump(t *testing.T, dsn string) map[string][]string {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	out := map[string][]string{}
	for _, tbl := range projectionTables {
		rows, _ := conn.Query(ctx, "SELECT to_jsonb(x)::text FROM "+tbl+" x")
		lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatalf("dump %s: %v", tbl, err)
		}
		sort.Strings(lines)
		out[tbl] = lines
	}
	return out
}

func position(ctx context.Context, dsn string) uint64 {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return 0
	}
	defer conn.Close(ctx)
	var seq int64
	_ = conn.QueryRow(ctx, `SELECT stream_seq FROM projector_position WHERE tenant='acme'`).Scan(&seq)
	return uint64(seq)
}

func streamLastSeq(t *testing.T, url, tenant string) uint64 {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	st, err := js.Stream(context.Background(), bus.EventStream(tenant))
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.LastSeq
}

// TestProjectorKilledMidStream kills the projector with SIGKILL again and
// again while calls stream in, and restarts Postgres once; the views it ends
// with must equal, row for row, those of a projector that replays the same
// stream without interruption into an empty database.
func TestProjectorKilledMidStream(t *testing.T) {
	s := startStack(t, true)
	if err := s.StartService("collector"); err != nil {
		t.Fatal(err)
	}
	if err := s.StartService("projector"); err != nil {
		t.Fatal(err)
	}
	for _, ext := range []string{"1001", "1002", "1003", "1004", "1005"} {
		s.Sim.Register(ext)
	}

	// Traffic: answered, busy and app calls, with a few left up at the end.
	done := make(chan struct{})
	go func() {
		defer close(done)
		exts := []string{"1001", "1002", "1003", "1004", "1005"}
		for i := 0; i < 400; i++ {
			a, b := exts[i%5], exts[(i+1+i/5)%5]
			if a == b {
				b = exts[(i+2)%5]
			}
			switch {
			case i%7 == 0:
				c := s.Sim.CallApp(a, "600")
				c.Hangup()
			case i%5 == 0:
				s.Sim.Dial(a, b).Busy()
			default:
				c := s.Sim.Dial(a, b)
				c.Answer()
				if i < 398 {
					c.Hangup()
				}
			}
			if i == 200 {
				s.Sim.Unregister("1005")
			}
			time.Sleep(6 * time.Millisecond)
		}
	}()

	kills := 0
	restartedPG := false
	for running := true; running; {
		select {
		case <-done:
			running = false
		case <-time.After(time.Duration(150+rand.IntN(300)) * time.Millisecond):
			s.Kill("projector")
			kills++
			if kills == 3 {
				if c := testenv.Cluster(t); c != nil {
					if err := c.Restart(context.Background()); err != nil {
						t.Fatal(err)
					}
					restartedPG = true
				}
			}
			if err := s.StartService("projector"); err != nil {
				t.Fatal(err)
			}
		}
	}
	t.Logf("projector killed %d times; postgres restarted: %v", kills, restartedPG)
	if kills < 2 {
		t.Fatalf("the traffic ended before the projector could be killed twice (%d)", kills)
	}

	// Wait for the collector to publish everything and the projector to apply it.
	var last uint64
	testenv.Eventually(t, 60*time.Second, func() error {
		l := streamLastSeq(t, s.NATSURL(), s.Tenant())
		if l != last || l == 0 {
			last = l
			return fmt.Errorf("stream still growing: %d", l)
		}
		if p := position(context.Background(), s.DatabaseURL); p != l {
			return fmt.Errorf("projector at %d of %d", p, l)
		}
		return nil
	})

	clean := testenv.Postgres(t)
	if err := s.StartNamed("projector-clean", "projector", "DATABASE_URL="+clean); err != nil {
		t.Fatal(err)
	}
	// Both databases are read at the same stream position, the stream's
	// last, unchanged from before the reads to after them: the collector
	// may still publish a late event (a registration refresh, its outbox
	// after a stall) after the stream looked settled above.
	var got, want map[string][]string
	testenv.Eventually(t, 60*time.Second, func() error {
		at := func() error {
			l := streamLastSeq(t, s.NATSURL(), s.Tenant())
			if p := position(context.Background(), s.DatabaseURL); p != l {
				return fmt.Errorf("projector at %d of %d", p, l)
			}
			if p := position(context.Background(), clean); p != l {
				return fmt.Errorf("clean replay at %d of %d", p, l)
			}
			if last != l {
				last = l
				return fmt.Errorf("stream grew to %d", l)
			}
			return nil
		}
		if err := at(); err != nil {
			return err
		}
		got, want = dump(t, s.DatabaseURL), dump(t, clean)
		return at()
	})

	if len(want["endpoints"]) == 0 || len(want["calls"]) == 0 {
		t.Fatalf("replay produced no endpoints or calls: %d/%d", len(want["endpoints"]), len(want["calls"]))
	}
	for _, tbl := range projectionTables {
		if strings.Join(got[tbl], "\n") != strings.Join(want[tbl], "\n") {
			t.Errorf("table %s differs:\nkilled run (%d rows):\n%s\nclean replay (%d rows):\n%s", tbl,
				len(got[tbl]), strings.Join(got[tbl], "\n"), len(want[tbl]), strings.Join(want[tbl], "\n"))
		}
	}
	t.Logf("stream of %d events; %d endpoints, %d calls still up", last, len(want["endpoints"]), len(want["calls"]))
}
