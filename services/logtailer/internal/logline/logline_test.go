package logline

import (
	"bufio"
	"errors"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// capture is the module's copy of the real Asterisk 22 logs (testdata/README.md).
const capture = "../../testdata/asterisk/22.10.1/logs/"

func testParser() *Parser {
	p := NewParser(time.UTC)
	p.Now = func() time.Time { return time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC) }
	return p
}

func TestParse(t *testing.T) {
	p := testParser()
	iso := func(s string) time.Time {
		tm, err := time.ParseInLocation("2006-01-02 15:04:05.000", s, time.UTC)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	tests := []struct {
		name string
		in   string
		want Line
	}{
		{
			name: "verbose with call id",
			in:   `[2026-11-21 19:09:31.767] VERBOSE[5915][C-00000001] pbx.c: Executing [1002@internal:1] NoOp("PJSIP/1001-00000000", "Internal call from 1001 to 1002") in new stack`,
			want: Line{Time: iso("2026-11-21 19:09:31.767"), RawTime: "2026-11-21 19:09:31.767", Level: "VERBOSE", ThreadID: "5915", CallID: "C-00000001",
				SourceFile: "pbx.c", Message: `Executing [1002@internal:1] NoOp("PJSIP/1001-00000000", "Internal call from 1001 to 1002") in new stack`},
		},
		{
			name: "default dateformat",
			in:   `[Nov 21 19:09:10] VERBOSE[5802] pbx_functions.c: Registered custom function 'LOG_GROUP'`,
			want: Line{Time: iso("2026-11-21 19:09:10.000"), RawTime: "Nov 21 19:09:10", Level: "VERBOSE", ThreadID: "5802",
				SourceFile: "pbx_functions.c", Message: "Registered custom function 'LOG_GROUP'"},
		},
		{
			name: "banner",
			in:   `[2026-11-21 19:09:10.719] Asterisk 22.10.1 built by root @ vm on a x86_64 running Linux on 2026-11-21 18:52:34 UTC`,
			want: Line{Time: iso("2026-11-21 19:09:10.719"), RawTime: "2026-11-21 19:09:10.719",
				Message: "Asterisk 22.10.1 built by root @ vm on a x86_64 running Linux on 2026-11-21 18:52:34 UTC"},
		},
		{
			name: "notice with path in source file",
			in:   `[2026-11-21 19:09:10.935] NOTICE[5802] iax2/provision.c: No IAX provisioning configuration found, IAX provisioning disabled.`,
			want: Line{Time: iso("2026-11-21 19:09:10.935"), RawTime: "2026-11-21 19:09:10.935", Level: "NOTICE", ThreadID: "5802",
				SourceFile: "iax2/provision.c", Message: "No IAX provisioning configuration found, IAX provisioning disabled."},
		},
		{
			name: "debug with extra blanks and trailing blank",
			in:   "[2026-11-21 19:09:31.767] DEBUG[5915][C-00000001] app_dial.c:  PJSIP/1001-00000000: Data: PJSIP/1002,20 \r\n",
			want: Line{Time: iso("2026-11-21 19:09:31.767"), RawTime: "2026-11-21 19:09:31.767", Level: "DEBUG", ThreadID: "5915", CallID: "C-00000001",
				SourceFile: "app_dial.c", Message: "PJSIP/1001-00000000: Data: PJSIP/1002,20"},
		},
		{
			name: "warning",
			in:   `[2026-11-21 19:09:10.911] WARNING[5802] res_musiconhold.c: No music on hold classes configured, disabling music on hold.`,
			want: Line{Time: iso("2026-11-21 19:09:10.911"), RawTime: "2026-11-21 19:09:10.911", Level: "WARNING", ThreadID: "5802",
				SourceFile: "res_musiconhold.c", Message: "No music on hold classes configured, disabling music on hold."},
		},
		{
			name: "file line function form",
			in:   `[Nov  1 07:00:01] ERROR[1234][C-0000000a] chan_pjsip.c:2950 request: Unable to create PJSIP channel`,
			want: Line{Time: time.Date(2026, 11, 1, 7, 0, 1, 0, time.UTC), RawTime: "Nov  1 07:00:01", Level: "ERROR", ThreadID: "1234", CallID: "C-0000000a",
				SourceFile: "chan_pjsip.c", SourceLine: 2950, Function: "request", Message: "Unable to create PJSIP channel"},
		},
		{
			name: "syslog-like in function form, verbose prefix",
			in:   `[2026-11-21 19:09:31.767] VERBOSE[5915][C-00000001] pbx.c:4558 in pbx_extension_helper:     -- Executing [1002@internal:1] NoOp`,
			want: Line{Time: iso("2026-11-21 19:09:31.767"), RawTime: "2026-11-21 19:09:31.767", Level: "VERBOSE", ThreadID: "5915", CallID: "C-00000001",
				SourceFile: "pbx.c", SourceLine: 4558, Function: "pbx_extension_helper", VerboseLevel: 3, Message: "Executing [1002@internal:1] NoOp"},
		},
		{
			name: "verbose level 2",
			in:   `[Nov 21 19:09:10] VERBOSE[5802] asterisk.c:   == Parsing '/etc/asterisk/asterisk.conf': Found`,
			want: Line{Time: iso("2026-11-21 19:09:10.000"), RawTime: "Nov 21 19:09:10", Level: "VERBOSE", ThreadID: "5802",
				SourceFile: "asterisk.c", VerboseLevel: 2, Message: "Parsing '/etc/asterisk/asterisk.conf': Found"},
		},
		{
			name: "old format with colon after thread",
			in:   `[Nov 21 19:09:10] DTMF[5920][C-00000002]: channel.c:3453 __ast_read: DTMF end '1' received on PJSIP/1001-00000002, duration 120 ms`,
			want: Line{Time: iso("2026-11-21 19:09:10.000"), RawTime: "Nov 21 19:09:10", Level: "DTMF", ThreadID: "5920", CallID: "C-00000002",
				SourceFile: "channel.c", SourceLine: 3453, Function: "__ast_read", Message: "DTMF end '1' received on PJSIP/1001-00000002, duration 120 ms"},
		},
		{
			name: "custom dateformat keeps the rest",
			in:   `[1795288171] SECURITY[5910] res_security_log.c: SecurityEvent="InvalidPassword"`,
			want: Line{RawTime: "1795288171", Level: "SECURITY", ThreadID: "5910", SourceFile: "res_security_log.c", Message: `SecurityEvent="InvalidPassword"`},
		},
		{
			name: "year guess: december read in january",
			in:   `[Dec 31 23:59:59] NOTICE[1] x.c: bye`,
			want: Line{Time: time.Date(2025, 12, 31, 23, 59, 59, 0, time.UTC), RawTime: "Dec 31 23:59:59", Level: "NOTICE", ThreadID: "1", SourceFile: "x.c", Message: "bye"},
		},
	}
	p.Now = func() time.Time { return time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC) }
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pp := *p
			if strings.HasPrefix(tt.name, "year guess") {
				pp.Now = func() time.Time { return time.Date(2026, 1, 1, 0, 0, 5, 0, time.UTC) }
			}
			got, err := pp.Parse(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if !got.Time.Equal(tt.want.Time) {
				t.Errorf("time = %v, want %v", got.Time, tt.want.Time)
			}
			got.Time, tt.want.Time = time.Time{}, time.Time{}
			if got != tt.want {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestParseContinuation(t *testing.T) {
	for _, in := range []string{
		"",
		"Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1",
		"[general]",
		"[general] context=internal",
		"    -- continuing",
		"[2026-11-21 19:09:10.719",
	} {
		if _, err := Parse(in); !errors.Is(err, ErrContinuation) {
			t.Errorf("Parse(%q) err = %v, want ErrContinuation", in, err)
		}
	}
}

func TestSanitize(t *testing.T) {
	l, err := Parse("[2026-11-21 19:09:10.719] NOTICE[1] a.c: bad \xff\xfe bytes")
	if err != nil {
		t.Fatal(err)
	}
	if !utf8.ValidString(l.Message) || l.Message != "bad \uFFFD bytes" {
		t.Errorf("message %q", l.Message)
	}
	long := "[2026-11-21 19:09:10.719] NOTICE[1] a.c: " + strings.Repeat("é", DefaultMaxBytes)
	l, err = Parse(long)
	if err != nil {
		t.Fatal(err)
	}
	if !l.Truncated || !strings.HasSuffix(l.Message, TruncatedMarker) || !utf8.ValidString(l.Message) {
		t.Errorf("long line: truncated=%v len=%d", l.Truncated, len(l.Message))
	}
	if len(l.Message) > DefaultMaxBytes+len(TruncatedMarker) {
		t.Errorf("message is %d bytes", len(l.Message))
	}
}

func TestJoiner(t *testing.T) {
	j := NewJoiner[int](testParser())
	in := []string{
		"orphan from the middle of a message",
		"[2026-11-21 19:09:31.767] VERBOSE[5915][C-00000001] res_pjsip_logger.c: <--- Received SIP request (900 bytes) from UDP:127.0.0.1:5061 --->",
		"INVITE sip:1002@127.0.0.1:5060 SIP/2.0",
		"Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1",
		"",
		"[2026-11-21 19:09:31.768] DEBUG[5915][C-00000001] pbx.c: Launching 'Dial'",
	}
	var got []Entry[int]
	for i, s := range in {
		if e, ok := j.Add(s, i); ok {
			got = append(got, e)
		}
	}
	if !j.Pending() {
		t.Fatal("last entry should be pending")
	}
	e, ok := j.Flush()
	if !ok {
		t.Fatal("flush")
	}
	got = append(got, e)
	if len(got) != 3 {
		t.Fatalf("got %d entries: %+v", len(got), got)
	}
	if got[0].Level != "" || got[0].Message != in[0] || got[0].First != 0 || got[0].Last != 0 {
		t.Errorf("orphan: %+v", got[0])
	}
	wantMsg := "<--- Received SIP request (900 bytes) from UDP:127.0.0.1:5061 --->\nINVITE sip:1002@127.0.0.1:5060 SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1\n"
	if got[1].Message != wantMsg || got[1].First != 1 || got[1].Last != 4 || got[1].Lines != 4 || got[1].CallID != "C-00000001" {
		t.Errorf("joined: %+v", got[1])
	}
	if got[2].Message != "Launching 'Dial'" || got[2].First != 5 || got[2].Last != 5 {
		t.Errorf("last: %+v", got[2])
	}
	if j.Pending() {
		t.Error("pending after flush")
	}
}

func TestJoinerCap(t *testing.T) {
	p := testParser()
	p.MaxBytes = 100
	j := NewJoiner[int](p)
	j.Add("[2026-11-21 19:09:31.767] VERBOSE[1] a.c: start", 0)
	for i := 1; i < 50; i++ {
		j.Add(strings.Repeat("x", 30), i)
	}
	e, _ := j.Flush()
	if !e.Truncated || len(e.Message) > 100+len(TruncatedMarker) || !strings.HasSuffix(e.Message, TruncatedMarker) || e.Last != 49 {
		t.Errorf("capped entry: truncated=%v len=%d last=%d %q", e.Truncated, len(e.Message), e.Last, e.Message)
	}
}

// TestCapture parses every line of the real Asterisk 22 capture.
func TestCapture(t *testing.T) {
	for _, name := range []string{"full", "messages"} {
		lines := readCapture(t, name)
		p := testParser()
		levels := map[string]int{}
		for i, s := range lines {
			l, err := p.Parse(s)
			if err != nil {
				t.Fatalf("%s:%d: %v: %q", name, i+1, err, s)
			}
			if !l.HasTime() {
				t.Errorf("%s:%d: no time: %q", name, i+1, s)
			}
			if l.Level != "" && (l.ThreadID == "" || l.SourceFile == "") {
				t.Errorf("%s:%d: %+v", name, i+1, l)
			}
			levels[l.Level]++
		}
		t.Logf("%s: %d lines, levels %v", name, len(lines), levels)
		if name == "full" && (levels["VERBOSE"] != 997 || levels["DEBUG"] != 1812 || levels["NOTICE"] != 7 || levels["WARNING"] != 1 || levels[""] != 1) {
			t.Errorf("level counts %v", levels)
		}
	}
}

func readCapture(t testing.TB, name string) []string { return readLines(t, capture+name) }

func readLines(t testing.TB, path string) []string {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

var levelRe = regexp.MustCompile(`^[A-Z][A-Z0-9_]*$`)

func FuzzParse(f *testing.F) {
	for _, name := range []string{capture + "full", capture + "messages", securityLog} {
		for _, s := range readLines(f, name) {
			f.Add(s)
		}
	}
	f.Add("[Nov  1 07:00:01] ERROR[1234][C-0000000a] chan_pjsip.c:2950 request: x")
	f.Add("[x] VERBOSE[1] a.c:     -- y")
	f.Add("[\xff] A[1]")
	p := testParser()
	f.Fuzz(func(t *testing.T, in string) {
		l, err := p.Parse(in)
		if err != nil {
			if !errors.Is(err, ErrContinuation) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		if !utf8.ValidString(l.Message) || !utf8.ValidString(l.RawTime) || !utf8.ValidString(l.Function) {
			t.Fatalf("invalid UTF-8 in %+v", l)
		}
		if len(l.Message) > p.MaxBytes+len(TruncatedMarker) {
			t.Fatalf("message of %d bytes", len(l.Message))
		}
		if l.Level != "" && (!levelRe.MatchString(l.Level) || l.ThreadID == "") {
			t.Fatalf("bad level/thread %+v", l)
		}
		if l.Level == "" && !l.HasTime() {
			t.Fatalf("header without level nor time %+v", l)
		}
		if !l.Truncated && !strings.Contains(in, l.Message) && utf8.ValidString(in) {
			t.Fatalf("message %q is not part of the line %q", l.Message, in)
		}
		// round trip: formatting the parsed line and parsing it again is stable
		if l.Truncated {
			return
		}
		l2, err := p.Parse(Format(l))
		if err != nil {
			t.Fatalf("re-parse of %q: %v", Format(l), err)
		}
		if !l2.Time.Equal(l.Time) {
			t.Fatalf("time %v != %v", l2.Time, l.Time)
		}
		l2.Time, l.Time = time.Time{}, time.Time{}
		if l2 != l {
			t.Fatalf("round trip of %q\n got %+v\nwant %+v", in, l2, l)
		}
	})
}
