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
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/pbxpulse/pbxpulse/pkg/bus"
	"github.com/pbxpulse/pbxpulse/pkg/natsserver"
	pb "github.com/pbxpulse/pbxpulse/pkg/pbxpulsev1"
	"github.com/pbxpulse/pbxpulse/pkg/testenv"
	"github.com/pbxpulse/pbxpulse/services/logtailer/internal/logline"
)

const capture = "../../../../testdata/asterisk/22.10.1/logs/full"

// a multi-line message, as res_pjsip_logger writes them
const sipEntry = `[2026-11-21 19:09:45.100] VERBOSE[5930][C-00000009] res_pjsip_logger.c: <--- Received SIP request (412 bytes) from UDP:127.0.0.1:5061 --->
INVITE sip:1002@127.0.0.1:5060 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1
Call-ID: 1-5930@127.0.0.1

`

func readLines(t *testing.T, path string) []string {
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

func appendFile(t *testing.T, path, s string) {
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

// start runs the tailer until the returned stop is called.
func start(t *testing.T, cfg Config) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	go func() { done <- Run(ctx, cfg, log) }()
	stopped := false
	stop = func() {
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
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not stop")
		}
	}
	t.Cleanup(stop)
	return stop
}

func testConfig(url, dir string) Config {
	return Config{
		NATSURL: url, Tenant: "t1", PBXID: "pbx1",
		LogFiles:        filepath.Join(dir, "full*") + ", " + filepath.Join(dir, "messages"),
		StateDir:        filepath.Join(dir, "state"),
		StartAt:         "beginning",
		TimeZone:        "UTC",
		Poll:            20 * time.Millisecond,
		CommitEvery:     256,
		MaxMessageBytes: 65536,
	}
}

type stored struct {
	subject string
	ev      *pb.Event
}

// readStream reads the whole PBX_LOGS stream with an ordered consumer.
func readStream(t *testing.T, js jetstream.JetStream) []stored {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, bus.StreamLogs)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := int(info.State.Msgs)
	cons, err := js.OrderedConsumer(ctx, bus.StreamLogs, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	var out []stored
	for len(out) < want {
		batch, err := cons.Fetch(500, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		for m := range batch.Messages() {
			var ev pb.Event
			if err := proto.Unmarshal(m.Data(), &ev); err != nil {
				t.Fatal(err)
			}
			out = append(out, stored{m.Subject(), &ev})
		}
		if err := batch.Error(); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func streamCount(js jetstream.JetStream) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, bus.StreamLogs)
	if err != nil {
		return 0, err
	}
	info, err := st.Info(ctx)
	if err != nil {
		return 0, err
	}
	return int(info.State.Msgs), nil
}

func waitCount(t *testing.T, js jetstream.JetStream, want int) {
	t.Helper()
	testenv.Eventually(t, 60*time.Second, func() error {
		n, err := streamCount(js)
		if err != nil {
			return err
		}
		if n != want {
			return fmt.Errorf("stream holds %d messages, want %d", n, want)
		}
		return nil
	})
}

// check compares the stream's events with the expected entries, in order.
func check(t *testing.T, got []stored, want []logline.Entry[int]) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("stream holds %d events, want %d", len(got), len(want))
	}
	ids := map[string]bool{}
	for i, s := range got {
		ev, w := s.ev, want[i]
		ll := ev.GetLogLine()
		if ll == nil {
			t.Fatalf("event %d has no LogLine: %v", i, ev)
		}
		if ll.GetMessage() != w.Message || ll.GetLevel() != w.Level || ll.GetCallId() != w.CallID || ll.GetThreadId() != w.ThreadID || ll.GetSourceFile() != w.SourceFile {
			t.Fatalf("event %d:\n got %v\nwant %+v", i, ll, w.Line)
		}
		level := strings.ToLower(w.Level)
		if level == "" {
			level = "unknown"
		}
		if s.subject != "pbx.t1.pbx1.log."+level {
			t.Fatalf("event %d on subject %s", i, s.subject)
		}
		if ev.GetTenant() != "t1" || ev.GetPbxId() != "pbx1" || ev.GetSource() != pb.Source_SOURCE_LOG || ev.GetReceivedTime() == nil {
			t.Fatalf("event %d envelope %v", i, ev)
		}
		if w.HasTime() && !ev.GetPbxTime().AsTime().Equal(w.Time) {
			t.Fatalf("event %d pbx time %v, want %v", i, ev.GetPbxTime().AsTime(), w.Time)
		}
		u, err := uuid.Parse(ev.GetId())
		if err != nil || u.Version() != 7 {
			t.Fatalf("event %d id %q is not a UUIDv7", i, ev.GetId())
		}
		if ids[ev.GetId()] {
			t.Fatalf("event %d: id %s seen twice", i, ev.GetId())
		}
		ids[ev.GetId()] = true
	}
}

