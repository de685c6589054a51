package logtailer

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/pbxpulse/pbxpulse/pkg/bus"
	"github.com/pbxpulse/pbxpulse/pkg/logstats"
	pb "github.com/pbxpulse/pbxpulse/pkg/pbxpulsev1"
	"github.com/pbxpulse/pbxpulse/pkg/testenv"
	"github.com/pbxpulse/pbxpulse/services/logtailer/internal/logline"
)

// a multi-line message, as res_pjsip_logger writes them
const sipEntry = `[2026-11-21 19:09:45.100] VERBOSE[5930][C-00000009] res_pjsip_logger.c: <--- Received SIP request (412 bytes) from UDP:127.0.0.1:5061 --->
INVITE sip:1002@127.0.0.1:5060 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1
Call-ID: 1-5930@127.0.0.1

`

func TestTailToJetStream(t *testing.T) {
	srv := testenv.NATS(t)
	js := connect(t, srv.ClientURL())
	dir := t.TempDir()
	full := filepath.Join(dir, "full")
	text := strings.Join(readLines(t, capture), "\n") + "\n" + sipEntry
	appendFile(t, full, text)
	want := expected(t, text)
	if len(want) != 2818+1 {
		t.Fatalf("expected %d entries", len(want))
	}

	cfg := testConfig(srv.ClientURL(), dir)
	p := start(t, cfg)
	got := waitEntries(t, js, len(want))
	check(t, got.entries, want)
	if got.msgs-len(got.stats) >= len(want)/4 {
		t.Errorf("%d entries took %d messages: not batched", len(want), got.msgs-len(got.stats))
	}

	// a few things looked at closely
	levels, callIDs := map[string]int{}, map[string]int{}
	for _, e := range got.entries {
		levels[e.batch.GetLevel()]++
		if c := e.line.GetCallId(); c != "" {
			callIDs[c]++
		}
		if e.batch.GetFile() != full || e.line.GetFile() != "" || e.line.GetLevel() != "" {
			t.Fatalf("file %q / %q, level %q", e.batch.GetFile(), e.line.GetFile(), e.line.GetLevel())
		}
		if _, err := uuid.Parse(e.ev.GetId()); err != nil {
			t.Fatalf("message id %q", e.ev.GetId())
		}
	}
	if levels["VERBOSE"] != 997+1 || levels["DEBUG"] != 1812 || levels["NOTICE"] != 7 || levels["WARNING"] != 1 || levels[""] != 1 {
		t.Errorf("levels %v", levels)
	}
	if callIDs["C-00000001"] == 0 || callIDs["C-00000009"] != 1 || len(callIDs) < 2 {
		t.Errorf("call ids %v", callIDs)
	}
	last := got.entries[len(got.entries)-1].line
	if !strings.Contains(last.GetMessage(), "\nCall-ID: 1-5930@127.0.0.1") || last.GetSourceFile() != "res_pjsip_logger.c" || last.GetLines() != 5 {
		t.Errorf("multi-line entry: %v", last)
	}
	var noop *pb.LogLine
	for _, e := range got.entries {
		if strings.HasPrefix(e.line.GetMessage(), "Executing [1002@internal:1] NoOp(") {
			noop = e.line
			break
		}
	}
	if noop == nil || noop.GetRefs().GetChannel() != "PJSIP/1001-00000000" || noop.GetRefs().GetEndpoint() != "1001" {
		t.Errorf("NoOp line refs: %v", noop)
	}
	p.stop()

	// restart: new lines, a rotated copy that must not be followed on its
	// own, and no line published twice
	more := ""
	for i := range 10 {
		more += fmt.Sprintf("[2026-11-21 19:10:%02d.000] NOTICE[6000][C-0000000a] chan_pjsip.c: line %d after the restart on PJSIP/1003-0000000a\n", i, i)
	}
	appendFile(t, full, more)
	appendFile(t, filepath.Join(dir, "full.1"), "[2026-11-20 00:00:00.000] NOTICE[1] x.c: rotated, not to be published\n")
	p = start(t, cfg)
	want = expected(t, text+more)
	testenv.Eventually(t, 30*time.Second, func() error { // everything read was published and saved
		if f := p.follower(full); f == nil || f.savedOffset.Load() != int64(len(text+more)) {
			return fmt.Errorf("position not saved at the end yet")
		}
		return nil
	})
	got = readLogs(t, js)
	check(t, got.entries, want)
	if r := got.entries[len(got.entries)-1].line.GetRefs(); r.GetEndpoint() != "1003" {
		t.Errorf("refs %v", r)
	}
}

