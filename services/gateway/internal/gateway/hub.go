package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

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

// frame is one encoded server message.
type frame struct {
	version uint64
	data    []byte
}

// hub turns the projector's delta announcements into one gap-free, ordered
// sequence per tenant and fans it out to the connected clients. Announcements
// travel on core NATS and can be lost; the hub then reads the missing deltas
// from Postgres, where the projector committed them.
type hub struct {
	tenant string
	pool   *pgxpool.Pool
	log    *slog.Logger

	mu      sync.Mutex
	version uint64 // last delta fanned out
	clients map[*client]struct{}
	drops   uint64
}

func newHub(tenant string, pool *pgxpool.Pool, log *slog.Logger) *hub {
	return &hub{tenant: tenant, pool: pool, log: log, clients: map[*client]struct{}{}}
}

// run follows the announcements until ctx ends.
func (h *hub) run(ctx context.Context, nc *nats.Conn) error {
	ch := make(chan *nats.Msg, 4096)
	sub, err := nc.ChanSubscribe(bus.DeltaSubject(h.tenant), ch)
	if err != nil {
		return fmt.Errorf("subscribe deltas: %w", err)
	}
	defer sub.Unsubscribe()
	// Start from what is committed now; clients get older history from
	// their snapshot.
	for ctx.Err() == nil {
		v, err := h.currentVersion(ctx)
		if err == nil {
			h.mu.Lock()
			h.version = v
			h.mu.Unlock()
			break
		}
		h.log.Warn("reading view version", "err", err)
		time.Sleep(time.Second)
	}
	poll := time.NewTicker(500 * time.Millisecond)
	defer poll.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case m := <-ch:
			d := &pb.Delta{}
			if err := proto.Unmarshal(m.Data, d); err != nil || d.Tenant != h.tenant {
				h.log.Warn("bad delta announcement ignored", "err", err)
				continue
			}
			h.offer(ctx, d)
		case <-poll.C:
			// A lost announcement with nothing after it is found here.
			if v, err := h.currentVersion(ctx); err == nil && v > h.lastVersion() {
				h.catchUp(ctx, v)
			}
		}
	}
}

func (h *hub) lastVersion() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.version
}

func (h *hub) currentVersion(ctx context.Context) (uint64, error) {
	var v int64
	err := store.InTenant(ctx, h.pool, h.tenant, pgx.TxOptions{AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `SELECT version FROM projector_position WHERE tenant=$1`, h.tenant).Scan(&v)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		return err
	})
	return uint64(v), err
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
		err := store.InTenant(ctx, h.pool, h.tenant, pgx.TxOptions{AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) (err error) {
			ds, ok, err = store.ReadDeltas(ctx, tx, h.tenant, last, upto, 500)
			return err
		})
		if err != nil {
			h.log.Warn("catching up deltas", "err", err)
			return
		}
		if !ok || len(ds) == 0 {
			// Pruned or never stored: clients cannot be brought forward
			// delta by delta; make them reload a snapshot.
			h.log.Warn("delta history gap, clients resync", "after", last, "upto", upto)
			h.resetClients(upto)
			return
		}
		for _, d := range ds {
			h.broadcast(d)
		}
	}
}

func (h *hub) broadcast(d *pb.Delta) {
	body, err := jsonOpts.Marshal(d)
	if err != nil {
		h.log.Error("encode delta", "err", err)
		return
	}
	f := frame{version: d.Version, data: envelope("delta", body)}
	h.mu.Lock()
	defer h.mu.Unlock()
	if d.Version != h.version+1 {
		return
	}
	h.version = d.Version
	if d.Rebuilt {
		// The projection was rebuilt: what clients hold does not continue
		// into it; each reconnects and reads a fresh snapshot.
		h.kickAll("projection rebuilt")
		return
	}
	for c := range h.clients {
		select {
		case c.send <- f:
		default:
			// A client that cannot keep up is cut off rather than allowed
			// to slow everyone else; it reconnects and gets a snapshot.
			h.drops++
			delete(h.clients, c)
			c.kick("too slow")
		}
	}
}

func (h *hub) resetClients(version uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.version = version
	h.kickAll("history gap")
}

// kickAll disconnects every client; each reconnects and reads a snapshot.
// The caller holds h.mu.
func (h *hub) kickAll(reason string) {
	for c := range h.clients {
		delete(h.clients, c)
		c.kick(reason)
	}
}

// register adds a client; it receives every delta after the hub's current
// version, which is never newer than the snapshot it reads next.
func (h *hub) register(c *client) {
	h.mu.Lock()
	h.clients[c] = struct{}{}
	h.mu.Unlock()
}

func (h *hub) unregister(c *client) {
	h.mu.Lock()
	delete(h.clients, c)
	h.mu.Unlock()
}

// snapshot reads the tenant's views and their version in one consistent read.
func (h *hub) snapshot(ctx context.Context) (frame, error) {
	var snap *pb.Snapshot
	err := store.InTenant(ctx, h.pool, h.tenant, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) (err error) {
		snap, _, err = store.ReadSnapshot(ctx, tx, h.tenant)
		return err
	})
	if err != nil {
		return frame{}, fmt.Errorf("snapshot: %w", err)
	}
	body, err := jsonOpts.Marshal(snap)
	if err != nil {
		return frame{}, fmt.Errorf("encode snapshot: %w", err)
	}
	return frame{version: snap.Version, data: envelope("snapshot", body)}, nil
}

func envelope(typ string, body []byte) []byte {
	out := make([]byte, 0, len(body)+32)
	out = append(out, `{"type":"`...)
	out = append(out, typ...)
	out = append(out, `","data":`...)
	out = append(out, body...)
	return append(out, '}')
}
