package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/pbxpulse/pbxpulse/pkg/bus"
	pb "github.com/pbxpulse/pbxpulse/pkg/pbxpulsev1"
	"github.com/pbxpulse/pbxpulse/pkg/store"
)

var jsonOpts = protojson.MarshalOptions{UseProtoNames: true}

// frame is one encoded server message. A delta's frame is encoded once and
// the same bytes go to every client of the tenant.
type frame struct {
	kind    kind
	version uint64 // deltas and snapshots: their version
	data    []byte
	sub     *logSub              // logs frames: dropped once the subscription ended
	code    websocket.StatusCode // kindClose
	reason  string               // kindClose: close reason (a cut* label is derived from it)
}

const (
	// ringSize is how many recent delta frames a hub keeps: a client that
	// reconnects within them, or connects while the cached snapshot is at
	// most snapshotReuse versions old, is served without Postgres.
	ringSize      = 64
	snapshotReuse = 32
	// pollInterval is how often an idle hub checks Postgres for a version
	// whose announcement was lost with nothing after it.
	pollInterval = time.Second
)

// hub turns the projector's delta announcements for one tenant into one
// gap-free, ordered sequence and fans it out to the tenant's clients.
// Announcements travel on core NATS and can be lost; the hub then reads the
// missing deltas from Postgres, where the projector committed them.
type hub struct {
	tenant string
	g      *Gateway
	log    *slog.Logger
	cancel context.CancelFunc
	done   chan struct{}

	loadMu sync.Mutex // one snapshot read from Postgres at a time

	mu      sync.Mutex
	version uint64 // last delta fanned out
	resetAt uint64 // the ring holds nothing at or before this version
	ring    [ringSize]*frame
	ringN   int    // frames in ring, the newest at index version%ringSize
	snap    *frame // the newest snapshot read, shared by connecting clients
	clients map[*client]struct{}
}

// startHub subscribes to the tenant's announcements and reads where its
// views stand; the hub then runs until ctx ends or stop is called.
func startHub(ctx context.Context, g *Gateway, tenant string) (*hub, error) {
	ctx, cancel := context.WithCancel(ctx)
	h := &hub{tenant: tenant, g: g, log: g.log.With("tenant", tenant), cancel: cancel, done: make(chan struct{}), clients: map[*client]struct{}{}}
	// Subscribe before reading the version: nothing committed after the
	// read can go unannounced to this hub.
	ch := make(chan *nats.Msg, 1024)
	sub, err := g.nc.ChanSubscribe(bus.DeltaSubject(tenant), ch)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("subscribe deltas of %s: %w", tenant, err)
	}
	rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
	v, err := h.currentVersion(rctx)
	rcancel()
	if err != nil {
		_ = sub.Unsubscribe()
		cancel()
		return nil, err
	}
	h.version, h.resetAt = v, v
	go h.run(ctx, sub, ch)
	return h, nil
}

// stop ends the hub; its clients must be gone.
func (h *hub) stop() {
	h.cancel()
	<-h.done
}

func (h *hub) run(ctx context.Context, sub *nats.Subscription, ch chan *nats.Msg) {
	defer close(h.done)
	defer func() { _ = sub.Unsubscribe() }()
	poll := time.NewTicker(pollInterval)
	defer poll.Stop()
	announced := false
	for {
		select {
		case <-ctx.Done():
			return
		case m := <-ch:
			announced = true
			d := &pb.Delta{}
			if err := proto.Unmarshal(m.Data, d); err != nil || d.Tenant != h.tenant {
				h.log.Warn("bad delta announcement ignored", "subject", m.Subject, "err", err)
				continue
			}
			h.offer(ctx, d)
		case <-poll.C:
			// Only an idle hub asks: while announcements flow, the next
			// one shows a lost one.
			if announced {
				announced = false
				continue
			}
			if v, err := h.currentVersion(ctx); err == nil && v > h.lastVersion() {
				h.catchUp(ctx, v)
			} else if err != nil && ctx.Err() == nil {
				h.log.Warn("reading view version", "err", err)
			}
		}
	}
}

func (h *hub) lastVersion() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.version
}

// stats returns the hub's clients and version, for metrics.
func (h *hub) stats() (clients int, version uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.clients), h.version
}

func (h *hub) currentVersion(ctx context.Context) (uint64, error) {
	var v int64
	err := store.InTenant(ctx, h.g.pool, h.tenant, pgx.TxOptions{AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `SELECT version FROM projector_position WHERE tenant=$1`, h.tenant).Scan(&v)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("read view version of %s: %w", h.tenant, err)
	}
	return uint64(v), nil
}

func (h *hub) offer(ctx context.Context, d *pb.Delta) {
	last := h.lastVersion()
	switch {
	case d.Version <= last:
		return // already sent (read from Postgres before its announcement came)
	case d.Version > last+1:
		h.catchUp(ctx, d.Version-1)
		if h.lastVersion() != d.Version-1 {
			return // could not fill the gap yet; the poll will retry
		}
	}
	h.broadcast(d)
}