// TestLostStateIsDeduplicated: if the saved position is lost (or the tailer
// died between the ack and the save), the batches read again carry the same
// ids and JetStream stores them once.
func TestLostStateIsDeduplicated(t *testing.T) {
	srv := testenv.NATS(t)
	js := connect(t, srv.ClientURL())
	dir := t.TempDir()
	lines := readLines(t, capture)[1500:1600]
	appendFile(t, filepath.Join(dir, "full"), strings.Join(lines, "\n")+"\n")
	cfg := testConfig(srv.ClientURL(), dir)
	p := start(t, cfg)
	waitEntries(t, js, 100)
	p.stop()
	first := readLogs(t, js)
	if err := os.RemoveAll(cfg.StateDir); err != nil {
		t.Fatal(err)
	}
	p = start(t, cfg)
	testenv.Eventually(t, 30*time.Second, func() error { // all published again and saved
		if f := p.follower(filepath.Join(dir, "full")); f == nil || f.savedOffset.Load() != int64(len(strings.Join(lines, "\n"))+1) {
			return fmt.Errorf("position not saved at the end yet")
		}
		return nil
	})
	p.stop()
	again := readLogs(t, js)
	if again.msgs != first.msgs || len(again.entries) != 100 {
		t.Fatalf("stream holds %d messages, %d entries; want %d, 100", again.msgs, len(again.entries), first.msgs)
	}
}

// TestWaitsForNATS: with NATS away nothing is saved; the lines wait on disk
// and are all published once it comes.
func TestWaitsForNATS(t *testing.T) {
	port := freePort(t)
	dir := t.TempDir()
	lines := readLines(t, capture)[1510:1560]
	appendFile(t, filepath.Join(dir, "full"), strings.Join(lines, "\n")+"\n")
	cfg := testConfig(fmt.Sprintf("nats://127.0.0.1:%d", port), dir)
	start(t, cfg)
	time.Sleep(time.Second) // what must not happen would happen in this time
	if entries, _ := os.ReadDir(cfg.StateDir); len(entries) != 0 {
		t.Fatalf("a position was saved while NATS was away: %v", entries)
	}
	srv := startNATS(t, port)
	js := connect(t, srv.url())
	check(t, waitEntries(t, js, 50).entries, expected(t, strings.Join(lines, "\n")+"\n"))
}

// TestBackPressure: when NATS goes away mid-file the tailer stops reading
// a few MiB past what was acknowledged, saves nothing beyond it, and once
// NATS is back publishes everything exactly once.
func TestBackPressure(t *testing.T) {
	srv := startNATS(t, -1)
	js := connect(t, srv.url())
	dir := t.TempDir()
	full := filepath.Join(dir, "full")
	capLines := readLines(t, capture)
	initial := strings.Join(capLines[:100], "\n") + "\n"
	appendFile(t, full, initial)
	cfg := testConfig(srv.url(), dir)
	p := start(t, cfg)
	waitEntries(t, js, 100)
	testenv.Eventually(t, 10*time.Second, func() error {
		if f := p.follower(full); f == nil || f.savedOffset.Load() != int64(len(initial)) {
			return fmt.Errorf("not saved at the end yet")
		}
		return nil
	})
	f := p.follower(full)
	saved := f.savedOffset.Load()

	srv.s.Shutdown()
	srv.s.WaitForShutdown()
	// far more than the tailer may hold: 40 copies of the capture (~11 MB)
	var b strings.Builder
	body := strings.Join(capLines, "\n") + "\n"
	for range 40 {
		b.WriteString(body)
	}
	appendFile(t, full, b.String())
	size := int64(len(initial) + b.Len())

	testenv.Eventually(t, 30*time.Second, func() error {
		if !f.pipe.stalled.Load() {
			return fmt.Errorf("publishing has not stalled yet")
		}
		return nil
	})
	// stalled: not reading any more, far from the end of the file
	read := f.readOffset.Load()
	if ahead := read - saved; ahead > maxInFlightBytes+2*maxBatchBytes+2<<20 {
		t.Errorf("read %d bytes past the saved position while NATS was away", ahead)
	}
	if read >= size {
		t.Errorf("read %d of %d bytes while NATS was away", read, size)
	}
	if f.savedOffset.Load() != saved {
		t.Errorf("position saved while NATS was away: %d, was %d", f.savedOffset.Load(), saved)
	}

	srv.start()
	want := 100 + 40*2818
	testenv.Eventually(t, 60*time.Second, func() error {
		if f.savedOffset.Load() != size {
			return fmt.Errorf("saved %d of %d bytes", f.savedOffset.Load(), size)
		}
		return nil
	})
	got := readLogs(t, js)
	keys := map[string]bool{}
	for _, e := range got.entries {
		keys[e.key()] = true
	}
	if len(got.entries) != want || len(keys) != want {
		t.Errorf("stream holds %d entries (%d distinct), want %d", len(got.entries), len(keys), want)
	}
}

