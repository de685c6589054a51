package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/pbxpulse/pbxpulse/pkg/bus"
	pb "github.com/pbxpulse/pbxpulse/pkg/pbxpulsev1"
	"github.com/pbxpulse/pbxpulse/test/pbxsim"
	"github.com/pbxpulse/pbxpulse/test/stack"
)

// eventLog follows every event of the stack's tenant from the beginning of
// its stream, as a downstream consumer would.
type eventLog struct {
	mu  sync.Mutex
	evs []*pb.Event
}

func follow(t *testing.T, s *stack.Stack) *eventLog {
	t.Helper()
	nc, err := nats.Connect(s.NATSURL(), nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	l := &eventLog{}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() {
		for ctx.Err() == nil {
			cons, err := js.OrderedConsumer(ctx, bus.EventStream(s.Tenant()), jetstream.OrderedConsumerConfig{})
			if err != nil {
				time.Sleep(100 * time.Millisecond)
				continue
			}
			seen := len(l.all())
			it, err := cons.Messages()
			if err != nil {
				time.Sleep(100 * time.Millisecond)
				continue
			}
			i := 0
			for {
				m, err := it.Next()
				if err != nil {
					break
				}
				i++
				if i <= seen {
					continue // re-created after a NATS restart: skip what we have
				}
				var ev pb.Event
				if err := proto.Unmarshal(m.Data(), &ev); err != nil {
					t.Errorf("undecodable event: %v", err)
					continue
				}
				l.mu.Lock()
				l.evs = append(l.evs, &ev)
				l.mu.Unlock()
			}
			it.Stop()
		}
	}()
	return l
}

func (l *eventLog) all() []*pb.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]*pb.Event(nil), l.evs...)
}