// catchUp reads deltas (last, upto] from Postgres and fans them out.
func (h *hub) catchUp(ctx context.Context, upto uint64) {
	for h.lastVersion() < upto {
		last := h.lastVersion()
		var ds []*pb.Delta
		var ok bool
		err := store.InTenant(ctx, h.g.pool, h.tenant, pgx.TxOptions{AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) (err error) {
			ds, ok, err = store.ReadDeltas(ctx, tx, h.tenant, last, upto, 500)
			return err
		})
		if err != nil {
			if ctx.Err() == nil {
				h.log.Warn("catching up deltas", "err", err)
			}
			return
		}
		if !ok || len(ds) == 0 {
			// Pruned or never stored: clients cannot be brought forward
			// delta by delta; make them reload a snapshot.
			h.log.Warn("delta history gap, clients resync", "after", last, "upto", upto)
			h.g.metrics.gaps.Inc()
			h.reset(upto, &frame{kind: kindClose, code: websocket.StatusServiceRestart, reason: "history gap"})
			return
		}
		for _, d := range ds {
			h.broadcast(d)
		}
	}
}

// encodeDelta encodes d as a delta message.
func encodeDelta(d *pb.Delta) (*frame, error) {
	body, err := jsonOpts.Marshal(d)
	if err != nil {
		return nil, fmt.Errorf("encode delta %d: %w", d.Version, err)
	}
	return &frame{kind: kindDelta, version: d.Version, data: envelope("delta", body)}, nil
}

func (h *hub) broadcast(d *pb.Delta) {
	f, err := encodeDelta(d)
	if err != nil {
		h.log.Error("delta dropped, clients resync", "err", err)
		h.reset(d.Version, &frame{kind: kindClose, code: websocket.StatusInternalError, reason: "delta not encodable"})
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if d.Version != h.version+1 {
		return
	}
	h.g.metrics.fanned.Inc()
	if at := d.GetCommittedAt(); at != nil {
		h.g.metrics.lag.Observe(time.Since(at.AsTime()).Seconds())
	}
	if d.Rebuilt {
		// The projection was rebuilt: what clients hold does not continue
		// into it. They get the delta that says so, then are closed, and
		// reconnect to a fresh snapshot.
		h.resetLocked(d.Version, f, &frame{kind: kindClose, code: websocket.StatusServiceRestart, reason: "projection rebuilt"})
		return
	}
	h.version = d.Version
	h.ring[d.Version%ringSize] = f
	h.ringN = min(h.ringN+1, ringSize)
	for c := range h.clients {
		c.push(f)
	}
}

// reset moves the hub to version after a break in the sequence, sending
// fs (a close frame last) to every client.
func (h *hub) reset(version uint64, fs ...*frame) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.resetLocked(version, fs...)
}

func (h *hub) resetLocked(version uint64, fs ...*frame) {
	h.version, h.resetAt = version, version
	h.ringN, h.snap = 0, nil
	clear(h.ring[:])
	for c := range h.clients {
		for _, f := range fs {
			c.push(f)
		}
	}
}

// ringFrom returns the ring's frames after version since, up to the hub's
// version; ok is false when the ring does not reach back that far. A client
// resuming at the reset version itself is not served from the ring (it may
// hold the generation before a rebuild). The caller holds h.mu.
func (h *hub) ringFrom(since uint64, resuming bool) (out []*frame, ok bool) {
	if since > h.version || since < h.resetAt || (resuming && since == h.resetAt) || h.version-since > uint64(h.ringN) {
		return nil, false
	}
	for v := since + 1; v <= h.version; v++ {
		out = append(out, h.ring[v%ringSize])
	}
	return out, true
}

// attach registers c and returns what it is sent first: with since, a
// "resumed" message and the deltas after since when those can be had (from
// the ring, or from Postgres within ResumeMax), otherwise a snapshot and
// the deltas after it. Every delta the
// hub fans out after the registration reaches c's queue; the writer skips
// those the initial messages already cover.
func (h *hub) attach(ctx context.Context, c *client, since *uint64) ([]*frame, error) {
	if since != nil {
		h.mu.Lock()
		if fs, ok := h.ringFrom(*since, true); ok {
			h.clients[c] = struct{}{}
			h.mu.Unlock()
			return append([]*frame{resumedFrame(*since)}, fs...), nil
		}
		h.clients[c] = struct{}{}
		h.mu.Unlock()
		fs, ok, err := h.resumeFromStore(ctx, *since)
		if err != nil {
			return nil, err
		}
		if ok {
			return fs, nil
		}
	}
	// A shared snapshot, and the ring's deltas after it.
	for attempt := 0; ; attempt++ {
		h.mu.Lock()
		if s := h.snap; s != nil && s.version+snapshotReuse >= h.version {
			fs, ok := h.ringFrom(s.version, false)
			if s.version > h.version {
				fs, ok = nil, true // Postgres is ahead of the announcements
			}
			if ok {
				h.clients[c] = struct{}{}
				h.mu.Unlock()
				return append([]*frame{s}, fs...), nil
			}
		}
		h.clients[c] = struct{}{}
		h.mu.Unlock()
		if attempt > 0 {
			// The hub moved faster than the cache: a snapshot read after
			// the registration covers everything before its queue.
			s, err := h.loadSnapshot(ctx, 0)
			if err != nil {
				return nil, err
			}
			return []*frame{s}, nil
		}
		if _, err := h.loadSnapshot(ctx, h.lastVersion()); err != nil {
			return nil, err
		}
	}
}