// TestRestartMidFile: stopped in the middle of a large file and started
// again, the tailer publishes every entry exactly once.
func TestRestartMidFile(t *testing.T) {
	srv := testenv.NATS(t)
	js := connect(t, srv.ClientURL())
	dir := t.TempDir()
	full := filepath.Join(dir, "full")
	capLines := readLines(t, capture)
	body := strings.Join(capLines, "\n") + "\n"
	appendFile(t, full, strings.Repeat(body, 8))
	want := 8 * len(capLines)
	cfg := testConfig(srv.ClientURL(), dir)
	saved := int64(0)
	for run := 1; ; run++ {
		p := start(t, cfg)
		f := func() *follower {
			var f *follower
			testenv.Eventually(t, 10*time.Second, func() error {
				if f = p.follower(full); f == nil {
					return fmt.Errorf("not following yet")
				}
				return nil
			})
			return f
		}()
		testenv.Eventually(t, 30*time.Second, func() error { // some way further, or the end
			if read := f.readOffset.Load(); read < saved+300<<10 && f.savedOffset.Load() < int64(len(body)*8) {
				return fmt.Errorf("read up to %d", read)
			}
			return nil
		})
		p.stop()
		if s := f.savedOffset.Load(); s <= saved {
			t.Fatalf("run %d saved %d, the run before %d", run, s, saved)
		}
		saved = f.savedOffset.Load()
		if saved == int64(len(body)*8) {
			t.Logf("%d runs", run)
			break
		}

	}
	got := readLogs(t, js)
	keys := map[string]bool{}
	for _, e := range got.entries {
		keys[e.key()] = true
	}
	if len(got.entries) != want || len(keys) != want {
		t.Errorf("stream holds %d entries (%d distinct), want %d", len(got.entries), len(keys), want)
	}
}

// TestRotation follows a file through each kind of rotation: every entry
// is published once, in order.
func TestRotation(t *testing.T) {
	lines := func(from, n int) string {
		var b strings.Builder
		for i := from; i < from+n; i++ {
			fmt.Fprintf(&b, "[2026-11-21 19:10:%02d.%03d] NOTICE[6000] chan_pjsip.c: line %d\n", i/1000%60, i%1000, i)
		}
		return b.String()
	}
	cases := []struct {
		name   string
		rotate func(t *testing.T, path string)
	}{
		{"rename (logrotate or logger rotate)", func(t *testing.T, path string) {
			if err := os.Rename(path, path+".1"); err != nil {
				t.Fatal(err)
			}
		}},
		{"copy and truncate", func(t *testing.T, path string) {
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path+".1", b, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(path, 0); err != nil {
				t.Fatal(err)
			}
		}},
		{"delete and re-create", func(t *testing.T, path string) {
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := testenv.NATS(t)
			js := connect(t, srv.ClientURL())
			dir := t.TempDir()
			full := filepath.Join(dir, "full")
			appendFile(t, full, lines(0, 30))
			start(t, testConfig(srv.ClientURL(), dir))
			waitEntries(t, js, 30)
			tc.rotate(t, full)
			appendFile(t, full, lines(30, 20))
			got := waitEntries(t, js, 50)
			check(t, got.entries, expected(t, lines(0, 50)))
		})
	}
}

