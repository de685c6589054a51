package collector

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/pbxpulse/pbxpulse/pkg/ami"
	"github.com/pbxpulse/pbxpulse/pkg/bus"
	pb "github.com/pbxpulse/pbxpulse/pkg/pbxpulsev1"
	"github.com/pbxpulse/pbxpulse/pkg/service"
	"github.com/pbxpulse/pbxpulse/pkg/testenv"
	"github.com/pbxpulse/pbxpulse/services/collector/internal/normalize"
)

const fixtures = "../../../../testdata/asterisk/22.10.1/ami"

// capturedEvents is the captured events session without banner and without
// the Login response, repeated until it holds at least n messages.
func capturedEvents(tb testing.TB, n int) ([]byte, int) {
	raw, err := os.ReadFile(filepath.Join(fixtures, "ami-events.in.raw"))
	if err != nil {
		tb.Fatal(err)
	}
	body := raw[bytes.IndexByte(raw, '\n')+1:]
	body = body[bytes.Index(body, []byte("\r\n\r\n"))+4:] // the Login response
	per := bytes.Count(body, []byte("\r\n\r\n"))
	reps := (n + per - 1) / per
	return bytes.Repeat(body, reps), per * reps
}

// amiSource is a loopback PBX that accepts the login and then sends data:
// the bytes of a real Asterisk session, as fast as the reader takes them.
func amiSource(tb testing.TB, data []byte) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.Write([]byte("Asterisk Call Manager/11.0.0\r\n"))
				r := ami.NewReader(bufio.NewReader(c))
				login, err := r.ReadMessage()
				if err != nil {
					return
				}
				fmt.Fprintf(c, "Response: Success\r\nActionID: %s\r\nMessage: Authentication accepted\r\n\r\n", login.Field("ActionID"))
				c.Write(data)
				time.Sleep(time.Minute)
			}()
		}
	}()
	return ln.Addr().String()
}

// BenchmarkPipeline measures events per second from one AMI connection
// through parse, normalize and acknowledged JetStream publish, against a raw
// JetStream async publish (with message ids) of as many messages of the same
// mean size into the same server, in the same run. See docs/benchmarks.md.
func BenchmarkPipeline(b *testing.B) {
	const msgs = 100_000
	// As the collector does at start, but without its soft memory limit:
	// here the embedded NATS server shares the heap, which in production
	// it does not.
	service.TuneGC(slog.New(slog.DiscardHandler), 200, 26<<20)
	data, total := capturedEvents(b, msgs)
	srv := testenv.NATS(b)
	log := slog.New(slog.DiscardHandler)
	nc, js, err := bus.Open(context.Background(), srv.ClientURL(), "bench", "bench", log)
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	addr := amiSource(b, data)
	// Runs alternate, and the median of the pairs' ratios is reported:
	// a noisy neighbour then spoils one pair, not the figure.
	var pipes, raws, ratios []float64
	for b.Loop() {
		events, size, elapsed := runPipeline(b, nc, addr, total, log)
		pipe := float64(events) / elapsed.Seconds()
		raw := rawPublish(b, nc, js, events, size)
		pipes, raws, ratios = append(pipes, pipe), append(raws, raw), append(ratios, pipe/raw)
	}
	b.ReportMetric(median(pipes), "events/s")
	b.ReportMetric(median(raws), "raw_msgs/s")
	b.ReportMetric(median(ratios), "ratio")
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

func runPipeline(b *testing.B, nc *nats.Conn, addr string, total int, log *slog.Logger) (events, meanSize int, elapsed time.Duration) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out, err := bus.NewOutbox(nc, bus.OutboxConfig{Capacity: total + 10}, log)
	if err != nil {
		b.Fatal(err)
	}
	go out.Run(ctx)
	s := &session{pbx: PBX{ID: "pbx1"}, tenant: "bench", out: out, log: log, metrics: newMetrics(),
		env: envelope{tenant: "bench", pbx: "pbx1", source: pb.Source_SOURCE_AMI, sessionID: "bench"}}
	st := &state{channels: newChannelTracker(), objects: newObjectTracker()}
	start := time.Now()
	conn, err := ami.Dial(ctx, addr, "monitor", "x", ami.Options{Events: true})
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	var bytes, sampled int
	for read := 0; read < total; read++ {
		ev := <-conn.Events()
		e := normalize.Event(ev.Msg)
		if e == nil {
			continue
		}
		st.channels.observe(ev.Seq, e)
		st.objects.observe(ev.Seq, e)
		if err := s.publish(e); err != nil {
			b.Fatal(err)
		}
		if events%64 == 0 { // sample the size; measuring every event would slow the pipeline
			bytes += proto.Size(e)
			sampled++
		}
		events++
	}
	if err := out.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	if out.Published() != uint64(events) {
		b.Fatalf("published %d of %d", out.Published(), events)
	}
	return events, bytes / sampled, time.Since(start)
}

// rawPublish is the baseline: async publishes with ids, all acked.
func rawPublish(b *testing.B, nc *nats.Conn, js jetstream.JetStream, n, size int) float64 {
	ajs, _ := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(1024))
	payload := bytes.Repeat([]byte("x"), size)
	start := time.Now()
	for i := range n {
		if _, err := ajs.PublishAsync("pbx.bench.raw.evt.call.raw", payload, jetstream.WithMsgID(fmt.Sprintf("raw-%d-%d", start.UnixNano(), i))); err != nil {
			b.Fatal(err)
		}
	}
	select {
	case <-ajs.PublishAsyncComplete():
	case <-time.After(time.Minute):
		b.Fatal("raw publish did not complete")
	}
	return float64(n) / time.Since(start).Seconds()
}