// clientList appends the hub's clients to cs.
func (h *hub) clientList(cs []*client) []*client {
	h.mu.Lock()
	defer h.mu.Unlock()
	for c := range h.clients {
		cs = append(cs, c)
	}
	return cs
}

// detach removes c; it is sent nothing more.
func (h *hub) detach(c *client) {
	h.mu.Lock()
	delete(h.clients, c)
	h.mu.Unlock()
}

// resumeFromStore reads the deltas after since from Postgres, in one
// consistent read with the current version. ok is false when the client
// must start over from a snapshot: too far behind, pruned, unknown
// version, or a rebuild at or after since.
func (h *hub) resumeFromStore(ctx context.Context, since uint64) (fs []*frame, ok bool, err error) {
	if since == 0 || h.g.cfg.ResumeMax == 0 {
		return nil, false, nil
	}
	var version uint64
	var ds []*pb.Delta
	err = store.InTenant(ctx, h.g.pool, h.tenant, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		var cur int64
		err := tx.QueryRow(ctx, `SELECT version FROM projector_position WHERE tenant=$1`, h.tenant).Scan(&cur)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		if version = uint64(cur); since > version || version-since > uint64(h.g.cfg.ResumeMax) {
			return nil
		}
		// Delta since itself too: a rebuild there means the client holds
		// the generation before it.
		ds, ok, err = store.ReadDeltas(ctx, tx, h.tenant, since-1, version, h.g.cfg.ResumeMax+1)
		return err
	})
	if err != nil {
		return nil, false, fmt.Errorf("resume from %d: %w", since, err)
	}
	if !ok || uint64(len(ds)) != version-since+1 {
		return nil, false, nil
	}
	fs = append(fs, resumedFrame(since))
	for _, d := range ds {
		if d.Rebuilt {
			return nil, false, nil
		}
		if d.Version == since {
			continue
		}
		f, err := encodeDelta(d)
		if err != nil {
			// Not a reason to refuse the client (it would retry the same
			// version forever): a snapshot serves it.
			return nil, false, nil
		}
		fs = append(fs, f)
	}
	return fs, true, nil
}

func resumedFrame(since uint64) *frame {
	return &frame{kind: kindResumed, version: since, data: []byte(`{"type":"resumed","data":{"version":"` + strconv.FormatUint(since, 10) + `"}}`)}
}

// loadSnapshot returns a snapshot of at least version min: the cached one,
// or one read from Postgres (which then becomes the cached one). Concurrent
// callers share one read.
func (h *hub) loadSnapshot(ctx context.Context, min uint64) (*frame, error) {
	h.loadMu.Lock()
	defer h.loadMu.Unlock()
	h.mu.Lock()
	s := h.snap
	h.mu.Unlock()
	if s != nil && s.version >= min && min > 0 {
		return s, nil
	}
	s, err := readSnapshot(ctx, h.g.pool, h.tenant)
	if err != nil {
		return nil, err
	}
	h.mu.Lock()
	// A read from before a reset describes what the clients were told to
	// discard.
	if s.version >= h.resetAt && (h.snap == nil || s.version > h.snap.version) {
		h.snap = s
	}
	h.mu.Unlock()
	return s, nil
}

// readSnapshot reads a tenant's views and their version in one consistent
// read, encoded as a snapshot message.
func readSnapshot(ctx context.Context, pool *pgxpool.Pool, tenant string) (*frame, error) {
	var snap *pb.Snapshot
	err := store.InTenant(ctx, pool, tenant, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) (err error) {
		snap, _, err = store.ReadSnapshot(ctx, tx, tenant)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("snapshot of %s: %w", tenant, err)
	}
	body, err := jsonOpts.Marshal(snap)
	if err != nil {
		return nil, fmt.Errorf("encode snapshot of %s: %w", tenant, err)
	}
	return &frame{kind: kindSnapshot, version: snap.Version, data: envelope("snapshot", body)}, nil
}

// body is the data of an envelope frame (a snapshot's Snapshot).
func (f *frame) body() []byte {
	i := bytes.Index(f.data, []byte(`"data":`))
	return f.data[i+len(`"data":`) : len(f.data)-1]
}

func envelope(typ string, body []byte) []byte {
	out := make([]byte, 0, len(body)+32)
	out = append(out, `{"type":"`...)
	out = append(out, typ...)
	out = append(out, `","data":`...)
	out = append(out, body...)
	return append(out, '}')
}
