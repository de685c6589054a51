package lease

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pbxpulse/pbxpulse/pkg/bus"
	"github.com/pbxpulse/pbxpulse/pkg/natsserver"
	"github.com/pbxpulse/pbxpulse/pkg/testenv"
)

const ttl = 2 * time.Second

// connect opens a connection the way the services do (reconnecting forever),
// one per simulated replica.
func connect(t *testing.T, url string) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := bus.Connect(url, t.Name(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

func newElector(t *testing.T, js jetstream.JetStream, holder string, onChange func(string, bool)) *Elector {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	e, err := New(ctx, js, Config{
		TTL:      ttl,
		Holder:   holder,
		Logger:   slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug})).With("elector", holder),
		OnChange: onChange,
	})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// tracker is the PBX side: it records who leads and when, and whether two
// leaders ever overlapped.
type tracker struct {
	active  atomic.Int32
	overlap atomic.Bool

	mu     sync.Mutex
	leader string
	starts map[string][]time.Time
	ends   map[string][]time.Time
}

func newTracker() *tracker {
	return &tracker{starts: map[string][]time.Time{}, ends: map[string][]time.Time{}}
}

// lead returns a lead function that holds until its context ends.
func (tr *tracker) lead(name string) func(context.Context) {
	return func(ctx context.Context) {
		tr.begin(name)
		<-ctx.Done()
		tr.end(name)
	}
}

func (tr *tracker) begin(name string) {
	if tr.active.Add(1) > 1 {
		tr.overlap.Store(true)
	}
	tr.mu.Lock()
	tr.leader = name
	tr.starts[name] = append(tr.starts[name], time.Now())
	tr.mu.Unlock()
}

func (tr *tracker) end(name string) {
	tr.mu.Lock()
	tr.leader = ""
	tr.ends[name] = append(tr.ends[name], time.Now())
	tr.mu.Unlock()
	tr.active.Add(-1)
}

func (tr *tracker) current() string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.leader
}

func (tr *tracker) last(m map[string][]time.Time, name string) time.Time {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	ts := m[name]
	if len(ts) == 0 {
		return time.Time{}
	}
	return ts[len(ts)-1]
}

func (tr *tracker) check(t *testing.T) {
	t.Helper()
	if tr.overlap.Load() {
		t.Fatal("two leaders at the same time")
	}
}

// run starts e.Run in the background; the returned stop cancels it and
// waits for Run to return (it is also called at cleanup).
func run(t *testing.T, e *Elector, key string, lead func(context.Context)) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- e.Run(ctx, key, lead) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-errc:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(3 * ttl):
				t.Errorf("Run did not return after its context ended")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// followerWatching waits until a follower watches the lease keys (its
// watch is a consumer on the bucket's stream), i.e. it has settled into
// waiting for a release rather than still making its first attempts.
func followerWatching(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	testenv.Eventually(t, 5*time.Second, func() error {
		st, err := js.Stream(t.Context(), "KV_"+DefaultBucket)
		if err != nil {
			return err
		}
		if n := st.CachedInfo().State.Consumers; n != 1 {
			return fmt.Errorf("%d consumers on the lease stream, want 1", n)
		}
		return nil
	})
}

func leaderIs(tr *tracker, want string) func() error {
	return func() error {
		if got := tr.current(); got != want {
			return fmt.Errorf("leader %q, want %q", got, want)
		}
		return nil
	}
}

func someLeader(tr *tracker) func() error {
	return func() error {
		if tr.current() == "" {
			return errors.New("no leader")
		}
		return nil
	}
}