// TestOddFiles: globs, files that appear later, a partial last line,
// invalid UTF-8 and lines longer than any cap.
func TestOddFiles(t *testing.T) {
	srv := testenv.NATS(t)
	js := connect(t, srv.ClientURL())
	dir := t.TempDir()
	cfg := testConfig(srv.ClientURL(), dir)
	cfg.LogFiles = filepath.Join(dir, "*.log") + "," + filepath.Join(dir, "later", "pjsip")
	cfg.MaxMessageBytes = 1024
	a, pjsip := filepath.Join(dir, "a.log"), filepath.Join(dir, "later", "pjsip")
	appendFile(t, a, "[2026-11-21 19:10:00.000] NOTICE[1] a.c: bad bytes \xff\xfe here\n"+
		"[2026-11-21 19:10:01.000] WARNING[1] a.c: "+strings.Repeat("x", 5000)+"\n"+
		"[2026-11-21 19:10:02.000] ERROR[1] a.c: "+strings.Repeat("y", 2<<20)+"\n"+ // past the tailer's line cap too
		"[2026-11-21 19:10:03.000] NOTICE[1] a.c: partial")
	p := start(t, cfg)
	waitEntries(t, js, 3)
	appendFile(t, a, " line, now complete\n")
	appendFile(t, filepath.Join(dir, "b.log"), "[2026-11-21 19:10:04.000] NOTICE[2] b.c: a file matched later\n")
	if err := os.MkdirAll(filepath.Dir(pjsip), 0o755); err != nil {
		t.Fatal(err)
	}
	appendFile(t, pjsip, "[2026-11-21 19:10:05.000] NOTICE[3] c.c: a file created later\n")
	appendFile(t, filepath.Join(dir, "a.log.1"), "[2026-11-21 19:00:00.000] NOTICE[1] a.c: a rotated copy, not followed\n")
	got := waitEntries(t, js, 6)
	msgs := map[string]string{}
	for _, e := range got.entries {
		m := e.line.GetMessage()
		if !utf8.ValidString(m) || len(m) > 1024+len(logline.TruncatedMarker) {
			t.Errorf("message of %d bytes, valid UTF-8 %v", len(m), utf8.ValidString(m))
		}
		msgs[filepath.Base(e.batch.GetFile())+" "+e.batch.GetLevel()] = m
		if e.batch.GetLevel() != "NOTICE" && !e.line.GetTruncated() {
			t.Errorf("%s: not marked truncated", e.batch.GetLevel())
		}
	}
	want := map[string]string{
		"a.log NOTICE": "partial line, now complete",
		"b.log NOTICE": "a file matched later",
		"pjsip NOTICE": "a file created later",
	}
	for k, v := range want {
		if msgs[k] != v {
			t.Errorf("%s: %q, want %q", k, msgs[k], v)
		}
	}
	if !strings.HasPrefix(msgs["a.log WARNING"], "xxx") || !strings.HasSuffix(msgs["a.log ERROR"], logline.TruncatedMarker) {
		t.Errorf("long lines: %.20q %.20q", msgs["a.log WARNING"], msgs["a.log ERROR"])
	}
	var bad string
	for _, e := range got.entries {
		if strings.HasPrefix(e.line.GetMessage(), "bad bytes") {
			bad = e.line.GetMessage()
		}
	}
	if bad != "bad bytes \uFFFD here" { // one replacement for the run of bad bytes
		t.Errorf("invalid UTF-8: %q", bad)
	}
	p.stop()
}