// until waits for cond over the events seen so far.
func (l *eventLog) until(t *testing.T, what string, timeout time.Duration, cond func([]*pb.Event) bool) []*pb.Event {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		evs := l.all()
		if cond(evs) {
			return evs
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s (%d events)", timeout, what, len(evs))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// connState is the last connection state published for a PBX.
func connState(evs []*pb.Event, pbx string) pb.PbxConnection_State {
	st := pb.PbxConnection_STATE_UNSPECIFIED
	for _, e := range evs {
		if c := e.GetPbxConnection(); c != nil && e.PbxId == pbx {
			st = c.State
		}
	}
	return st
}

func countConn(evs []*pb.Event, pbx string, state pb.PbxConnection_State) int {
	n := 0
	for _, e := range evs {
		if c := e.GetPbxConnection(); c != nil && e.PbxId == pbx && c.State == state {
			n++
		}
	}
	return n
}

func hasContact(evs []*pb.Event, pbx, ep, status string) bool {
	for _, e := range evs {
		if c := e.GetContactStatus(); c != nil && e.PbxId == pbx && c.Endpoint == ep && c.Status == status {
			return true
		}
	}
	return false
}

// created counts ChannelCreated events per Uniqueid.
func created(evs []*pb.Event) map[string]int {
	n := map[string]int{}
	for _, e := range evs {
		if c := e.GetChannelCreated(); c != nil {
			n[c.Channel.Uniqueid]++
		}
	}
	return n
}

func metric(t *testing.T, addr, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `(?:\{[^}]*\})? (\S+)$`)
	total := 0.0
	found := false
	for _, m := range re.FindAllStringSubmatch(string(body), -1) {
		v, _ := strconv.ParseFloat(m[1], 64)
		total += v
		found = true
	}
	if !found {
		return 0
	}
	return total
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// One collector follows two PBXs; one of them going away (and coming back)
// never disturbs the other.
func TestCollectorManyPBXs(t *testing.T) {
	s := startStack(t, true)
	sim2 := pbxsim.New(pbxsim.Config{})
	addr2, err := sim2.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.StartService("collector", "AMI_HOSTS=pbx1="+s.SimAddr+",pbx2="+addr2.String(), "AMI_KEEPALIVE=1s", "AMI_MAX_BACKOFF=1s"); err != nil {
		t.Fatal(err)
	}
	log := follow(t, s)
	log.until(t, "both PBXs connected", 30*time.Second, func(evs []*pb.Event) bool {
		return connState(evs, "pbx1") == pb.PbxConnection_STATE_CONNECTED && connState(evs, "pbx2") == pb.PbxConnection_STATE_CONNECTED
	})

	sim2.Close()
	log.until(t, "pbx2 disconnected", 30*time.Second, func(evs []*pb.Event) bool {
		return connState(evs, "pbx2") == pb.PbxConnection_STATE_DISCONNECTED
	})
	s.Sim.Register("1001")
	call := s.Sim.Dial("1001", "1002")
	call.Answer()
	call.Hangup()
	evs := log.until(t, "pbx1 keeps flowing while pbx2 is down", 30*time.Second, func(evs []*pb.Event) bool {
		return hasContact(evs, "pbx1", "1001", "NonQualified") && len(created(evs)) == 2
	})
	if connState(evs, "pbx1") != pb.PbxConnection_STATE_CONNECTED {
		t.Fatal("pbx1 was disturbed by pbx2 going down")
	}
	if n := countConn(evs, "pbx1", pb.PbxConnection_STATE_DISCONNECTED); n != 0 {
		t.Fatalf("pbx1 disconnected %d times", n)
	}

	log.until(t, "pbx2 retried a few times (jittered backoff)", 30*time.Second, func(evs []*pb.Event) bool {
		return countConn(evs, "pbx2", pb.PbxConnection_STATE_DISCONNECTED) >= 3
	})

	// pbx2 comes back on the same address with an extension registered.
	sim2 = pbxsim.New(pbxsim.Config{})
	if _, err := sim2.Listen(addr2.String()); err != nil {
		t.Fatal(err)
	}
	defer sim2.Close()
	sim2.Register("1003")
	log.until(t, "pbx2 back, with 1003's contact from the resync", 30*time.Second, func(evs []*pb.Event) bool {
		return connState(evs, "pbx2") == pb.PbxConnection_STATE_CONNECTED && hasContact(evs, "pbx2", "1003", "NonQualified")
	})
	attempts := 0
	for _, e := range log.all() {
		if c := e.GetPbxConnection(); c != nil && e.PbxId == "pbx2" && c.State == pb.PbxConnection_STATE_DISCONNECTED {
			if int(c.Attempt) != attempts+1 {
				t.Errorf("attempt %d after %d", c.Attempt, attempts)
			}
			attempts = int(c.Attempt)
			if strings.Contains(c.Detail, "monitor-secret") {
				t.Fatal("the AMI secret reached an event")
			}
		}
	}
}

// Two collector replicas watch the same PBX: only one connects, no event is
// published twice, and when the leader dies the other takes over.
func TestCollectorLeaderElection(t *testing.T) {
	s := startStack(t, true)
	health := map[string]string{"collector-a": freePort(t), "collector-b": freePort(t)}
	for name, addr := range health {
		if err := s.StartNamed(name, "collector", "HEALTH_ADDR="+addr, "LEASE_TTL=2s", "AMI_MAX_BACKOFF=1s"); err != nil {
			t.Fatal(err)
		}
	}
	log := follow(t, s)
	log.until(t, "pbx1 connected", 30*time.Second, func(evs []*pb.Event) bool {
		return connState(evs, "pbx1") == pb.PbxConnection_STATE_CONNECTED
	})
	leader, follower := "", ""
	testenvEventually(t, 10*time.Second, func() error {
		a, b := metric(t, health["collector-a"], "pbxpulse_collector_pbx_leader"), metric(t, health["collector-b"], "pbxpulse_collector_pbx_leader")
		switch {
		case a == 1 && b == 0:
			leader, follower = "collector-a", "collector-b"
		case b == 1 && a == 0:
			leader, follower = "collector-b", "collector-a"
		default:
			return fmt.Errorf("leader gauges a=%v b=%v", a, b)
		}
		return nil
	})
	s.Sim.Register("1001")
	s.Sim.Register("1002")
	c1 := s.Sim.Dial("1001", "1002")
	c1.Answer()
	c1.Hangup()
	log.until(t, "first call", 30*time.Second, func(evs []*pb.Event) bool { return len(created(evs)) == 2 })

	s.Kill(leader) // a crash: no lease release, the TTL must run out
	log.until(t, "follower took over", 30*time.Second, func(evs []*pb.Event) bool {
		return countConn(evs, "pbx1", pb.PbxConnection_STATE_CONNECTED) >= 2
	})
	if v := metric(t, health[follower], "pbxpulse_collector_pbx_leader"); v != 1 {
		t.Fatalf("follower leader gauge %v", v)
	}
	c2 := s.Sim.Dial("1002", "1001")
	c2.Answer()
	c2.Hangup()
	evs := log.until(t, "second call", 30*time.Second, func(evs []*pb.Event) bool { return len(created(evs)) == 4 })
	time.Sleep(500 * time.Millisecond) // let any duplicate show up
	for id, n := range created(log.all()) {
		if n != 1 {
			t.Errorf("channel %s created %d times", id, n)
		}
	}
	sessions := map[string]bool{}
	for _, e := range evs {
		sessions[e.SessionId] = true
	}
	if len(sessions) != 2 {
		t.Errorf("%d collector sessions published, want 2 (one per leader)", len(sessions))
	}
}

// With NATS away longer than the outbox holds, the collector drops events,
// says so, and once NATS is back publishes a full resync so that the truth
// is restored.
func TestCollectorOutboxOverflowResyncs(t *testing.T) {
	s := startStack(t, true)
	hp := freePort(t)
	if err := s.StartService("collector", "OUTBOX_CAPACITY=100", "HEALTH_ADDR="+hp); err != nil {
		t.Fatal(err)
	}
	log := follow(t, s)
	log.until(t, "pbx1 connected", 30*time.Second, func(evs []*pb.Event) bool {
		return connState(evs, "pbx1") == pb.PbxConnection_STATE_CONNECTED
	})
	done := make(chan error, 1)
	go func() { done <- s.RestartNATS(3 * time.Second) }()
	time.Sleep(500 * time.Millisecond) // NATS is down now
	for range 40 {                     // ~10 AMI messages each: well over 100 events
		s.Sim.Register("1004")
		s.Sim.Unregister("1004")
	}
	s.Sim.Register("1005") // the last word: 1005 is registered
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	testenvEventually(t, 30*time.Second, func() error {
		if v := metric(t, hp, "pbxpulse_collector_events_dropped_total"); v <= 0 {
			return fmt.Errorf("dropped %v", v)
		}
		if v := metric(t, hp, `pbxpulse_collector_resyncs_total`); v < 2 {
			return fmt.Errorf("resyncs %v, want the connect one and an overflow one", v)
		}
		return nil
	})
	// The resync after the overflow republished the contacts as they are.
	log.until(t, "1005's contact after the overflow resync", 30*time.Second, func(evs []*pb.Event) bool {
		return hasContact(evs, "pbx1", "1005", "NonQualified")
	})
}

func testenvEventually(t *testing.T, d time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
