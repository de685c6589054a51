package wsload

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/gobwas/ws"
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
		{name: "the last committed_at is the delta's", in: `{"type":"delta","data":{"tenant":"a","version":"7","changes":[{"x":"\"committed_at\""},{"committed_at":"2020-01-01T00:00:00Z"}],"committed_at":"2026-03-02T08:00:01Z"}}`,
			want: Frame{Type: "delta", Tenant: "a", Version: 7, CommittedAt: at.Truncate(time.Second)}},
		{name: "committed_at only time.Parse reads", in: `{"type":"delta","data":{"tenant":"a","version":"7","committed_at":"2026-03-02T8:00:01.5Z"}}`,
			want: Frame{Type: "delta", Tenant: "a", Version: 7, CommittedAt: at.Truncate(time.Second).Add(500 * time.Millisecond)}},
		{name: "committed_at with an offset", in: `{"type":"delta","data":{"tenant":"a","version":"7","committed_at":"2026-03-02T09:00:01+01:00"}}`,
			want: Frame{Type: "delta", Tenant: "a", Version: 7, CommittedAt: at.Truncate(time.Second)}},
		{name: "delta without committed_at", in: `{"type":"delta","data":{"tenant":"a","version":"7"}}`, want: Frame{Type: "delta", Tenant: "a", Version: 7}},
		{name: "snapshot", in: `{"type":"snapshot","data":{"tenant":"a","version":"9","calls":[{"linkedid":"1"}]}}`, want: Frame{Type: "snapshot", Tenant: "a", Version: 9}},
		{name: "empty snapshot has version 0", in: `{"type":"snapshot","data":{"tenant":"a"}}`, want: Frame{Type: "snapshot", Tenant: "a"}},
		{name: "other type", in: `{"type":"pong"}`, want: Frame{Type: "pong"}},
		{name: "no type", in: `{"data":{}}`, wantErr: true},
		{name: "delta without version", in: `{"type":"delta","data":{"tenant":"a"}}`, wantErr: true},
		{name: "bad version", in: `{"type":"delta","data":{"version":"x"}}`, wantErr: true},
		{name: "bad time", in: `{"type":"delta","data":{"version":"1","committed_at":"yesterday"}}`, wantErr: true},
		{name: "committed_at out of range", in: `{"type":"delta","data":{"version":"1","committed_at":"2026-02-30T08:00:01Z"}}`, wantErr: true},
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
	for _, raw := range []bool{false, true} {
		t.Run(map[bool]string{false: "baseline", true: "floor"}[raw], func(t *testing.T) {
			testBroadcastSwarm(t, raw)
		})
	}
}

