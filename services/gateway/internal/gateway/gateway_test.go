package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caarlos0/env/v11"
	"github.com/coder/websocket"
	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/pbxpulse/pbxpulse/pkg/bus"
	pb "github.com/pbxpulse/pbxpulse/pkg/pbxpulsev1"
	"github.com/pbxpulse/pbxpulse/pkg/store"
	"github.com/pbxpulse/pbxpulse/pkg/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// Static tokens of the WebSocket tests.
const (
	tokAcme     = "s3cret-acme-token-0" // acme, admin
	tokAcmeView = "s3cret-acme-viewer-0"
	tokBeta     = "s3cret-beta-token-0" // beta, viewer
	tokGamma    = "s3cret-gamma-token-0"
)

// testGateway is a gateway on real NATS and Postgres.
type testGateway struct {
	addr   string // host:port
	dsn    string
	nc     *nats.Conn
	js     jetstream.JetStream
	stop   func() // stops the gateway (also at cleanup)
	stopCh chan error
}

// startGateway starts a gateway with the service's defaults, tenants acme,
// beta and gamma's tokens, prefix /monitor/, /metrics with the panel
// (METRICS_ADDR=panel), and vars on top.
func startGateway(t *testing.T, vars map[string]string) *testGateway {
	t.Helper()
	ns := testenv.NATS(t)
	dsn := testenv.Postgres(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	all := map[string]string{"NATS_URL": ns.ClientURL(), "DATABASE_URL": dsn, "TENANT": "acme", "PATH_PREFIX": "/monitor/", "METRICS_ADDR": "panel",
		"GATEWAY_TOKENS": "acme:admin:" + tokAcme + ",acme:viewer:" + tokAcmeView + ",beta:viewer:" + tokBeta + ",gamma:viewer:" + tokGamma}
	maps.Copy(all, vars)
	var cfg Config
	if err := env.ParseWithOptions(&cfg, env.Options{Environment: all}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	g := &testGateway{addr: ln.Addr().String(), dsn: dsn, stopCh: make(chan error, 1)}
	go func() { g.stopCh <- Serve(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), ln) }()
	var once sync.Once
	g.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-g.stopCh; err != nil {
				t.Error(err)
			}
		})
	}
	t.Cleanup(g.stop)
	if g.nc, err = nats.Connect(ns.ClientURL()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.nc.Close)
	if g.js, err = jetstream.New(g.nc); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 20*time.Second, func() error {
		resp, err := http.Get(g.url("readyz"))
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("readyz %d", resp.StatusCode)
		}
		return nil
	})
	return g
}

func (g *testGateway) url(path string) string { return "http://" + g.addr + "/monitor/" + path }

