package wsload

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/pbxpulse/pbxpulse/pkg/pbxpulsev1"
)

func TestParseFrame(t *testing.T) {
	at := time.Date(2026, 3, 2, 8, 0, 1, 123456789, time.UTC)
	delta, err := DeltaFrame(&pb.Delta{Tenant: "t007", Version: 42, Changes: []*pb.Change{CallChange("t007", 42)}, CommittedAt: timestamppb.New(at)})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		in      string
		want    Frame
		wantErr bool
	}{
		{name: "delta from protojson", in: string(delta), want: Frame{Type: "delta", Tenant: "t007", Version: 42, CommittedAt: at}},
		{name: "spaces after colons", in: `{"type": "delta","data": {"tenant": "a","version": "7","changes": [],"committed_at": "2026-03-02T08:00:01Z"}}`,
			want: Frame{Type: "delta", Tenant: "a", Version: 7, CommittedAt: at.Truncate(time.Second)}},
		{name: "snapshot", in: `{"type":"snapshot","data":{"tenant":"a","version":"9","calls":[{"linkedid":"1"}]}}`, want: Frame{Type: "snapshot", Tenant: "a", Version: 9}},
		{name: "empty snapshot has version 0", in: `{"type":"snapshot","data":{"tenant":"a"}}`, want: Frame{Type: "snapshot", Tenant: "a"}},
		{name: "other type", in: `{"type":"pong"}`, want: Frame{Type: "pong"}},
		{name: "no type", in: `{"data":{}}`, wantErr: true},
		{name: "delta without version", in: `{"type":"delta","data":{"tenant":"a"}}`, wantErr: true},
		{name: "bad version", in: `{"type":"delta","data":{"version":"x"}}`, wantErr: true},
		{name: "bad time", in: `{"type":"delta","data":{"version":"1","committed_at":"yesterday"}}`, wantErr: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := ParseFrame([]byte(c.in))
			if (err != nil) != c.wantErr {
				t.Fatalf("err = %v, want error %v", err, c.wantErr)
			}
			if !c.wantErr && (got.Type != c.want.Type || got.Tenant != c.want.Tenant || got.Version != c.want.Version || !got.CommittedAt.Equal(c.want.CommittedAt)) {
				t.Fatalf("got %+v, want %+v", got, c.want)
			}
		})
	}
}

func TestCallChangeSize(t *testing.T) {
	f, err := DeltaFrame(&pb.Delta{Tenant: "t099", Version: 123456, Changes: []*pb.Change{CallChange("t099", 123456)}, CommittedAt: timestamppb.Now()})
	if err != nil {
		t.Fatal(err)
	}
	// A realistic delta: a call row with its two channels, not a toy.
	if len(f) < 600 || len(f) > 1500 {
		t.Fatalf("delta frame is %d bytes, want a few hundred to a thousand", len(f))
	}
}

