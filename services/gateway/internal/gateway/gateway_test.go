package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/pbxpulse/pbxpulse/pkg/bus"
	pb "github.com/pbxpulse/pbxpulse/pkg/pbxpulsev1"
	"github.com/pbxpulse/pbxpulse/pkg/store"
	"github.com/pbxpulse/pbxpulse/pkg/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

type env struct {
	addr string
	dsn  string
	nc   *nats.Conn
}

func startGateway(t *testing.T, token string) env {
	t.Helper()
	ns := testenv.NATS(t)
	dsn := testenv.Postgres(t)
	ctx, cancel := context.WithCancel(context.Background())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{NATSURL: ns.ClientURL(), DatabaseURL: dsn, Tenant: "acme", Tokens: "acme:admin:" + token, PathPrefix: "/monitor/",
		SendBuffer: 1024, WriteTimeout: 5 * time.Second, PingInterval: time.Second}
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	e := env{addr: ln.Addr().String(), dsn: dsn, nc: nc}
	testenv.Eventually(t, 20*time.Second, func() error {
		resp, err := http.Get("http://" + e.addr + "/monitor/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("readyz %d", resp.StatusCode)
		}
		return nil
	})
	return e
}

// commit stores delta v as the projector does; announce decides whether
// its NATS announcement is "lost".
func commit(t *testing.T, conn *pgx.Conn, nc *nats.Conn, v uint64, announce bool) {
	t.Helper()
	d := &pb.Delta{Tenant: "acme", Version: v, CommittedAt: timestamppb.Now(), Changes: []*pb.Change{{Row: &pb.Change_Call{Call: &pb.CallView{
		PbxId: "pbx1", Linkedid: strconv.FormatUint(v%7, 10), CallerNum: "0800" + strconv.FormatUint(v, 10), State: "up"}}}}}
	b := &pgx.Batch{}
	store.QueueEnterTenant(b, "acme")
	b.Queue(`INSERT INTO projector_position (tenant, gen, stream_seq, version) VALUES ('acme', 1, 0, 0) ON CONFLICT DO NOTHING`)
	if _, err := store.QueueDelta(b, d, store.Position{Gen: 1, StreamSeq: v}); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := pgx.BeginTxFunc(ctx, conn, pgx.TxOptions{}, func(tx pgx.Tx) error { return tx.SendBatch(ctx, b).Close() }); err != nil {
		t.Error(err)
		return
	}
	if announce {
		data, _ := proto.Marshal(d)
		_ = nc.Publish(bus.DeltaSubject("acme"), data)
	}
}

type msg struct {
	Type string `json:"type"`
	Data struct {
		Version string `json:"version"`
	} `json:"data"`
	Message string `json:"message"`
}

// TestNoGapNoDuplicate connects clients while deltas are being committed,
// with every third announcement lost: each client must get a snapshot and
// then every later version exactly once, in order.
func TestNoGapNoDuplicate(t *testing.T) {
	e := startGateway(t, "s3cret-acme-token-0")
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, e.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	const total = 300
	var wg sync.WaitGroup
	start := make(chan struct{})
	for c := 0; c < 5; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			<-start
			time.Sleep(time.Duration(c*40) * time.Millisecond)
			cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			ws, _, err := websocket.Dial(cctx, "ws://"+e.addr+"/monitor/ws?token=s3cret-acme-token-0", nil)
			if err != nil {
				t.Errorf("client %d: %v", c, err)
				return
			}
			defer ws.CloseNow()
			ws.SetReadLimit(1 << 20)
			var version uint64
			for first := true; version < total; first = false {
				_, data, err := ws.Read(cctx)
				if err != nil {
					t.Errorf("client %d at version %d: %v", c, version, err)
					return
				}
				var m msg
				if err := json.Unmarshal(data, &m); err != nil {
					t.Errorf("client %d: %v", c, err)
					return
				}
				v, _ := strconv.ParseUint(m.Data.Version, 10, 64)
				switch {
				case first && m.Type != "snapshot":
					t.Errorf("client %d: first message %q", c, m.Type)
					return
				case !first && (m.Type != "delta" || v != version+1):
					t.Errorf("client %d: %s %d after %d", c, m.Type, v, version)
					return
				}
				version = v
			}
		}(c)
	}
	close(start)
	for v := uint64(1); v <= total; v++ {
		commit(t, conn, e.nc, v, v%3 != 0)
		if v%10 == 0 {
			time.Sleep(5 * time.Millisecond)
		}
	}
	wg.Wait()
}

func TestAuthAndMalformedMessages(t *testing.T) {
	e := startGateway(t, "s3cret-acme-token-0")
	for _, u := range []string{"/monitor/ws", "/monitor/api/v1/snapshot", "/monitor/ws?token=wrong"} {
		resp, err := http.Get("http://" + e.addr + u)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s without a valid token: %d", u, resp.StatusCode)
		}
	}
	resp, err := http.Get("http://" + e.addr + "/monitor/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Security-Policy") == "" {
		t.Errorf("panel: %d, CSP %q", resp.StatusCode, resp.Header.Get("Content-Security-Policy"))
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws://"+e.addr+"/monitor/ws", &websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer s3cret-acme-token-0"}}})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	ws.SetReadLimit(1 << 20)
	read := func() msg {
		_, data, err := ws.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var m msg
		_ = json.Unmarshal(data, &m)
		return m
	}
	if m := read(); m.Type != "snapshot" {
		t.Fatalf("first message %q", m.Type)
	}
	for _, bad := range []string{"not json", `{"no":"type"}`, `{"type":"explode"}`} {
		if err := ws.Write(ctx, websocket.MessageText, []byte(bad)); err != nil {
			t.Fatal(err)
		}
		if m := read(); m.Type != "error" || m.Message == "" {
			t.Fatalf("%q answered with %+v", bad, m)
		}
	}
	if err := ws.Write(ctx, websocket.MessageText, []byte(`{"type":"requestUpdate"}`)); err != nil {
		t.Fatal(err)
	}
	if m := read(); m.Type != "snapshot" {
		t.Fatalf("requestUpdate answered with %q", m.Type)
	}
}
