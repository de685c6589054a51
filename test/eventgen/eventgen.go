// Package eventgen generates a realistic, deterministic stream of pbxpulse
// events for one tenant and several PBXs, stamped exactly as the collector
// stamps them: for load, chaos and replay tests of whatever consumes the
// stream (the projector first of all).
//
// The generator runs a small model of each PBX (endpoints and their
// contacts, outbound registrations, queues and their members, channels and
// bridges) on a simulated clock that starts at a fixed date, and plays
// overlapping calls on it: internal, inbound and outbound through trunks,
// queue calls, holds, DTMF, blind and attended transfers, and every way a
// call ends (answered, no answer, busy, cancelled, unavailable, rejected).
// Between calls it flaps trunk registrations, registers and unregisters
// phones, measures round-trip times, pauses queue members, drops and
// re-establishes the collector's link (which resyncs with a full listing
// and a channel snapshot) and, rarely, loses an event the way a lossy link
// does, for the periodic reconciliation to correct. The same Config
// (Seed included) always yields the same events, ids and times.
package eventgen

import (
	"container/heap"
	"fmt"
	"math/rand/v2"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/pbxpulse/pbxpulse/pkg/pbxpulsev1"
)

// Config says what to simulate. Zero fields get the defaults noted.
type Config struct {
	// Tenant owning the PBXs (default "acme").
	Tenant string
	// PBXs is how many PBXs, named pbx1, pbx2, ... (default 3).
	PBXs int
	// Extensions per PBX, named 1001, 1002, ... (default 20, at least 6).
	Extensions int
	// Trunks per PBX: provider endpoints with an outbound registration
	// each (default 2, at least 1).
	Trunks int
	// Seed of every random choice.
	Seed uint64
	// ConcurrentCalls is how many calls each PBX keeps going at once
	// (default 6).
	ConcurrentCalls int
	// Start is the simulated time of the first event (default
	// 2026-03-02T08:00:00Z).
	Start time.Time
}

// DefaultStart is the simulated time of the first event unless Config.Start says otherwise.
var DefaultStart = time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC)

func (c Config) withDefaults() Config {
	if c.Tenant == "" {
		c.Tenant = "acme"
	}
	if c.PBXs <= 0 {
		c.PBXs = 3
	}
	if c.Extensions <= 0 {
		c.Extensions = 20
	}
	c.Extensions = max(c.Extensions, 6)
	if c.Trunks <= 0 {
		c.Trunks = 2
	}
	if c.ConcurrentCalls <= 0 {
		c.ConcurrentCalls = 6
	}
	if c.Start.IsZero() {
		c.Start = DefaultStart
	}
	return c
}

// Generator produces the event stream. It is not safe for concurrent use.
type Generator struct {
	cfg      Config
	rng      *rand.Rand
	now      time.Time
	count    uint64 // events stamped, for ids
	pbxs     []*pbx
	out      []*pb.Event // emitted, not yet returned
	agenda   agenda
	taskSeq  uint64
	draining bool
}

// New returns a generator for cfg.
func New(cfg Config) *Generator {
	cfg = cfg.withDefaults()
	g := &Generator{
		cfg: cfg,
		rng: rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)),
		now: cfg.Start,
	}
	for i := range cfg.PBXs {
		p := newPBX(g, i)
		g.pbxs = append(g.pbxs, p)
		// PBXs come up a few milliseconds apart, then live their lives.
		g.at(time.Duration(i)*7*time.Millisecond, p.boot)
	}
	return g
}

// Config returns the configuration in use, defaults filled in.
func (g *Generator) Config() Config { return g.cfg }

// PBXIDs returns the PBX ids of the stream.
func (g *Generator) PBXIDs() []string {
	ids := make([]string, len(g.pbxs))
	for i, p := range g.pbxs {
		ids[i] = p.id
	}
	return ids
}

// Next returns the next event. The stream never ends (see Drain).
func (g *Generator) Next() *pb.Event {
	for len(g.out) == 0 {
		if !g.step() {
			panic("eventgen: nothing left to simulate") // only after Drain
		}
	}
	e := g.out[0]
	g.out[0] = nil
	g.out = g.out[1:]
	return e
}

// Take returns the next n events.
func (g *Generator) Take(n int) []*pb.Event {
	evs := make([]*pb.Event, n)
	for i := range evs {
		evs[i] = g.Next()
	}
	return evs
}

// Drain stops starting calls and flapping, lets every call in progress end
// (and any link that is down come back and resync), and returns the
// events that takes. Afterwards the generator has nothing more to say.
func (g *Generator) Drain() []*pb.Event {
	g.draining = true
	for g.step() {
	}
	out := g.out
	g.out = nil
	return out
}