// TestSecurityEvents: SECURITY lines are published as SecurityEvents on the
// event stream, once even when two followed files carry them, and stay log
// entries too.
func TestSecurityEvents(t *testing.T) {
	srv := testenv.NATS(t)
	js := connect(t, srv.ClientURL())
	dir := t.TempDir()
	sec := readLines(t, securityLog)
	body := strings.Join(sec, "\n") + "\n"
	appendFile(t, filepath.Join(dir, "security"), body)
	appendFile(t, filepath.Join(dir, "full"), body) // full => ...,security
	cfg := testConfig(srv.ClientURL(), dir)
	cfg.LogFiles = filepath.Join(dir, "security") + "," + filepath.Join(dir, "full")
	start(t, cfg)
	waitEntries(t, js, 2*len(sec))
	var events []stored
	testenv.Eventually(t, 30*time.Second, func() error {
		var err error
		if events, err = tryReadStream(js, bus.EventStream(cfg.Tenant)); err != nil {
			return err
		}
		if len(events) != len(sec) {
			return fmt.Errorf("%d security events, want %d", len(events), len(sec))
		}
		return nil
	})
	byType := map[string]int{}
	for _, s := range events {
		se := s.ev.GetSecurityEvent()
		if se == nil {
			t.Fatalf("not a security event: %v", s.ev)
		}
		byType[s.subject]++
		if len(se.GetFields()) == 0 || se.GetRemoteAddress().GetIp() != "127.0.0.1" || se.GetRemoteAddress().GetPort() == 0 {
			t.Errorf("event %v", se)
		}
		if tv, _ := logline.ParseEventTV(se.GetEventTv()); !s.ev.GetPbxTime().AsTime().Equal(tv) {
			t.Errorf("pbx time %v, EventTV %s", s.ev.GetPbxTime().AsTime(), se.GetEventTv())
		}
	}
	wantTypes := map[string]int{
		"pbx.t1.pbx1.evt.security.successfulauth":    14,
		"pbx.t1.pbx1.evt.security.challengesent":     11,
		"pbx.t1.pbx1.evt.security.requestbadformat":  1,
		"pbx.t1.pbx1.evt.security.requestnotallowed": 1,
		"pbx.t1.pbx1.evt.security.invalidpassword":   1,
	}
	if fmt.Sprint(byType) != fmt.Sprint(wantTypes) {
		t.Errorf("subjects %v\nwant %v", byType, wantTypes)
	}

	cases := []struct {
		subject  string
		want     *pb.SecurityEvent
		endpoint string
	}{
		{"pbx.t1.pbx1.evt.security.invalidpassword", &pb.SecurityEvent{
			Event: "InvalidPassword", Severity: "Error", Service: "AMI", EventVersion: "2", AccountId: "monitor", SessionId: "0x7f9f2c016480",
			LocalAddress:  &pb.SecurityAddress{Raw: "IPV4/TCP/127.0.0.1/5038", Family: "IPV4", Transport: "TCP", Ip: "127.0.0.1", Port: 5038},
			RemoteAddress: &pb.SecurityAddress{Raw: "IPV4/TCP/127.0.0.1/48468", Family: "IPV4", Transport: "TCP", Ip: "127.0.0.1", Port: 48468},
			EventTv:       "2026-11-21T19:09:27.749+0000", SessionTv: "1970-01-01T00:00:00.000+0000",
		}, ""},
		{"pbx.t1.pbx1.evt.security.challengesent", &pb.SecurityEvent{
			Event: "ChallengeSent", Severity: "Informational", Service: "PJSIP", EventVersion: "1", AccountId: "1001", SessionId: "1-5881@127.0.0.1",
			LocalAddress:  &pb.SecurityAddress{Raw: "IPV4/UDP/127.0.0.1/5060", Family: "IPV4", Transport: "UDP", Ip: "127.0.0.1", Port: 5060},
			RemoteAddress: &pb.SecurityAddress{Raw: "IPV4/UDP/127.0.0.1/5061", Family: "IPV4", Transport: "UDP", Ip: "127.0.0.1", Port: 5061},
			EventTv:       "2026-11-21T19:09:15.916+0000",
		}, "1001"},
	}
	for _, tc := range cases {
		t.Run(tc.want.GetEvent(), func(t *testing.T) {
			for _, s := range events {
				if s.subject != tc.subject {
					continue
				}
				got := s.ev.GetSecurityEvent()
				fields := got.GetFields()
				if got.GetFile() == "" {
					t.Error("no file")
				}
				got = &pb.SecurityEvent{Event: got.Event, Severity: got.Severity, Service: got.Service, EventVersion: got.EventVersion,
					AccountId: got.AccountId, SessionId: got.SessionId, LocalAddress: got.LocalAddress, RemoteAddress: got.RemoteAddress,
					EventTv: got.EventTv, SessionTv: got.SessionTv, Challenge: got.Challenge}
				if fmt.Sprint(got) != fmt.Sprint(tc.want) {
					t.Errorf("got  %v\nwant %v", got, tc.want)
				}
				if fields[0].GetKey() != "EventTV" || fields[0].GetValue() != tc.want.GetEventTv() {
					t.Errorf("fields %v", fields)
				}
				if s.ev.GetRefs().GetEndpoint() != tc.endpoint {
					t.Errorf("refs %v, want endpoint %q", s.ev.GetRefs(), tc.endpoint)
				}
				return
			}
			t.Fatal("not found")
		})
	}
}