// get does an HTTP GET with a bearer token ("" for none).
func (g *testGateway) get(t *testing.T, path, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", g.url(path), nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// metric returns the value of one sample of /metrics, such as
// `pbxpulse_gateway_disconnects_total{reason="too_slow"}`.
func (g *testGateway) metric(t *testing.T, sample string) float64 {
	t.Helper()
	_, body := g.get(t, "metrics", "")
	for _, l := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(l, sample+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return 0
}

// delta builds a delta of tenant at version v with one call whose caller
// name is name.
func delta(tenant string, v uint64, name string) *pb.Delta {
	return &pb.Delta{Tenant: tenant, Version: v, CommittedAt: timestamppb.Now(), Changes: []*pb.Change{{Row: &pb.Change_Call{Call: &pb.CallView{
		PbxId: "pbx1", Linkedid: strconv.FormatUint(v%7, 10), CallerNum: "0800" + strconv.FormatUint(v, 10), CallerName: name, State: "up"}}}}}
}

// commitDelta stores d as the projector does; announce publishes it too
// (false: its announcement is "lost").
func (g *testGateway) commitDelta(t *testing.T, d *pb.Delta, announce bool) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, g.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	commitOn(t, conn, g.nc, d, announce)
}

func commitOn(t *testing.T, conn *pgx.Conn, nc *nats.Conn, d *pb.Delta, announce bool) {
	t.Helper()
	ctx := context.Background()
	b := &pgx.Batch{}
	store.QueueEnterTenant(b, d.Tenant)
	b.Queue(`INSERT INTO projector_position (tenant, gen, stream_seq, version) VALUES ($1, 1, 0, 0) ON CONFLICT DO NOTHING`, d.Tenant)
	if _, err := store.QueueDelta(b, d, store.Position{Gen: 1, StreamSeq: d.Version}); err != nil {
		t.Fatal(err)
	}
	if err := pgx.BeginTxFunc(ctx, conn, pgx.TxOptions{}, func(tx pgx.Tx) error { return tx.SendBatch(ctx, b).Close() }); err != nil {
		t.Errorf("commit %d: %v", d.Version, err)
		return
	}
	if announce {
		data, _ := proto.Marshal(d)
		if err := nc.Publish(bus.DeltaSubject(d.Tenant), data); err != nil {
			t.Error(err)
		}
	}
}

// wsClient is a test WebSocket client that keeps every frame it read.
type wsClient struct {
	t   *testing.T
	c   *websocket.Conn
	ctx context.Context
	raw [][]byte
}

// srvMsg is any server message.
type srvMsg struct {
	Type    string          `json:"type"`
	ID      string          `json:"id"`
	Code    string          `json:"code"`
	Message string          `json:"message"`
	Backlog bool            `json:"backlog"`
	Data    json.RawMessage `json:"data"`
}

// version is the data.version of a snapshot, delta or resumed message.
func (m srvMsg) version() uint64 {
	var d struct {
		Version string `json:"version"`
	}
	_ = json.Unmarshal(m.Data, &d)
	v, _ := strconv.ParseUint(d.Version, 10, 64)
	return v
}

func (g *testGateway) dial(t *testing.T, token, query string) *wsClient {
	t.Helper()
	c, err := g.tryDial(t, token, query, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (g *testGateway) tryDial(t *testing.T, token, query string, opts *websocket.DialOptions) (*wsClient, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	if opts == nil {
		opts = &websocket.DialOptions{}
	}
	if token != "" {
		opts.Subprotocols = append(opts.Subprotocols, wsProtocol, wsBearerPrefix+token)
	}
	c, _, err := websocket.Dial(ctx, "ws://"+g.addr+"/monitor/ws"+query, opts)
	if err != nil {
		return nil, err
	}
	c.SetReadLimit(16 << 20)
	t.Cleanup(func() { c.CloseNow() })
	return &wsClient{t: t, c: c, ctx: ctx}, nil
}

func (w *wsClient) next() srvMsg {
	w.t.Helper()
	m, err := w.read()
	if err != nil {
		w.t.Fatal(err)
	}
	return m
}

func (w *wsClient) read() (srvMsg, error) {
	typ, data, err := w.c.Read(w.ctx)
	if err != nil {
		return srvMsg{}, err
	}
	w.raw = append(w.raw, data)
	var m srvMsg
	if typ != websocket.MessageText {
		return m, fmt.Errorf("binary message")
	}
	if err := json.Unmarshal(data, &m); err != nil {
		return m, fmt.Errorf("%q: %w", data, err)
	}
	return m, nil
}

// nextOf reads until a message of type typ (and id, when not empty).
func (w *wsClient) nextOf(typ, id string) srvMsg {
	w.t.Helper()
	for {
		if m := w.next(); m.Type == typ && (id == "" || m.ID == id) {
			return m
		}
	}
}

func (w *wsClient) send(v any) {
	w.t.Helper()
	b, ok := v.([]byte)
	if s, isString := v.(string); isString {
		b, ok = []byte(s), true
	}
	if !ok {
		b, _ = json.Marshal(v)
	}
	if err := w.c.Write(w.ctx, websocket.MessageText, b); err != nil {
		w.t.Fatal(err)
	}
}

// closeStatus reads until the connection ends and returns its close code.
func (w *wsClient) closeStatus() websocket.StatusCode {
	for {
		if _, err := w.read(); err != nil {
			return websocket.CloseStatus(err)
		}
	}
}

// TestNoGapNoDuplicate connects clients while deltas are being committed,
// with every third announcement lost: each client must get a snapshot and
// then every later version exactly once, in order.
func TestNoGapNoDuplicate(t *testing.T) {
	g := startGateway(t, nil)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, g.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	const total = 300
	var wg sync.WaitGroup
	start := make(chan struct{})
	for c := range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			time.Sleep(time.Duration(c*40) * time.Millisecond) // spread the joins over the commits
			ws, err := g.tryDial(t, tokAcme, "", nil)
			if err != nil {
				t.Errorf("client %d: %v", c, err)
				return
			}
			var version uint64
			for first := true; version < total; first = false {
				m, err := ws.read()
				if err != nil {
					t.Errorf("client %d at version %d: %v", c, version, err)
					return
				}
				v := m.version()
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
		}()
	}
	close(start)
	for v := uint64(1); v <= total; v++ {
		commitOn(t, conn, g.nc, delta("acme", v, "x"), v%3 != 0)
		if v%10 == 0 {
			time.Sleep(5 * time.Millisecond)
		}
	}
	wg.Wait()
}