// Now is the simulated time of the last event.
func (g *Generator) Now() time.Time { return g.now }

// step runs the earliest task; false when there is none.
func (g *Generator) step() bool {
	if g.agenda.Len() == 0 {
		return false
	}
	t := heap.Pop(&g.agenda).(*task)
	if t.at.After(g.now) {
		g.now = t.at
	}
	d, next := t.fn()
	if next != nil {
		g.at(d, next)
	}
	return true
}

// step is one piece of simulated behaviour: it emits what happens now and
// says what happens next and when (nil: nothing more).
type step func() (time.Duration, step)

// at schedules fn d after now.
func (g *Generator) at(d time.Duration, fn step) {
	g.taskSeq++
	heap.Push(&g.agenda, &task{at: g.now.Add(d), seq: g.taskSeq, fn: fn})
}

type task struct {
	at  time.Time
	seq uint64 // ties run in the order scheduled
	fn  step
}

type agenda []*task

func (a agenda) Len() int { return len(a) }
func (a agenda) Less(i, j int) bool {
	if !a[i].at.Equal(a[j].at) {
		return a[i].at.Before(a[j].at)
	}
	return a[i].seq < a[j].seq
}
func (a agenda) Swap(i, j int) { a[i], a[j] = a[j], a[i] }
func (a *agenda) Push(x any)   { *a = append(*a, x.(*task)) }
func (a *agenda) Pop() any {
	old := *a
	t := old[len(old)-1]
	old[len(old)-1] = nil
	*a = old[:len(old)-1]
	return t
}

// tick advances the clock between two events of one burst, as the AMI
// messages of one action arrive a little apart.
func (g *Generator) tick() time.Time {
	g.now = g.now.Add(time.Duration(20_000 + g.rng.Int64N(400_000)))
	return g.now
}

// stamp fills the envelope as the collector does (envelope.stamp): a
// UUIDv7 id, tenant, PBX, source, the PBX time (AMI events carry none, so
// it is the receive time), and the place in the PBX's session.
func (g *Generator) stamp(p *pbx, e *pb.Event) {
	t := g.tick()
	g.count++
	p.seq++
	e.Id = g.uuid7(t)
	e.Tenant = g.cfg.Tenant
	e.PbxId = p.id
	e.Source = pb.Source_SOURCE_AMI
	e.ReceivedTime = timestamppb.New(t)
	e.PbxTime = e.ReceivedTime
	e.SessionSeq = p.seq
	e.SessionId = p.session
}

// uuid7 is a UUIDv7 of time t whose random part holds the event count, so
// that ids are unique however the random bits fall.
func (g *Generator) uuid7(t time.Time) string {
	var b [16]byte
	ms := uint64(t.UnixMilli())
	for i := range 6 {
		b[i] = byte(ms >> (40 - 8*i))
	}
	r := g.rng.Uint64()
	b[6] = 0x70 | byte(r&0x0f)
	b[7] = byte(r >> 8)
	b[8] = 0x80 | byte(r>>16)&0x3f
	c := g.count
	b[9], b[10], b[11], b[12] = byte(c>>24), byte(c>>16), byte(c>>8), byte(c)
	b[13], b[14], b[15] = byte(r>>24), byte(r>>32), byte(r>>40)
	return formatUUID(b)
}

// uuid4 is a random (seeded) UUIDv4: session and bridge ids.
func (g *Generator) uuid4() string {
	var b [16]byte
	x, y := g.rng.Uint64(), g.rng.Uint64()
	for i := range 8 {
		b[i], b[8+i] = byte(x>>(8*i)), byte(y>>(8*i))
	}
	b[6] = 0x40 | b[6]&0x0f
	b[8] = 0x80 | b[8]&0x3f
	return formatUUID(b)
}

func formatUUID(b [16]byte) string {
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// Helpers for random choices.

func (g *Generator) chance(p float64) bool { return g.rng.Float64() < p }

// between is a random duration in [lo, hi).
func (g *Generator) between(lo, hi time.Duration) time.Duration {
	return lo + time.Duration(g.rng.Int64N(int64(hi-lo)))
}

// pick returns one of the weighted options' index.
func (g *Generator) pick(weights ...int) int {
	total := 0
	for _, w := range weights {
		total += w
	}
	r := g.rng.IntN(total)
	for i, w := range weights {
		if r < w {
			return i
		}
		r -= w
	}
	return len(weights) - 1
}