func testBroadcastSwarm(t *testing.T, raw bool) {
	b := NewBroadcaster(BroadcastConfig{Groups: 3, Rate: 50, Raw: raw})
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
		if err := c.conn.write(ws.OpText, []byte(`{"type":"ping"}`)); err != nil {
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

// rawServer is a WebSocket server that writes the frames it is told to,
// protocol breaches included, to test the swarm's client. It answers the
// handshake by hand, with the first message in the same write, so that
// the client finds it in the handshake's read buffer.
type rawServer struct {
	*httptest.Server
	t        *testing.T
	cfg      rawConfig
	wg       sync.WaitGroup
	mu       sync.Mutex
	requests []http.Header // handshake requests received
}

type rawConfig struct {
	status   int    // answer this status instead of switching protocols
	protocol string // subprotocol to select
	first    []byte // frames of the first message
	// serve writes and reads frames after the first message; the server
	// then waits for the client to close the connection.
	serve func(p *rawPeer)
}

// rawPeer is the server end of a connection of a rawServer.
type rawPeer struct {
	t    *testing.T
	conn net.Conn
	br   *bufio.Reader
}

func newRawServer(t *testing.T, cfg rawConfig) *rawServer {
	t.Helper()
	rs := &rawServer{t: t, cfg: cfg}
	rs.Server = httptest.NewServer(http.HandlerFunc(rs.handle))
	t.Cleanup(func() {
		rs.Close()
		rs.wg.Wait()
	})
	return rs
}

func (rs *rawServer) url() string { return "ws" + strings.TrimPrefix(rs.URL, "http") + "/ws" }

// attempts is how many handshakes the server received.
func (rs *rawServer) attempts() int {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return len(rs.requests)
}

func (rs *rawServer) handle(w http.ResponseWriter, r *http.Request) {
	rs.wg.Add(1)
	defer rs.wg.Done()
	rs.mu.Lock()
	rs.requests = append(rs.requests, r.Header.Clone())
	rs.mu.Unlock()
	if rs.cfg.status != 0 {
		http.Error(w, http.StatusText(rs.cfg.status), rs.cfg.status)
		return
	}
	key := r.Header.Get("Sec-WebSocket-Key")
	if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") || key == "" {
		rs.t.Errorf("not a WebSocket handshake: %v", r.Header)
		http.Error(w, "want a WebSocket handshake", http.StatusBadRequest)
		return
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		rs.t.Error(err)
		return
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second)) // a broken test must not hang
	sum := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	answer := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " +
		base64.StdEncoding.EncodeToString(sum[:]) + "\r\n"
	if rs.cfg.protocol != "" {
		answer += "Sec-WebSocket-Protocol: " + rs.cfg.protocol + "\r\n"
	}
	if _, err := conn.Write(append([]byte(answer+"\r\n"), rs.cfg.first...)); err != nil {
		rs.t.Error(err)
		return
	}
	p := &rawPeer{t: rs.t, conn: conn, br: brw.Reader}
	if rs.cfg.serve != nil {
		rs.cfg.serve(p)
	}
	_, _ = io.Copy(io.Discard, p.br) // until the client closes
}

// send writes frames.
func (p *rawPeer) send(frames ...[]byte) {
	if _, err := p.conn.Write(bytes.Join(frames, nil)); err != nil {
		p.t.Errorf("server write: %v", err)
	}
}

// read reads a frame of the client, which must be final and masked, and
// returns its opcode and unmasked payload.
func (p *rawPeer) read() (ws.OpCode, []byte) {
	h, err := ws.ReadHeader(p.br)
	if err != nil {
		p.t.Errorf("reading the client's frame: %v", err)
		return 0, nil
	}
	if !h.Fin || !h.Masked {
		p.t.Errorf("client frame %+v: want final and masked", h)
	}
	b := make([]byte, h.Length)
	if _, err := io.ReadFull(p.br, b); err != nil {
		p.t.Errorf("reading the client's frame: %v", err)
	}
	ws.Cipher(b, h.Mask, 0)
	return h.OpCode, b
}

// expectClose reads the client's close frame and checks its status (1005:
// none).
func (p *rawPeer) expectClose(want ws.StatusCode) {
	op, b := p.read()
	code := ws.StatusNoStatusRcvd
	if len(b) > 0 {
		code, _ = ws.ParseCloseFrameData(b)
	}
	if op != ws.OpClose || code != want {
		p.t.Errorf("client sent %v %q, want a close with status %d", op, b, want)
	}
}

// frame encodes a server frame as told; a masked one is masked.
type frame struct {
	op     ws.OpCode
	more   bool // not final
	rsv    byte
	masked bool
	p      []byte
	length int64 // declared instead of len(p), with no payload, if set
}

func (f frame) bytes() []byte {
	h := ws.Header{Fin: !f.more, Rsv: f.rsv, OpCode: f.op, Masked: f.masked, Length: int64(len(f.p))}
	p := bytes.Clone(f.p)
	if f.length != 0 {
		h.Length, p = f.length, nil
	}
	if f.masked {
		h.Mask = [4]byte{0x12, 0x34, 0x56, 0x78}
		ws.Cipher(p, h.Mask, 0)
	}
	var b bytes.Buffer
	if err := ws.WriteHeader(&b, h); err != nil {
		panic(err)
	}
	b.Write(p)
	return b.Bytes()
}

// text is msg as one text frame.
func text(msg string) []byte { return frame{op: ws.OpText, p: []byte(msg)}.bytes() }

