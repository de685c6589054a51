package logtailer

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/pbxpulse/pbxpulse/pkg/bus"
	"github.com/pbxpulse/pbxpulse/pkg/natsserver"
	pb "github.com/pbxpulse/pbxpulse/pkg/pbxpulsev1"
	"github.com/pbxpulse/pbxpulse/pkg/testenv"
	"github.com/pbxpulse/pbxpulse/services/logtailer/internal/logline"
)

// capture is the module's copy of the real Asterisk 22 full log.
const capture = "../../testdata/asterisk/22.10.1/logs/full"

// securityLog holds the capture's security events as res_security_log
// writes them (see testdata/README.md).
const securityLog = "../../testdata/security/ami-events-22.10.1.log"

const tenant = "t1"

func readLines(t testing.TB, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func appendFile(t testing.TB, path, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// expected joins text the way the tailer must.
func expected(t *testing.T, text string) []logline.Entry[int] {
	t.Helper()
	j := logline.NewJoiner[int](logline.NewParser(time.UTC))
	var out []logline.Entry[int]
	for i, l := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		if e, ok := j.Add(l, i); ok {
			out = append(out, e)
		}
	}
	if e, ok := j.Flush(); ok {
		out = append(out, e)
	}
	return out
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

// proc is a tailer running in the test.
type proc struct {
	r    atomic.Pointer[runner]
	stop func()
}

// published is the number of entries JetStream acknowledged.
func (p *proc) published() uint64 {
	if r := p.r.Load(); r != nil {
		return r.published.Load()
	}
	return 0
}

// follower returns the follower of path, or nil.
func (p *proc) follower(path string) *follower {
	r := p.r.Load()
	if r == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, f := range r.followers {
		if f.tl.Path() == path {
			return f
		}
	}
	return nil
}

// start runs the tailer until the returned proc's stop is called.
func start(t *testing.T, cfg Config) *proc {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	p := &proc{}
	go func() {
		done <- run(ctx, cfg, log, func(r *runner) {
			r.rescan = 50 * time.Millisecond
			p.r.Store(r)
		})
	}()
	stopped := false
	p.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Fatal("Run did not stop")
		}
	}
	t.Cleanup(p.stop)
	return p
}

func testConfig(url, dir string) Config {
	return Config{
		NATSURL: url, Tenant: tenant, PBXID: "pbx1",
		LogFiles:          filepath.Join(dir, "full*") + ", " + filepath.Join(dir, "messages"),
		StateDir:          filepath.Join(dir, "state"),
		StartAt:           "beginning",
		TimeZone:          "UTC",
		Poll:              20 * time.Millisecond,
		CommitEvery:       256,
		MaxMessageBytes:   65536,
		LogStreamMaxBytes: 64 << 20,
		LogStreamMaxAge:   time.Hour,
	}
}

func connect(t *testing.T, url string) jetstream.JetStream {
	t.Helper()
	_, js := testenv.JetStream(t, url)
	return js
}

// entry is one log entry as found in the stream, with its message's
// subject and envelope.
type entry struct {
	subject string
	ev      *pb.Event // the message's envelope (shared by the batch)
	batch   *pb.LogBatch
	line    *pb.LogLine
}

func (e entry) key() string {
	return fmt.Sprintf("%s|%s|%d", e.batch.GetFile(), e.batch.GetFileId(), e.line.GetOffset())
}

// logContents is what a tenant's log stream holds.
type logContents struct {
	msgs    int
	entries []entry
	stats   []*pb.Event
}