func TestPaceGivesEachGroupItsCount(t *testing.T) {
	cases := []struct {
		groups, rate int
		d            time.Duration
	}{
		{groups: 1, rate: 50, d: 100 * time.Millisecond},
		{groups: 13, rate: 100, d: 150 * time.Millisecond},
		{groups: 25, rate: 40, d: 120 * time.Millisecond}, // not a whole period
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%d groups at %d/s for %s", c.groups, c.rate, c.d), func(t *testing.T) {
			got := make([]uint64, c.groups)
			err := Pace(context.Background(), c.groups, c.rate, c.d, func(due []int, _ time.Time) error {
				for _, g := range due {
					got[g]++
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			for g, n := range got {
				if want := Published(g, c.rate, c.d); n != want {
					t.Errorf("group %d: %d deltas, Published says %d", g, n, want)
				}
			}
		})
	}
}

func TestBroadcastSwarmDeliversEverything(t *testing.T) {
	b := NewBroadcaster(BroadcastConfig{Groups: 3, Rate: 50})
	srv := httptest.NewServer(b.Handler())
	defer srv.Close()
	ctx := context.Background()
	s, err := Dial(ctx, SwarmConfig{Clients: 30, Groups: 3, SourceIPs: 3, Tenant: GroupName, Target: func(g int) (string, http.Header) {
		return fmt.Sprintf("ws%s/ws?group=%d", strings.TrimPrefix(srv.URL, "http"), g), nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	resp, err := http.Post(srv.URL+"/start?for=200ms", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	final := func(g int) uint64 { return Published(g, 50, 200*time.Millisecond) }
	waitFor(t, "publishing to end", func() bool { return !b.publishing.Load() })
	s.WaitCaughtUp(ctx, final, 10*time.Second)
	r := s.Result(final)
	if r.Expected != 30*10 || r.Delivered != r.Expected || r.Missing != 0 || r.Gaps != 0 || r.Dups != 0 || r.Dropped != 0 || r.Malformed != 0 || r.Foreign != 0 {
		t.Fatalf("result %+v, want 300 deltas delivered, nothing lost", r)
	}
	if n := s.Latency.Count(); n != r.Delivered {
		t.Fatalf("%d latencies for %d deltas", n, r.Delivered)
	}
}

// A server that skips a version, repeats one, sends another tenant's delta
// and then cuts the client off must be reported as such.
func TestSwarmCountsGapsDupsAndDrops(t *testing.T) {
	var wg sync.WaitGroup
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		wg.Add(1)
		defer wg.Done()
		conn, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer conn.CloseNow()
		send := func(s string) { _ = conn.Write(r.Context(), websocket.MessageText, []byte(s)) }
		send(`{"type":"snapshot","data":{"tenant":"t000","version":"10"}}`)
		// Wait for the swarm to have read the snapshot of every client.
		_, _, _ = conn.Read(r.Context())
		for _, v := range []int{11, 12, 14, 14, 13, 15} {
			send(fmt.Sprintf(`{"type":"delta","data":{"tenant":"t000","version":"%d","committed_at":"%s"}}`, v, time.Now().UTC().Format(time.RFC3339Nano)))
		}
		send(`{"type":"delta","data":{"tenant":"t001","version":"16","committed_at":"2026-03-02T08:00:01Z"}}`)
		send(`not json`)
		conn.Close(websocket.StatusTryAgainLater, "too slow")
	}))
	defer srv.Close()
	ctx := context.Background()
	s, err := Dial(ctx, SwarmConfig{Clients: 2, Groups: 1, Tenant: GroupName, Target: func(int) (string, http.Header) {
		return "ws" + strings.TrimPrefix(srv.URL, "http"), nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, c := range s.clients {
		if err := c.conn.Write(ctx, websocket.MessageText, []byte(`{"type":"ping"}`)); err != nil {
			t.Fatal(err)
		}
	}
	final := func(int) uint64 { return 16 } // 16 comes only for t001
	waitFor(t, "both clients cut off", func() bool { return s.dropped.Load() == 2 })
	s.WaitCaughtUp(ctx, final, time.Second)
	r := s.Result(final)
	// Per client: 11, 12, 14 (gap of 13), 15 applied; 14 and 13 counted
	// as duplicates or out of order; 16 missing (expected 6, got 4).
	want := Result{Delivered: 8, Expected: 12, Missing: 4, Gaps: 2, Dups: 4, Dropped: 2, Malformed: 2, Foreign: 2}
	if r.Delivered != want.Delivered || r.Expected != want.Expected || r.Missing != want.Missing || r.Gaps != want.Gaps ||
		r.Dups != want.Dups || r.Dropped != want.Dropped || r.Malformed != want.Malformed || r.Foreign != want.Foreign {
		t.Fatalf("result %+v, want %+v", r, want)
	}
	if r.Closes["closed 1013 too slow"] != 2 {
		t.Fatalf("closes %v, want 2 × closed 1013 too slow", r.Closes)
	}
	srv.Close()
	wg.Wait()
}

// waitFor polls cond; the limit only keeps a broken test from hanging.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