// fragments is msg as n frames: a text frame and continuations.
func fragments(msg string, n int) []byte {
	var out []byte
	size := (len(msg) + n - 1) / n
	for i := 0; i < n; i++ {
		f := frame{op: ws.OpContinuation, more: i < n-1, p: []byte(msg[min(i*size, len(msg)):min((i+1)*size, len(msg))])}
		if i == 0 {
			f.op = ws.OpText
		}
		out = append(out, f.bytes()...)
	}
	return out
}

// statusTryAgainLater is 1013, which the gateway sends a client too slow.
const statusTryAgainLater ws.StatusCode = 1013

func closeFrame(code ws.StatusCode, reason string) []byte {
	return frame{op: ws.OpClose, p: ws.NewCloseFrameBody(code, reason)}.bytes()
}

func snapshotMsg(tenant string, v uint64) string {
	return fmt.Sprintf(`{"type":"snapshot","data":{"tenant":%q,"version":"%d"}}`, tenant, v)
}

// bigSnapshot is a snapshot of size bytes or a little more.
func bigSnapshot(v uint64, size int) string {
	var b strings.Builder
	fmt.Fprintf(&b, `{"type":"snapshot","data":{"tenant":"t000","version":"%d","calls":[`, v)
	for i := 0; b.Len() < size; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"pbx_id":"pbx1","linkedid":"1772438400.%d","state":"up","caller_name":"Müller & Söhne <Sales>"}`, i)
	}
	b.WriteString("]}}")
	return b.String()
}

func deltaMsg(v uint64) string {
	return fmt.Sprintf(`{"type":"delta","data":{"tenant":"t000","version":"%d","changes":[],"committed_at":"%s"}}`,
		v, time.Now().UTC().Format(time.RFC3339Nano))
}

// TestSwarmClientFrames runs the swarm's client against a server that
// sends each case's frames after a snapshot of version 10, and checks what
// the swarm reports and what the client answers.
func TestSwarmClientFrames(t *testing.T) {
	big := bigSnapshot(10, 300<<10) // far more than the 4 KiB read buffer
	resync := bigSnapshot(11, 500<<10)
	d11, d12 := deltaMsg(11), deltaMsg(12)
	cases := []struct {
		name  string
		first []byte // the first message's frames (default: one small snapshot)
		serve func(p *rawPeer)
		final uint64
		want  Result // the counts compared, and Closes
		bytes int64  // bytes of messages after the first, if not 0
	}{
		{name: "one delta per frame", serve: func(p *rawPeer) { p.send(text(d11), text(d12)) }, final: 12,
			want: Result{Delivered: 2, Expected: 2}, bytes: int64(len(d11) + len(d12))},
		{name: "fragmented messages with a ping between fragments", first: fragments(snapshotMsg("t000", 10), 3),
			serve: func(p *rawPeer) {
				third := len(d11) / 3
				p.send(frame{op: ws.OpText, more: true, p: []byte(d11[:third])}.bytes(),
					frame{op: ws.OpPing, p: []byte("mid-message")}.bytes(),
					frame{op: ws.OpContinuation, more: true, p: []byte(d11[third : 2*third])}.bytes(),
					frame{op: ws.OpContinuation, p: []byte(d11[2*third:])}.bytes())
				if op, b := p.read(); op != ws.OpPong || string(b) != "mid-message" {
					p.t.Errorf("client answered %v %q, want a pong with the ping's payload", op, b)
				}
				p.send(fragments(d12, 2))
			}, final: 12, want: Result{Delivered: 2, Expected: 2}, bytes: int64(len(d11) + len(d12))},
		{name: "ping answered with a pong", serve: func(p *rawPeer) {
			p.send(frame{op: ws.OpPing, p: []byte("are you there")}.bytes())
			if op, b := p.read(); op != ws.OpPong || string(b) != "are you there" {
				p.t.Errorf("client answered %v %q, want a pong with the ping's payload", op, b)
			}
			p.send(frame{op: ws.OpPing}.bytes())
			if op, b := p.read(); op != ws.OpPong || len(b) != 0 {
				p.t.Errorf("client answered %v %q, want an empty pong", op, b)
			}
			p.send(frame{op: ws.OpPong, p: []byte("unasked")}.bytes(), text(d11))
		}, final: 11, want: Result{Delivered: 1, Expected: 1}},
		{name: "close with code and reason", serve: func(p *rawPeer) {
			p.send(text(d11), closeFrame(statusTryAgainLater, "too slow"))
			p.expectClose(statusTryAgainLater)
		}, final: 12, want: Result{Delivered: 1, Expected: 2, Missing: 1, Dropped: 1, Closes: map[string]int{"closed 1013 too slow": 1}}},
		{name: "close without a status", serve: func(p *rawPeer) {
			p.send(frame{op: ws.OpClose}.bytes())
			p.expectClose(ws.StatusNoStatusRcvd)
		}, final: 10, want: Result{Dropped: 1, Closes: map[string]int{"closed 1005 ": 1}}},
		{name: "close with a status not for the wire", serve: func(p *rawPeer) {
			p.send(closeFrame(ws.StatusAbnormalClosure, "not on the wire"))
			p.expectClose(ws.StatusProtocolError)
		}, final: 10, want: Result{Dropped: 1, Malformed: 1, Closes: map[string]int{"error: close status 1006 is not valid on the wire": 1}}},
		{name: "close payload of one byte", serve: func(p *rawPeer) {
			p.send(frame{op: ws.OpClose, p: []byte{3}}.bytes())
			p.expectClose(ws.StatusProtocolError)
		}, final: 10, want: Result{Dropped: 1, Malformed: 1, Closes: map[string]int{"error: close frame payload of 1 byte": 1}}},
		{name: "masked server frame", serve: func(p *rawPeer) {
			p.send(frame{op: ws.OpText, masked: true, p: []byte(d11)}.bytes(), text(d12))
			p.expectClose(ws.StatusProtocolError)
		}, final: 12, want: Result{Expected: 2, Missing: 2, Dropped: 1, Malformed: 1,
			Closes: map[string]int{"error: frames from server to client must be not masked": 1}}},
		{name: "reserved bit set", serve: func(p *rawPeer) {
			p.send(frame{op: ws.OpText, rsv: ws.Rsv(true, false, false), p: []byte(d11)}.bytes())
			p.expectClose(ws.StatusProtocolError)
		}, final: 11, want: Result{Expected: 1, Missing: 1, Dropped: 1, Malformed: 1,
			Closes: map[string]int{"error: non-zero rsv bits with no extension negotiated": 1}}},
		{name: "reserved opcode", serve: func(p *rawPeer) {
			p.send(frame{op: ws.OpCode(0x3), p: []byte(d11)}.bytes())
			p.expectClose(ws.StatusProtocolError)
		}, final: 10, want: Result{Dropped: 1, Malformed: 1, Closes: map[string]int{"error: use of reserved op code": 1}}},
		{name: "continuation without a first frame", serve: func(p *rawPeer) {
			p.send(frame{op: ws.OpContinuation, p: []byte(d11)}.bytes())
			p.expectClose(ws.StatusProtocolError)
		}, final: 10, want: Result{Dropped: 1, Malformed: 1, Closes: map[string]int{"error: unexpected continuation data frame": 1}}},
		{name: "new message inside a fragmented one", serve: func(p *rawPeer) {
			p.send(frame{op: ws.OpText, more: true, p: []byte(`{"type":`)}.bytes(), text(d11))
			p.expectClose(ws.StatusProtocolError)
		}, final: 10, want: Result{Dropped: 1, Malformed: 1, Closes: map[string]int{"error: unexpected non-continuation data frame": 1}}},
		{name: "fragmented ping", serve: func(p *rawPeer) {
			p.send(frame{op: ws.OpPing, more: true, p: []byte("x")}.bytes())
			p.expectClose(ws.StatusProtocolError)
		}, final: 10, want: Result{Dropped: 1, Malformed: 1, Closes: map[string]int{"error: control frame is not final": 1}}},
		{name: "message over the read limit", serve: func(p *rawPeer) {
			p.send(frame{op: ws.OpText, more: true, p: bytes.Repeat([]byte(" "), 1<<20)}.bytes(),
				frame{op: ws.OpContinuation, length: 15<<20 + 1}.bytes())
			p.expectClose(ws.StatusMessageTooBig)
		}, final: 10, want: Result{Dropped: 1, Closes: map[string]int{"error: message of more than 16777216 bytes (read limit)": 1}}},
		{name: "server gone without a close", serve: func(p *rawPeer) {
			p.send(text(d11), text(d12)[:10])
			p.conn.Close()
		}, final: 12, want: Result{Delivered: 1, Expected: 2, Missing: 1, Dropped: 1,
			Closes: map[string]int{"error: read frame payload: unexpected EOF": 1}}},
		{name: "snapshots bigger than the buffer", first: fragments(big, 3), serve: func(p *rawPeer) {
			p.send(text(resync), text(d12))
		}, final: 12, want: Result{Delivered: 1, Expected: 2, Missing: 1, Resyncs: 1}, bytes: int64(len(resync) + len(d12))},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			first := c.first
			if first == nil {
				first = text(snapshotMsg("t000", 10))
			}
			served := make(chan struct{})
			srv := newRawServer(t, rawConfig{first: first, serve: func(p *rawPeer) {
				defer close(served)
				if c.serve != nil {
					c.serve(p)
				}
			}})
			ctx := context.Background()
			s, err := Dial(ctx, SwarmConfig{Clients: 1, Groups: 1, Tenant: GroupName, Target: func(int) (string, http.Header) { return srv.url(), nil }})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			<-served
			final := func(int) uint64 { return c.final }
			if c.want.Dropped > 0 {
				waitFor(t, "the connection to end", func() bool { return s.dropped.Load() == c.want.Dropped })
			}
			s.WaitCaughtUp(ctx, final, 5*time.Second)
			r := s.Result(final)
			if r.Delivered != c.want.Delivered || r.Expected != c.want.Expected || r.Missing != c.want.Missing || r.Gaps != 0 || r.Dups != 0 ||
				r.Dropped != c.want.Dropped || r.Malformed != c.want.Malformed || r.Foreign != 0 || r.Resyncs != c.want.Resyncs {
				t.Errorf("result %+v, want %+v", r, c.want)
			}
			if !maps.Equal(r.Closes, c.want.Closes) && len(r.Closes)+len(c.want.Closes) > 0 {
				t.Errorf("closes %v, want %v", r.Closes, c.want.Closes)
			}
			if c.bytes != 0 && r.Bytes != c.bytes {
				t.Errorf("%d bytes of messages read, want %d", r.Bytes, c.bytes)
			}
			if n := s.Latency.Count(); n != r.Delivered {
				t.Errorf("%d latencies for %d deltas", n, r.Delivered)
			}
		})
	}
}

// TestSwarmDial checks the handshake's headers and what fails a Dial,
// retried or not.
func TestSwarmDial(t *testing.T) {
	cases := []struct {
		name     string
		cfg      rawConfig
		header   http.Header
		check    func(t *testing.T, h http.Header) // of the handshake request
		wantErr  string                            // in the error; "" for none
		attempts int
	}{
		{name: "bearer token in Authorization", header: http.Header{"Authorization": {"Bearer tok"}},
			check: func(t *testing.T, h http.Header) {
				if h.Get("Authorization") != "Bearer tok" || h.Get("Sec-WebSocket-Protocol") != "" {
					t.Errorf("handshake headers %v", h)
				}
			}, attempts: 1},
		{name: "bearer token as a subprotocol", cfg: rawConfig{protocol: "pbxpulse.v1"},
			header: http.Header{"Sec-WebSocket-Protocol": {"pbxpulse.v1, bearer.tok"}},
			check: func(t *testing.T, h http.Header) {
				if got := h.Values("Sec-WebSocket-Protocol"); len(got) != 1 || got[0] != "pbxpulse.v1, bearer.tok" {
					t.Errorf("Sec-WebSocket-Protocol %q, want the token offered", got)
				}
			}, attempts: 1},
		{name: "refused handshake is not retried", cfg: rawConfig{status: http.StatusUnauthorized},
			wantErr: "handshake: 401 Unauthorized", attempts: 1},
		{name: "first message not a snapshot", cfg: rawConfig{first: text(deltaMsg(1))},
			wantErr: `first message is "delta", want a snapshot`, attempts: 1},
		{name: "snapshot of another tenant", cfg: rawConfig{first: text(snapshotMsg("t001", 3))},
			wantErr: `a client of group 0 got the snapshot of tenant "t001"`, attempts: 1},
		{name: "masked snapshot is not retried", cfg: rawConfig{first: frame{op: ws.OpText, masked: true, p: []byte(snapshotMsg("t000", 1))}.bytes()},
			wantErr: "first message: frames from server to client must be not masked", attempts: 1},
		{name: "closed before the snapshot is retried", cfg: rawConfig{first: closeFrame(statusTryAgainLater, "views unavailable")},
			wantErr: "closed 1013 views unavailable", attempts: 5},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := c.cfg
			if cfg.first == nil && cfg.status == 0 {
				cfg.first = text(snapshotMsg("t000", 10))
			}
			srv := newRawServer(t, cfg)
			s, err := Dial(context.Background(), SwarmConfig{Clients: 1, Groups: 1, Tenant: GroupName,
				Target: func(int) (string, http.Header) { return srv.url(), c.header }})
			if err == nil {
				s.Close()
			}
			switch {
			case c.wantErr == "" && err != nil:
				t.Fatal(err)
			case c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)):
				t.Fatalf("err = %v, want %q", err, c.wantErr)
			}
			if n := srv.attempts(); n != c.attempts {
				t.Errorf("%d handshakes, want %d", n, c.attempts)
			}
			if c.check != nil {
				srv.mu.Lock()
				c.check(t, srv.requests[0])
				srv.mu.Unlock()
			}
		})
	}
}

// TestClientBuffers reads messages bigger than the client's read buffer,
// split over frames or not, and checks that a big message's buffer is
// dropped for the next one.
func TestClientBuffers(t *testing.T) {
	big := bigSnapshot(10, 300<<10)
	msgs := []struct {
		frames []byte
		want   string
	}{
		{text(snapshotMsg("t000", 9)), snapshotMsg("t000", 9)},
		{fragments(big, 4), big},
		{text(deltaMsg(11)), ""},
		{text(big), big},
		{fragments(deltaMsg(12), 2), ""},
	}
	var all [][]byte
	for _, m := range msgs {
		all = append(all, m.frames)
	}
	srv := newRawServer(t, rawConfig{first: bytes.Join(all, nil)})
	c, err := dialWS(context.Background(), srv.url(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.br.Size() != readBufferSize {
		t.Errorf("read buffer of %d bytes, want %d", c.br.Size(), readBufferSize)
	}
	for i, m := range msgs {
		if err := c.next(); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if m.want != "" && string(c.msg) != m.want {
			t.Fatalf("message %d: got %d bytes, want %d", i, len(c.msg), len(m.want))
		}
		if f, err := ParseFrame(c.msg); err != nil || f.Tenant != "t000" {
			t.Fatalf("message %d: %+v, %v", i, f, err)
		}
		if len(c.msg) < keepBuffer && cap(c.msg) > keepBuffer {
			t.Errorf("message %d of %d bytes read into a buffer of %d", i, len(c.msg), cap(c.msg))
		}
	}
}

// BenchmarkParseFrame is what a client spends on a delta once it has
// read it: the parse and the tenant check.
func BenchmarkParseFrame(b *testing.B) {
	delta, err := DeltaFrame(&pb.Delta{Tenant: "t042", Version: 123456, Changes: []*pb.Change{CallChange("t042", 123456)}, CommittedAt: timestamppb.Now()})
	if err != nil {
		b.Fatal(err)
	}
	s := &Swarm{cfg: SwarmConfig{Tenant: GroupName}}
	c := &client{group: 42, tenant: GroupName(42)}
	b.ReportAllocs()
	for b.Loop() {
		f, tenant, err := parseFrame(delta)
		if err != nil || s.isForeign(c, f, tenant) {
			b.Fatal(f, err)
		}
	}
}

// The client's reader allocates nothing per data message: the swarm
// measures the server, not its own garbage collector.
func TestClientReadsWithoutAllocating(t *testing.T) {
	delta, err := DeltaFrame(&pb.Delta{Tenant: "t000", Version: 7, Changes: []*pb.Change{CallChange("t000", 7)}, CommittedAt: timestamppb.Now()})
	if err != nil {
		t.Fatal(err)
	}
	// Reads that end inside headers and payloads.
	one := append(text(string(delta)), fragments(string(delta), 3)...)
	stream := bytes.Repeat(one, 10)
	var reads [][]byte
	for p := stream; len(p) > 0; {
		n := min(len(p), 701)
		reads = append(reads, p[:n])
		p = p[n:]
	}
	c := &wsConn{}
	s := &Swarm{cfg: SwarmConfig{Tenant: GroupName}}
	cl := &client{tenant: "t000"}
	msgs := 0
	allocs := testing.AllocsPerRun(20, func() {
		for _, p := range reads {
			for len(p) > 0 {
				rest, done, err := c.parse(p)
				if err != nil {
					t.Fatal(err)
				}
				if done {
					msgs++
					f, tenant, err := parseFrame(c.msg)
					if err != nil || s.isForeign(cl, f, tenant) || f.Version != 7 {
						t.Fatal(f, err)
					}
				}
				p = rest
			}
		}
	})
	if allocs != 0 {
		t.Fatalf("%.1f allocations per %d messages", allocs, 20)
	}
	if msgs != 21*20 { // AllocsPerRun runs once more to warm up
		t.Fatalf("%d messages parsed, want %d", msgs, 21*20)
	}
}

// socketRecorder is a socket that keeps what is written to it.
type socketRecorder struct {
	bytes.Buffer
	closed bool
}

func (r *socketRecorder) SetWriteDeadline(time.Time) error { return nil }
func (r *socketRecorder) Close() error                     { r.closed = true; return nil }

// parse finds what next finds in the same bytes, however reads split them:
// into two at every byte, or byte by byte.
func TestParseSplitReads(t *testing.T) {
	d1, d2 := deltaMsg(11), bigSnapshot(12, 70<<10) // a payload of 64 KiB+ has an 8-byte length
	frames := [][]byte{
		text(d1),
		frame{op: ws.OpText, more: true, p: []byte(d2[:100])}.bytes(),
		frame{op: ws.OpPing, p: []byte("between fragments")}.bytes(),
		frame{op: ws.OpContinuation, p: []byte(d2[100:])}.bytes(),
		frame{op: ws.OpPong}.bytes(),
		frame{op: ws.OpText}.bytes(), // empty
		fragments(d1, 4),
		closeFrame(statusTryAgainLater, "too slow"),
	}
	stream := bytes.Join(frames, nil)
	want := []string{d1, d2, "", d1}
	wantWritten := func(t *testing.T, w *socketRecorder) {
		t.Helper()
		p := &rawPeer{t: t, br: bufio.NewReader(bytes.NewReader(w.Bytes()))}
		if op, b := p.read(); op != ws.OpPong || string(b) != "between fragments" {
			t.Errorf("client answered %v %q, want a pong", op, b)
		}
		p.expectClose(statusTryAgainLater)
		if !w.closed {
			t.Error("connection not closed after the close frame")
		}
	}
	run := func(t *testing.T, reads [][]byte) {
		t.Helper()
		w := &socketRecorder{}
		c := &wsConn{w: w}
		var got []string
		var err error
	read:
		for _, p := range reads {
			for len(p) > 0 {
				var done bool
				if p, done, err = c.parse(p); err != nil {
					break read
				}
				if done {
					got = append(got, string(c.msg))
				}
			}
		}
		var ce *closeError
		if !errors.As(err, &ce) || ce.code != statusTryAgainLater || ce.reason != "too slow" {
			t.Fatalf("err = %v, want the close frame", err)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("got %d messages, want %d, or not the same", len(got), len(want))
		}
		wantWritten(t, w)
	}
	// Split at every byte near a frame's start (headers, control frames)
	// and here and there in the big payload.
	near := map[int]bool{}
	at := 0
	for _, f := range frames {
		for i := max(at-20, 0); i <= min(at+150, len(stream)); i++ {
			near[i] = true
		}
		at += len(f)
	}
	for i := range stream {
		if near[i] || i%1009 == 0 {
			run(t, [][]byte{stream[:i], stream[i:]})
		}
	}
	var bytewise [][]byte
	for i := range stream {
		bytewise = append(bytewise, stream[i:i+1])
	}
	run(t, bytewise)

	// next, through a bufio.Reader, agrees.
	w := &socketRecorder{}
	c := &wsConn{w: w, br: bufio.NewReader(bytes.NewReader(stream))}
	for i, m := range want {
		if err := c.next(); err != nil || string(c.msg) != m {
			t.Fatalf("next, message %d: %v", i, err)
		}
	}
	if err := c.next(); !errors.As(err, new(*closeError)) {
		t.Fatalf("next: %v, want the close frame", err)
	}
	wantWritten(t, w)
}

// A connection that ends inside a frame is reported as next reports it.
func TestParseEndsInsideAFrame(t *testing.T) {
	d := text(deltaMsg(11))
	cases := []struct {
		name string
		in   []byte
		want string
	}{
		{"between frames", d, "read frame header: EOF"},
		{"inside a header", append(bytes.Clone(d), d[:1]...), "read frame header: unexpected EOF"},
		{"inside a payload", append(bytes.Clone(d), d[:10]...), "read frame payload: unexpected EOF"},
		{"inside a ping", append(bytes.Clone(d), frame{op: ws.OpPing, p: []byte("abc")}.bytes()[:3]...), "read control frame payload: unexpected EOF"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := &wsConn{w: &socketRecorder{}}
			for p := tc.in; len(p) > 0; {
				var err error
				if p, _, err = c.parse(p); err != nil {
					t.Fatal(err)
				}
			}
			if got := c.readError(io.EOF).Error(); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
			old := &wsConn{w: &socketRecorder{}, br: bufio.NewReader(bytes.NewReader(tc.in))}
			if err := old.next(); err != nil {
				t.Fatal(err)
			}
			if got := old.next().Error(); got != tc.want {
				t.Errorf("next says %q, want %q", got, tc.want)
			}
		})
	}
}

// The readers serve many connections each, whose frames arrive in pieces
// (headers and control frames split) interleaved with the others'.
func TestSwarmReadsPartialFramesOfManyConnections(t *testing.T) {
	const deltas = 20
	clients := 12 * max(runtime.GOMAXPROCS(0), 2) // 12 per reader on Linux
	srv := newRawServer(t, rawConfig{first: text(snapshotMsg("t000", 10)), serve: func(p *rawPeer) {
		for v := uint64(11); v < 11+deltas; v++ {
			f := text(deltaMsg(v))
			if v%5 == 0 {
				f = append(frame{op: ws.OpPing, p: []byte(fmt.Sprint(v))}.bytes(), f...)
			}
			// Three pieces: the first ends inside the first frame's header.
			for _, piece := range [][]byte{f[:1], f[1 : len(f)/2], f[len(f)/2:]} {
				p.send(piece)
				time.Sleep(2 * time.Millisecond)
			}
			if v%5 == 0 {
				if op, b := p.read(); op != ws.OpPong || string(b) != fmt.Sprint(v) {
					p.t.Errorf("client answered %v %q, want a pong %d", op, b, v)
				}
			}
		}
	}})
	ctx := context.Background()
	s, err := Dial(ctx, SwarmConfig{Clients: clients, Groups: 1, Tenant: GroupName, Target: func(int) (string, http.Header) { return srv.url(), nil }})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	final := func(int) uint64 { return 10 + deltas }
	s.WaitCaughtUp(ctx, final, 10*time.Second)
	r := s.Result(final)
	if r.Delivered != int64(clients*deltas) || r.Missing != 0 || r.Gaps != 0 || r.Dups != 0 || r.Dropped != 0 || r.Malformed != 0 || r.Resyncs != 0 {
		t.Fatalf("result %+v, want %d deltas delivered, nothing else", r, clients*deltas)
	}
}