// TestLogStats: the counts per minute and level survive restarts, and a
// lost position save (a crash between the acknowledgement and the save):
// no minute is lost or counted twice.
func TestLogStats(t *testing.T) {
	srv := testenv.NATS(t)
	js := connect(t, srv.ClientURL())
	dir := t.TempDir()
	full := filepath.Join(dir, "full")
	cfg := testConfig(srv.ClientURL(), dir)
	line := func(minute, sec int, level string) string {
		return fmt.Sprintf("[2026-11-21 19:%02d:%02d.000] %s[7] x.c: minute %d\n", minute, sec, level, minute)
	}
	part1 := line(10, 0, "NOTICE") + line(10, 1, "NOTICE") + line(10, 2, "WARNING") + line(10, 59, "NOTICE") + line(10, 30, "WARNING") + // out of order: same minute
		line(11, 0, "ERROR") + "[garbled date] ERROR[7] x.c: no date, counted in the open minute\n"
	part2 := line(11, 5, "ERROR") + line(11, 6, "ERROR") + line(12, 0, "NOTICE") + line(11, 59, "DEBUG") // late line: counted in 19:12
	wantStats := []string{"19:10 notice=3 warning=2", "19:11 error=4", "19:12 debug=1 notice=1"}

	appendFile(t, full, part1)
	p := start(t, cfg)
	waitEntries(t, js, 7)
	p.stop() // publishes the open minute (19:11, so far)
	stateFiles, _ := filepath.Glob(filepath.Join(cfg.StateDir, "*.json"))
	if len(stateFiles) != 1 {
		t.Fatalf("state files %v", stateFiles)
	}
	afterPart1, err := os.ReadFile(stateFiles[0])
	if err != nil {
		t.Fatal(err)
	}
	readStats := func() []string {
		t.Helper()
		got, err := logstats.Read(t.Context(), js, tenant, "pbx1", time.Date(2026, 11, 21, 19, 0, 0, 0, time.UTC))
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, m := range got {
			s := m.Start.UTC().Format("15:04")
			var lv []string
			for l, n := range m.Levels {
				lv = append(lv, fmt.Sprintf("%s=%d", l, n))
			}
			slices.Sort(lv)
			if m.File != full {
				t.Errorf("file %q", m.File)
			}
			out = append(out, s+" "+strings.Join(lv, " "))
		}
		return out
	}
	if got := readStats(); fmt.Sprint(got) != fmt.Sprint([]string{"19:10 notice=3 warning=2", "19:11 error=2"}) {
		t.Errorf("after the first run: %q", got)
	}

	appendFile(t, full, part2)
	p = start(t, cfg)
	waitEntries(t, js, 11)
	p.stop()
	if got := readStats(); fmt.Sprint(got) != fmt.Sprint(wantStats) {
		t.Errorf("after the restart: %q, want %q", got, wantStats)
	}

	// as if the tailer had died after part2 was acknowledged but before
	// its position was saved: part2 is read, counted and published again
	if err := os.WriteFile(stateFiles[0], afterPart1, 0o644); err != nil {
		t.Fatal(err)
	}
	p = start(t, cfg)
	testenv.Eventually(t, 30*time.Second, func() error {
		if f := p.follower(full); f == nil || f.savedOffset.Load() != int64(len(part1+part2)) {
			return fmt.Errorf("not saved at the end yet")
		}
		return nil
	})
	p.stop()
	if got := readStats(); fmt.Sprint(got) != fmt.Sprint(wantStats) {
		t.Errorf("after a lost save: %q, want %q", got, wantStats)
	}
	keys := map[string]bool{}
	for _, e := range readLogs(t, js).entries {
		keys[e.key()] = true
	}
	if len(keys) != 11 {
		t.Errorf("%d distinct entries, want 11", len(keys))
	}
}