// TestKVAssumptions pins down the server and client behaviour the lease
// relies on, so that an upgrade changing it fails here.
func TestKVAssumptions(t *testing.T) {
	s := testenv.NATS(t)
	_, js := connect(t, s.ClientURL())
	ctx := t.Context()
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "assume", TTL: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	rev, err := kv.Create(ctx, "k", []byte("a"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Create(ctx, "k", []byte("b")); !errors.Is(err, jetstream.ErrKeyExists) {
		t.Fatalf("Create over a live key: %v, want ErrKeyExists", err)
	}
	if _, err := kv.Update(ctx, "k", []byte("b"), rev+1); !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		t.Fatalf("Update with a wrong revision: %v, want ErrKeyRevisionMismatch", err)
	}
	if err := kv.Delete(ctx, "k", jetstream.LastRevision(rev+1)); !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		t.Fatalf("Delete with a wrong revision: %v, want ErrKeyRevisionMismatch", err)
	}

	// Expiry by MaxAge removes the key and leaves no delete marker.
	testenv.Eventually(t, 5*time.Second, func() error {
		_, err := kv.Get(ctx, "k")
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return nil
		}
		return fmt.Errorf("key still there: %v", err)
	})
	if h, err := kv.History(ctx, "k"); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Fatalf("history after expiry: %d entries, %v; want none", len(h), err)
	}
	if rev, err = kv.Create(ctx, "k", []byte("c")); err != nil {
		t.Fatalf("Create after expiry: %v", err)
	}

	// Create works over a delete marker.
	if err := kv.Delete(ctx, "k", jetstream.LastRevision(rev)); err != nil {
		t.Fatal(err)
	}
	if h, err := kv.History(ctx, "k"); err != nil || len(h) != 1 || h[0].Operation() != jetstream.KeyValueDelete {
		t.Fatalf("history after Delete: %v, %v; want one delete marker", h, err)
	}
	if _, err := kv.Create(ctx, "k", []byte("d")); err != nil {
		t.Fatalf("Create over a delete marker: %v", err)
	}
}

// TestOneLeaderThroughRollouts replaces the leading replica again and again,
// as rollouts do: the other must take over at once, never overlapping.
func TestOneLeaderThroughRollouts(t *testing.T) {
	s := testenv.NATS(t)
	const key = "acme.pbx1"
	tr := newTracker()
	stops := map[string]func(){}
	_, js := connect(t, s.ClientURL())
	for _, name := range []string{"a", "b"} {
		_, js := connect(t, s.ClientURL())
		stops[name] = run(t, newElector(t, js, name, nil), key, tr.lead(name))
	}
	testenv.Eventually(t, 5*time.Second, someLeader(tr))

	var slowest time.Duration
	const rollouts = 20
	for i := range rollouts {
		followerWatching(t, js)
		old := tr.current()
		next := map[string]string{"a": "b", "b": "a"}[old]
		stopped := time.Now()
		stops[old]()
		testenv.Eventually(t, ttl, leaderIs(tr, next))
		slowest = max(slowest, time.Since(stopped))
		tr.check(t)
		// The stopped replica comes back as a new process.
		_, js := connect(t, s.ClientURL())
		stops[old] = run(t, newElector(t, js, fmt.Sprintf("%s%d", old, i), nil), key, tr.lead(old))
	}
	tr.check(t)
	t.Logf("%d handovers; slowest took %s", rollouts, slowest)
	// Polling alone would take up to TTL/3.
	if slowest > ttl/10 {
		t.Errorf("a handover took %s; a released key should be taken at once, well under the TTL %s", slowest, ttl)
	}
}

