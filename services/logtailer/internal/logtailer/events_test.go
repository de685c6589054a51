package logtailer

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	pb "github.com/pbxpulse/pbxpulse/pkg/pbxpulsev1"
	"github.com/pbxpulse/pbxpulse/services/logtailer/internal/logline"
	"github.com/pbxpulse/pbxpulse/services/logtailer/internal/tail"
)

// TestBatchEncoding: the hand-written encoding of a batch decodes to the
// event it stands for, built with the generated code.
func TestBatchEncoding(t *testing.T) {
	capLines := readLines(t, capture)
	cases := []struct {
		name     string
		text     string
		endpoint string
	}{
		{"captured log", strings.Join(capLines, "\n") + "\n", ""},
		{"multi-line, undated, truncated, verbose, line numbers", sipEntry +
			"[custom date] NOTICE[1] chan_pjsip.c:2950 request: Local/600@internal-0000000a;2 " + strings.Repeat("é", 600) + "\n" +
			"[2026-11-21 19:09:31.767] VERBOSE[5915][C-00000001] pbx.c:4558 in pbx_extension_helper:     -- Executing\n" +
			"orphan text\n", ""},
		{"security endpoint", strings.Join(readLines(t, securityLog), "\n") + "\n", "1001"},
		{"negative and zero times", "[1970-01-01 00:00:00.000] NOTICE[1] a.c: epoch\n[1969-12-31 23:59:59.500] NOTICE[1] a.c: before\n", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := logline.NewParser(time.UTC)
			p.MaxBytes = 1024
			j := logline.NewJoiner[tail.Line](p)
			var b batcher
			b.init("t1", "pbx1", "/var/log/asterisk/full\xff")
			received := time.Date(2026, 11, 21, 19, 30, 0, 123456789, time.UTC)
			var entries []logline.Entry[tail.Line]
			off := int64(0)
			for _, l := range strings.SplitAfter(tc.text, "\n") {
				if l == "" {
					continue
				}
				line := tail.Line{Text: strings.TrimSuffix(l, "\n"), Start: off, FileID: "fe00:1:abcd"}
				off += int64(len(l))
				line.Pos.Offset = off
				if e, ok := j.Add(line.Text, line); ok {
					entries = append(entries, e)
				}
			}
			if e, ok := j.Flush(); ok {
				entries = append(entries, e)
			}
			batches := 0
			check := func() {
				t.Helper()
				batches++
				want := b.batchEvent("id-1", received.Add(-time.Hour), received)
				var got pb.Event
				if err := proto.Unmarshal(b.appendBatchEvent(nil, "id-1", received.Add(-time.Hour), received), &got); err != nil {
					t.Fatal(err)
				}
				if !proto.Equal(&got, want) {
					t.Fatalf("decoded\n%v\nwant\n%v", &got, want)
				}
				b.n, b.bytes = 0, 0
			}
			for _, e := range entries {
				if !b.fits(e) {
					check()
				}
				b.add(e, received, tc.endpoint)
				if b.full() {
					check()
				}
			}
			if !b.empty() {
				check()
			}
			if batches == 0 {
				t.Fatal("no batch")
			}
		})
	}
}