func TestMinuteStats(t *testing.T) {
	at := func(m, s int) time.Time { return time.Date(2026, 11, 21, 19, m, s, 0, time.UTC) }
	now := at(30, 0)
	type step struct {
		at     time.Time
		level  string
		closes bool
	}
	cases := []struct {
		name   string
		steps  []step
		minute time.Time
		counts string
	}{
		{"one minute", []step{{at(10, 0), "notice", false}, {at(10, 59), "notice", false}, {at(10, 5), "error", false}}, at(10, 0), "[{error 1} {notice 2}]"},
		{"next minute closes", []step{{at(10, 0), "notice", false}, {at(11, 0), "debug", true}}, at(11, 0), "[{debug 1}]"},
		{"earlier entry stays in the open minute", []step{{at(11, 0), "notice", false}, {at(10, 59), "notice", false}}, at(11, 0), "[{notice 2}]"},
		{"undated entry in the open minute", []step{{at(11, 0), "notice", false}, {time.Time{}, "unknown", false}}, at(11, 0), "[{notice 1} {unknown 1}]"},
		{"undated entry first: the current minute", []step{{time.Time{}, "unknown", false}}, at(30, 0), "[{unknown 1}]"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var s minuteStats
			for i, st := range tc.steps {
				m, closes := s.place(st.at, now)
				if closes != st.closes {
					t.Fatalf("step %d: closes %v", i, closes)
				}
				if closes || s.Minute == 0 {
					s.open(m)
				}
				s.add(st.level)
			}
			if s.Minute != tc.minute.Unix() || fmt.Sprint(s.Counts) != tc.counts || !s.Dirty {
				t.Errorf("minute %v counts %v dirty %v", time.Unix(s.Minute, 0).UTC(), s.Counts, s.Dirty)
			}
			saved, err := s.marshal()
			if err != nil {
				t.Fatal(err)
			}
			back, err := restoreStats(saved)
			if err != nil || fmt.Sprint(back) != fmt.Sprint(s) {
				t.Errorf("restored %v (%v), want %v", back, err, s)
			}
		})
	}
	s := minuteStats{Minute: at(10, 0).Unix(), Dirty: true}
	if s.due(at(11, 0)) || !s.due(at(11, 2)) {
		t.Error("a minute is due statsGrace after its end")
	}
}

func TestValidate(t *testing.T) {
	good := testConfig("nats://x", t.TempDir())
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mut := range map[string]func(*Config){
		"pbx id":           func(c *Config) { c.PBXID = "a.b" },
		"tenant":           func(c *Config) { c.Tenant = "" },
		"files":            func(c *Config) { c.LogFiles = " , " },
		"glob":             func(c *Config) { c.LogFiles = "/var/log/[" },
		"start at":         func(c *Config) { c.StartAt = "middle" },
		"tz":               func(c *Config) { c.TimeZone = "Mars/Olympus" },
		"poll":             func(c *Config) { c.Poll = 0 },
		"stream max bytes": func(c *Config) { c.LogStreamMaxBytes = 1000 },
		"stream max age":   func(c *Config) { c.LogStreamMaxAge = time.Second },
	} {
		c := good
		mut(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestByteSize(t *testing.T) {
	cases := []struct {
		in   string
		want ByteSize
		ok   bool
	}{
		{"1073741824", 1 << 30, true},
		{"1GiB", 1 << 30, true},
		{"512 MiB", 512 << 20, true},
		{"64KiB", 64 << 10, true},
		{"1GB", 0, false},
		{"-1", 0, false},
		{"99999999999GiB", 0, false},
	}
	for _, tc := range cases {
		var b ByteSize
		err := b.UnmarshalText([]byte(tc.in))
		if (err == nil) != tc.ok || b != tc.want {
			t.Errorf("%q: %d %v", tc.in, b, err)
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