// TestCrashedLeader: a leader that can no longer renew (its NATS connection
// is gone) must stop before the other replica starts, which takes over once
// the key expires.
func TestCrashedLeader(t *testing.T) {
	s := testenv.NATS(t)
	const key = "acme.pbx1"
	tr := newTracker()
	var mu sync.Mutex
	var changes []string
	ncA, jsA := connect(t, s.ClientURL())
	a := newElector(t, jsA, "a", func(k string, held bool) {
		mu.Lock()
		changes = append(changes, fmt.Sprintf("%s=%v", k, held))
		mu.Unlock()
	})
	run(t, a, key, tr.lead("a"))
	testenv.Eventually(t, 5*time.Second, leaderIs(tr, "a"))
	if !a.Held(key) {
		t.Fatal("a leads but Held is false")
	}
	_, jsB := connect(t, s.ClientURL())
	b := newElector(t, jsB, "b", nil)
	run(t, b, key, tr.lead("b"))

	crash := time.Now()
	ncA.Close()
	testenv.Eventually(t, 3*ttl, leaderIs(tr, "b"))
	tr.check(t)
	aEnd, bStart := tr.last(tr.ends, "a"), tr.last(tr.starts, "b")
	t.Logf("a stopped %s after the crash, b started %s after the crash", aEnd.Sub(crash), bStart.Sub(crash))
	if !aEnd.Before(bStart) {
		t.Fatalf("a stopped at %s, after b started at %s", aEnd, bStart)
	}
	if d := aEnd.Sub(crash); d > ttl {
		t.Errorf("a kept leading %s after it could no longer renew; the TTL is %s", d, ttl)
	}
	if a.Held(key) || !b.Held(key) {
		t.Errorf("Held: a %v, b %v; want false, true", a.Held(key), b.Held(key))
	}
	mu.Lock()
	defer mu.Unlock()
	if got := strings.Join(changes, " "); got != key+"=true "+key+"=false" {
		t.Errorf("OnChange calls: %s", got)
	}
}

// TestNATSRestart: while NATS is down nobody leads (the leader stops within
// the TTL); once it is back, leadership resumes.
func TestNATSRestart(t *testing.T) {
	dir := t.TempDir()
	s, err := natsserver.Start("127.0.0.1", -1, dir)
	if err != nil {
		t.Fatal(err)
	}
	var srvMu sync.Mutex
	t.Cleanup(func() {
		srvMu.Lock()
		defer srvMu.Unlock()
		s.Shutdown()
	})
	url, port := s.ClientURL(), s.Addr().(*net.TCPAddr).Port

	const key = "acme.pbx1"
	tr := newTracker()
	for _, name := range []string{"a", "b"} {
		_, js := connect(t, url)
		run(t, newElector(t, js, name, nil), key, tr.lead(name))
	}
	for round := range 2 {
		testenv.Eventually(t, 5*ttl, someLeader(tr))
		leader := tr.current()
		down := time.Now()
		srvMu.Lock()
		s.Shutdown()
		srvMu.Unlock()
		testenv.Eventually(t, ttl+time.Second, leaderIs(tr, ""))
		t.Logf("round %d: %s stopped leading %s after NATS went down", round, leader, tr.last(tr.ends, leader).Sub(down))

		// Round 0 restarts at once: the key, renewed less than the TTL ago,
		// is still there. Round 1 stays down long enough for it to expire
		// while the server is away (this sleep is the outage itself).
		if round == 1 {
			time.Sleep(ttl)
		}
		s2, err := natsserver.Start("127.0.0.1", port, dir)
		if err != nil {
			t.Fatal(err)
		}
		srvMu.Lock()
		s = s2
		srvMu.Unlock()
		up := time.Now()
		testenv.Eventually(t, 5*ttl, someLeader(tr))
		t.Logf("round %d: %s leads %s after NATS came back", round, tr.current(), time.Since(up))
		tr.check(t)
	}
}

// TestLeadReturnsEarly: a lead that gives up releases the key; the other
// replica takes it at once.
func TestLeadReturnsEarly(t *testing.T) {
	s := testenv.NATS(t)
	const key = "acme.pbx1"
	tr := newTracker()
	_, jsA := connect(t, s.ClientURL())
	a := newElector(t, jsA, "a", nil)
	gaveUp := make(chan struct{})
	run(t, a, key, func(ctx context.Context) {
		tr.begin("a")
		defer tr.end("a")
		select {
		case <-gaveUp:
		case <-ctx.Done():
		}
	})
	testenv.Eventually(t, 5*time.Second, leaderIs(tr, "a"))
	_, jsB := connect(t, s.ClientURL())
	run(t, newElector(t, jsB, "b", nil), key, tr.lead("b"))

	followerWatching(t, jsB)
	close(gaveUp)
	testenv.Eventually(t, ttl/10, leaderIs(tr, "b"))
	if a.Held(key) {
		t.Error("a still Held after its lead returned")
	}
	tr.check(t)
}