// readLogs reads the whole log stream of the tenant.
func readLogs(t *testing.T, js jetstream.JetStream) logContents {
	t.Helper()
	c, err := tryReadLogs(t, js)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func tryReadLogs(t *testing.T, js jetstream.JetStream) (logContents, error) {
	t.Helper()
	var out logContents
	msgs, err := tryReadStream(js, bus.LogStream(tenant))
	if err != nil {
		return out, err
	}
	for _, m := range msgs {
		out.msgs++
		switch p := m.ev.GetPayload().(type) {
		case *pb.Event_LogBatch:
			for _, l := range p.LogBatch.GetLines() {
				out.entries = append(out.entries, entry{subject: m.subject, ev: m.ev, batch: p.LogBatch, line: l})
			}
		case *pb.Event_LogStats:
			out.stats = append(out.stats, m.ev)
		default:
			t.Fatalf("unexpected message on %s: %v", m.subject, m.ev)
		}
	}
	return out, nil
}

type stored struct {
	subject string
	ev      *pb.Event
}

// readStream reads a whole stream with an ordered consumer.
func readStream(t *testing.T, js jetstream.JetStream, stream string) []stored {
	t.Helper()
	out, err := tryReadStream(js, stream)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func tryReadStream(js jetstream.JetStream, stream string) ([]stored, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, stream)
	if err != nil {
		return nil, err
	}
	info, err := st.Info(ctx)
	if err != nil {
		return nil, err
	}
	want := int(info.State.Msgs)
	if want == 0 {
		return nil, nil
	}
	cons, err := st.CreateConsumer(ctx, jetstream.ConsumerConfig{AckPolicy: jetstream.AckNonePolicy, MemoryStorage: true, InactiveThreshold: time.Minute})
	if err != nil {
		return nil, err
	}
	defer st.DeleteConsumer(context.Background(), cons.CachedInfo().Name)
	var out []stored
	for len(out) < want {
		batch, err := cons.Fetch(min(500, want-len(out)), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return nil, err
		}
		for m := range batch.Messages() {
			var ev pb.Event
			if err := proto.Unmarshal(m.Data(), &ev); err != nil {
				return nil, err
			}
			out = append(out, stored{m.Subject(), &ev})
		}
		if err := batch.Error(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// waitEntries waits until the log stream holds want entries.
func waitEntries(t *testing.T, js jetstream.JetStream, want int) logContents {
	t.Helper()
	var c logContents
	testenv.Eventually(t, 60*time.Second, func() error {
		var err error
		if c, err = tryReadLogs(t, js); err != nil {
			return err
		}
		if len(c.entries) != want {
			return fmt.Errorf("log stream holds %d entries, want %d", len(c.entries), want)
		}
		return nil
	})
	return c
}

// check compares the stream's entries with the expected ones, in order.
func check(t *testing.T, got []entry, want []logline.Entry[int]) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("stream holds %d entries, want %d", len(got), len(want))
	}
	ids, keys := map[string]*pb.LogBatch{}, map[string]bool{}
	for i, e := range got {
		ll, w := e.line, want[i]
		if ll.GetMessage() != w.Message || e.batch.GetLevel() != w.Level || ll.GetCallId() != w.CallID || ll.GetThreadId() != w.ThreadID ||
			ll.GetSourceFile() != w.SourceFile || ll.GetLines() != uint32(w.Lines) || ll.GetTruncated() != w.Truncated {
			t.Fatalf("entry %d:\n got %v (level %q)\nwant %+v", i, ll, e.batch.GetLevel(), w.Line)
		}
		if e.subject != "pbx."+tenant+".pbx1.log."+bus.LevelToken(w.Level) {
			t.Fatalf("entry %d on subject %s", i, e.subject)
		}
		ev := e.ev
		if ev.GetTenant() != tenant || ev.GetPbxId() != "pbx1" || ev.GetSource() != pb.Source_SOURCE_LOG || ev.GetReceivedTime() == nil || ev.GetPbxTime() == nil {
			t.Fatalf("entry %d envelope %v", i, ev)
		}
		if w.HasTime() != (ll.GetPbxTime() != nil) || w.HasTime() && !ll.GetPbxTime().AsTime().Equal(w.Time) {
			t.Fatalf("entry %d pbx time %v, want %v", i, ll.GetPbxTime(), w.Time)
		}
		if b, seen := ids[ev.GetId()]; seen && b != e.batch {
			t.Fatalf("entry %d: message id %s seen twice", i, ev.GetId())
		}
		ids[ev.GetId()] = e.batch
		if keys[e.key()] {
			t.Fatalf("entry %d: key %s seen twice", i, e.key())
		}
		keys[e.key()] = true
	}
}

// restartable is an embedded NATS server that can be stopped and started
// again on the same port with the same store.
type restartable struct {
	t    *testing.T
	dir  string
	port int
	s    *server.Server
}

func startNATS(t *testing.T, port int) *restartable {
	r := &restartable{t: t, dir: t.TempDir(), port: port}
	r.start()
	t.Cleanup(func() { r.s.Shutdown() })
	return r
}

func (r *restartable) start() {
	r.t.Helper()
	s, err := natsserver.Start("127.0.0.1", r.port, r.dir)
	if err != nil {
		r.t.Fatal(err)
	}
	r.s = s
	r.port = s.Addr().(*net.TCPAddr).Port
}

func (r *restartable) url() string { return fmt.Sprintf("nats://127.0.0.1:%d", r.port) }

// freePort returns a port nothing listens on (yet).
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
