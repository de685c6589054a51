package bus

import (
	"context"
	"log/slog"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/pbxpulse/pbxpulse/pkg/natsserver"
	pb "github.com/pbxpulse/pbxpulse/pkg/pbxpulsev1"
	"github.com/pbxpulse/pbxpulse/pkg/testenv"
)

// restartable is an embedded NATS server that can be stopped and started
// again on the same port with the same store.
type restartable struct {
	t    *testing.T
	dir  string
	port int
	s    *server.Server
}

func startNATS(t *testing.T) *restartable {
	r := &restartable{t: t, dir: t.TempDir(), port: -1}
	r.start()
	r.port = r.s.Addr().(*net.TCPAddr).Port
	t.Cleanup(func() { r.s.Shutdown() })
	return r
}

func (r *restartable) start() {
	s, err := natsserver.Start("127.0.0.1", r.port, r.dir)
	if err != nil {
		r.t.Fatal(err)
	}
	r.s = s
}

func (r *restartable) stop() { r.s.Shutdown(); r.s.WaitForShutdown() }

func testEvent(seq int) *pb.Event {
	return &pb.Event{
		Id: "ev-" + strconv.Itoa(seq), Tenant: "acme", PbxId: "pbx1", SessionSeq: uint64(seq),
		Payload: &pb.Event_DeviceState{DeviceState: &pb.DeviceState{Device: "PJSIP/1001", State: "NOT_INUSE"}},
	}
}

func openOutbox(t *testing.T, url string, cfg OutboxConfig) (*nats.Conn, *Outbox) {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	nc, _, err := Open(t.Context(), url, "outbox-test", "acme", log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	o, err := NewOutbox(nc, cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); o.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return nc, o
}

// storedSeqs reads the events stream back in stream order.
func storedSeqs(t *testing.T, nc *nats.Conn) []uint64 {
	t.Helper()
	js, _ := jetstream.New(nc)
	st, err := js.Stream(t.Context(), EventStream("acme"))
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var out []uint64
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := st.GetMsg(t.Context(), seq)
		if err != nil {
			t.Fatalf("get %d: %v", seq, err)
		}
		var ev pb.Event
		if err := proto.Unmarshal(m.Data, &ev); err != nil {
			t.Fatal(err)
		}
		out = append(out, ev.SessionSeq)
	}
	return out
}

func checkInOrder(t *testing.T, got []uint64, n int) {
	t.Helper()
	if len(got) != n {
		t.Fatalf("stored %d events, want %d", len(got), n)
	}
	for i, s := range got {
		if s != uint64(i+1) {
			t.Fatalf("stream position %d holds event %d, want %d", i+1, s, i+1)
		}
	}
}

func TestOutboxKeepsOrderAcrossNATSRestart(t *testing.T) {
	srv := startNATS(t)
	nc, o := openOutbox(t, srv.s.ClientURL(), OutboxConfig{Capacity: 50_000, AckTimeout: time.Second})
	const before, during, after = 8000, 3000, 4000
	seq := 0
	enqueue := func(n int) {
		for range n {
			seq++
			if ok, err := o.Enqueue(testEvent(seq)); !ok || err != nil {
				t.Fatalf("enqueue %d: %v %v", seq, ok, err)
			}
		}
	}
	enqueue(before)
	srv.stop()
	enqueue(during) // held while NATS is away
	time.Sleep(300 * time.Millisecond)
	srv.start()
	enqueue(after)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	if err := o.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	checkInOrder(t, storedSeqs(t, nc), before+during+after)
	if o.Dropped() != 0 || o.Overflowed() {
		t.Fatalf("dropped %d events", o.Dropped())
	}
}

func TestOutboxOverflowIsCountedAndReported(t *testing.T) {
	srv := startNATS(t)
	nc, o := openOutbox(t, srv.s.ClientURL(), OutboxConfig{Capacity: 200, Window: 16, AckTimeout: 500 * time.Millisecond})
	srv.stop()
	accepted, refused := 0, 0
	for i := 1; i <= 1000; i++ {
		ok, err := o.Enqueue(testEvent(accepted + 1))
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			accepted++
		} else {
			refused++
		}
	}
	if refused == 0 || !o.Overflowed() || o.Dropped() != uint64(refused) {
		t.Fatalf("refused %d, overflowed %v, dropped %d", refused, o.Overflowed(), o.Dropped())
	}
	srv.start()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	if err := o.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	// Everything accepted is stored, in order; nothing refused is.
	checkInOrder(t, storedSeqs(t, nc), accepted)
	o.ClearOverflow()
	if o.Overflowed() {
		t.Fatal("overflow not cleared")
	}
}

func TestOutboxRejectsPayloadlessEvent(t *testing.T) {
	s := testenv.NATS(t)
	_, o := openOutbox(t, s.ClientURL(), OutboxConfig{})
	if ok, err := o.Enqueue(&pb.Event{Id: "x"}); ok || err == nil {
		t.Fatalf("got %v %v", ok, err)
	}
	if o.Len() != 0 {
		t.Fatalf("pending %d", o.Len())
	}
}

// NATS restarts while the outbox is quiet, with acks still outstanding:
// nothing sent on the new connection may overtake what died with the old.
func TestOutboxKeepsOrderAcrossQuietRestart(t *testing.T) {
	srv := startNATS(t)
	nc, o := openOutbox(t, srv.s.ClientURL(), OutboxConfig{Capacity: 50_000, AckTimeout: time.Second})
	seq := 0
	for round := 0; round < 3; round++ {
		for range 3000 {
			seq++
			if ok, err := o.Enqueue(testEvent(seq)); !ok || err != nil {
				t.Fatalf("enqueue %d: %v %v", seq, ok, err)
			}
		}
		srv.stop()
		srv.start()
		time.Sleep(200 * time.Millisecond) // the client reconnects before the next events
	}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	if err := o.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	checkInOrder(t, storedSeqs(t, nc), seq)
}