func TestTailToJetStream(t *testing.T) {
	srv := testenv.NATS(t)
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	full := filepath.Join(dir, "full")
	text := strings.Join(readLines(t, capture), "\n") + "\n" + sipEntry
	appendFile(t, full, text)
	want := expected(t, text)
	if len(want) != 2818+1 {
		t.Fatalf("expected %d entries", len(want))
	}

	cfg := testConfig(srv.ClientURL(), dir)
	stop := start(t, cfg)
	waitCount(t, js, len(want))
	got := readStream(t, js)
	check(t, got, want)

	// a few things looked at closely
	levels, callIDs := map[string]int{}, map[string]int{}
	for _, s := range got {
		levels[s.ev.GetLogLine().GetLevel()]++
		if c := s.ev.GetLogLine().GetCallId(); c != "" {
			callIDs[c]++
		}
	}
	if levels["VERBOSE"] != 997+1 || levels["DEBUG"] != 1812 || levels["NOTICE"] != 7 || levels["WARNING"] != 1 || levels[""] != 1 {
		t.Errorf("levels %v", levels)
	}
	if callIDs["C-00000001"] == 0 || callIDs["C-00000009"] != 1 || len(callIDs) < 2 {
		t.Errorf("call ids %v", callIDs)
	}
	last := got[len(got)-1].ev
	if !strings.Contains(last.GetLogLine().GetMessage(), "\nCall-ID: 1-5930@127.0.0.1") || last.GetLogLine().GetSourceFile() != "res_pjsip_logger.c" {
		t.Errorf("multi-line entry: %v", last.GetLogLine())
	}
	var noop *pb.Event
	for _, s := range got {
		if strings.HasPrefix(s.ev.GetLogLine().GetMessage(), "Executing [1002@internal:1] NoOp(") {
			noop = s.ev
			break
		}
	}
	if noop == nil || noop.GetRefs().GetChannel() != "PJSIP/1001-00000000" || noop.GetRefs().GetEndpoint() != "1001" {
		t.Errorf("NoOp line refs: %v", noop)
	}
	stop()

	// restart: new lines, a rotated copy that must not be followed on its
	// own, and no line published twice
	more := ""
	for i := range 10 {
		more += fmt.Sprintf("[2026-11-21 19:10:%02d.000] NOTICE[6000][C-0000000a] chan_pjsip.c: line %d after the restart on PJSIP/1003-0000000a\n", i, i)
	}
	appendFile(t, full, more)
	appendFile(t, filepath.Join(dir, "full.1"), "[2026-11-20 00:00:00.000] NOTICE[1] x.c: rotated, not to be published\n")
	start(t, cfg)
	want = expected(t, text+more)
	waitCount(t, js, len(want))
	time.Sleep(300 * time.Millisecond) // nothing more comes
	got = readStream(t, js)
	check(t, got, want)
	if r := got[len(got)-1].ev.GetRefs(); r.GetEndpoint() != "1003" {
		t.Errorf("refs %v", r)
	}
}

// TestLostStateIsDeduplicated: if the saved position is lost (or the tailer
// died between the ack and the save), the entries read again carry the same
// ids and JetStream stores them once.
func TestLostStateIsDeduplicated(t *testing.T) {
	srv := testenv.NATS(t)
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	dir := t.TempDir()
	lines := readLines(t, capture)[1500:1600]
	appendFile(t, filepath.Join(dir, "full"), strings.Join(lines, "\n")+"\n")
	cfg := testConfig(srv.ClientURL(), dir)
	stop := start(t, cfg)
	waitCount(t, js, 100)
	stop()
	if err := os.RemoveAll(cfg.StateDir); err != nil {
		t.Fatal(err)
	}
	stop = start(t, cfg)
	testenv.Eventually(t, 30*time.Second, func() error { // the position is saved again once all was re-published
		if entries, _ := os.ReadDir(cfg.StateDir); len(entries) == 0 {
			return fmt.Errorf("no state yet")
		}
		return nil
	})
	stop()
	if n, err := streamCount(js); err != nil || n != 100 {
		t.Fatalf("stream holds %d messages (%v), want 100", n, err)
	}
}

// TestWaitsForNATS: with NATS away nothing is committed; the lines wait on
// disk and are all published once it comes.
func TestWaitsForNATS(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()

	dir := t.TempDir()
	lines := readLines(t, capture)[1510:1560]
	appendFile(t, filepath.Join(dir, "full"), strings.Join(lines, "\n")+"\n")
	cfg := testConfig(fmt.Sprintf("nats://127.0.0.1:%d", port), dir)
	start(t, cfg)
	time.Sleep(time.Second)
	if entries, _ := os.ReadDir(cfg.StateDir); len(entries) != 0 {
		t.Fatalf("a position was saved while NATS was away: %v", entries)
	}

	srv, err := natsserver.Start("127.0.0.1", port, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	waitCount(t, js, 50)
	check(t, readStream(t, js), expected(t, strings.Join(lines, "\n")+"\n"))
}

func TestValidate(t *testing.T) {
	good := testConfig("nats://x", t.TempDir())
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mut := range map[string]func(*Config){
		"pbx id":   func(c *Config) { c.PBXID = "a.b" },
		"tenant":   func(c *Config) { c.Tenant = "" },
		"files":    func(c *Config) { c.LogFiles = " , " },
		"glob":     func(c *Config) { c.LogFiles = "/var/log/[" },
		"start at": func(c *Config) { c.StartAt = "middle" },
		"tz":       func(c *Config) { c.TimeZone = "Mars/Olympus" },
		"poll":     func(c *Config) { c.Poll = 0 },
	} {
		c := good
		mut(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestRotationOf(t *testing.T) {
	for _, tc := range []struct {
		p, q string
		want bool
	}{
		{"/l/full.1", "/l/full", true},
		{"/l/full.1.gz", "/l/full", true},
		{"/l/full-20261121", "/l/full", true},
		{"/l/full_debug", "/l/full", false},
		{"/l/full.log", "/l/full", false},
		{"/l/full", "/l/full", false},
	} {
		if got := rotationOf(tc.p, tc.q); got != tc.want {
			t.Errorf("rotationOf(%s, %s) = %v", tc.p, tc.q, got)
		}
	}
}