// TestExistingKey: a key held by someone else blocks until it expires; a
// key carrying the elector's own id (e.g. a renewal that reached the server
// after timing out) is taken back at once.
func TestExistingKey(t *testing.T) {
	s := testenv.NATS(t)
	_, js := connect(t, s.ClientURL())
	e := newElector(t, js, "a", nil)
	kv, err := js.KeyValue(t.Context(), DefaultBucket)
	if err != nil {
		t.Fatal(err)
	}
	tr := newTracker()

	if _, err := kv.Create(t.Context(), "acme.own", []byte(e.ID())); err != nil {
		t.Fatal(err)
	}
	run(t, e, "acme.own", tr.lead("own"))
	testenv.Eventually(t, ttl/4, leaderIs(tr, "own"))

	if _, err := kv.Create(t.Context(), "acme.other", []byte("crashed-replica-1234")); err != nil {
		t.Fatal(err)
	}
	created := time.Now()
	run(t, e, "acme.other", tr.lead("other"))
	testenv.Eventually(t, 3*ttl, func() error {
		if !e.Held("acme.other") {
			return errors.New("not held")
		}
		return nil
	})
	if d := time.Since(created); d < ttl {
		t.Fatalf("took the key of another holder after %s, before its TTL %s", d, ttl)
	}
}

func TestInvalid(t *testing.T) {
	s := testenv.NATS(t)
	_, js := connect(t, s.ClientURL())
	ctx := t.Context()
	if _, err := New(ctx, js, Config{TTL: MinTTL / 2}); err == nil {
		t.Error("New accepted a TTL below MinTTL")
	}
	if _, err := New(ctx, js, Config{Bucket: "bad.bucket"}); err == nil {
		t.Error("New accepted a bad bucket name")
	}
	e := newElector(t, js, "a", nil)
	lead := func(context.Context) { t.Error("lead called for an invalid key") }
	for _, key := range []string{"", "acme.", ".pbx", "acme..pbx", "acme.pb x", "acme.*", "acme.>", "acme." + strings.Repeat("x", 65)} {
		if err := e.Run(ctx, key, lead); err == nil {
			t.Errorf("Run(%q) returned nil", key)
		}
	}

	tr := newTracker()
	run(t, e, "acme.pbx1", tr.lead("a"))
	testenv.Eventually(t, 5*time.Second, leaderIs(tr, "a"))
	if err := e.Run(ctx, "acme.pbx1", lead); err == nil {
		t.Error("a second Run on the same key returned nil")
	}
}

// TestBucketTTL: an existing bucket's TTL is raised, never lowered, and a
// bucket without one is refused.
func TestBucketTTL(t *testing.T) {
	s := testenv.NATS(t)
	_, js := connect(t, s.ClientURL())
	ctx := t.Context()
	for _, c := range []struct {
		bucket   string
		existing time.Duration
		want     time.Duration
	}{
		{"shorter", time.Second, ttl},
		{"longer", 3 * ttl, 3 * ttl},
		{"none", 0, 0},
	} {
		if _, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: c.bucket, TTL: c.existing}); err != nil {
			t.Fatal(err)
		}
		_, err := New(ctx, js, Config{Bucket: c.bucket, TTL: ttl, Logger: slog.New(slog.DiscardHandler)})
		if c.want == 0 {
			if err == nil {
				t.Errorf("%s: New accepted a bucket without TTL", c.bucket)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", c.bucket, err)
		}
		kv, err := js.KeyValue(ctx, c.bucket)
		if err != nil {
			t.Fatal(err)
		}
		st, err := kv.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.TTL() != c.want {
			t.Errorf("%s: bucket TTL %s, want %s", c.bucket, st.TTL(), c.want)
		}
	}
}
