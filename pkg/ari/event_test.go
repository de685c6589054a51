package ari

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

const captures = "../../testdata/asterisk/22.10.1/ari"

// capturedFrames returns the text of every websocket frame Asterisk sent,
// from ari-ws.messages.jsonl.
func capturedFrames(t testing.TB) []string {
	t.Helper()
	f, err := os.Open(filepath.Join(captures, "ari-ws.messages.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var m struct {
			Opcode int    `json:"opcode"`
			Text   string `json:"text"`
		}
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatal(err)
		}
		if m.Opcode != 1 {
			t.Fatalf("unexpected opcode %d", m.Opcode)
		}
		out = append(out, m.Text)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestCapturedFramesMatchWire checks that the decoded frames are exactly the
// payloads of the byte-exact websocket stream (HTTP 101, then unmasked server
// frames), so the test servers below send what Asterisk sent.
func TestCapturedFramesMatchWire(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(captures, "ari-ws.in.raw"))
	if err != nil {
		t.Fatal(err)
	}
	head, rest, ok := bytes.Cut(raw, []byte("\r\n\r\n"))
	if !ok || !bytes.HasPrefix(head, []byte("HTTP/1.1 101 ")) {
		t.Fatalf("no 101 handshake: %q", head)
	}
	var payloads []string
	for len(rest) > 0 {
		if len(rest) < 2 {
			t.Fatalf("truncated frame header")
		}
		fin, op := rest[0]&0x80 != 0, rest[0]&0x0f
		masked, n := rest[1]&0x80 != 0, uint64(rest[1]&0x7f)
		rest = rest[2:]
		switch n {
		case 126:
			n, rest = uint64(binary.BigEndian.Uint16(rest)), rest[2:]
		case 127:
			n, rest = binary.BigEndian.Uint64(rest), rest[8:]
		}
		if !fin || op != 1 || masked {
			t.Fatalf("frame fin=%v op=%d masked=%v", fin, op, masked)
		}
		payloads = append(payloads, string(rest[:n]))
		rest = rest[n:]
	}
	frames := capturedFrames(t)
	if !reflect.DeepEqual(payloads, frames) {
		t.Fatalf("wire has %d frames, messages.jsonl %d, or their texts differ", len(payloads), len(frames))
	}
}

// TestDecodeCapturedFrames decodes all 204 frames of the capture.
func TestDecodeCapturedFrames(t *testing.T) {
	frames := capturedFrames(t)
	if len(frames) != 204 {
		t.Fatalf("%d frames, want 204", len(frames))
	}
	count := map[string]int{}
	for i, f := range frames {
		ev, err := Parse([]byte(f))
		if err != nil {
			t.Fatalf("frame %d: %v", i+1, err)
		}
		count[ev.Type]++
		if ev.Application != "monitor-app" || ev.AsteriskID != "02:00:00:00:00:01" {
			t.Errorf("frame %d: application %q asterisk_id %q", i+1, ev.Application, ev.AsteriskID)
		}
		if ev.Timestamp.IsZero() || ev.Timestamp.Year() != 2026 {
			t.Errorf("frame %d: timestamp %v", i+1, ev.Timestamp)
		}
		v, err := ev.Decode()
		if err != nil {
			t.Fatalf("frame %d (%s): %v", i+1, ev.Type, err)
		}
		if Known(ev.Type) != (v != nil) {
			t.Errorf("frame %d (%s): known=%v, typed %T", i+1, ev.Type, Known(ev.Type), v)
		}
	}
	// The README's per-type totals for the websocket.
	want := map[string]int{
		"ChannelVarset": 99, "DeviceStateChanged": 20, "ChannelDialplan": 18, "ChannelHangupRequest": 9,
		"ChannelCreated": 8, "Dial": 8, "ChannelDestroyed": 8, "PeerStatusChange": 6, "ContactStatusChange": 6,
		"ChannelConnectedLine": 6, "ChannelStateChange": 6, "ChannelEnteredBridge": 2, "ChannelLeftBridge": 2,
		"BridgeCreated": 1, "BridgeDestroyed": 1, "StasisStart": 1, "PlaybackStarted": 1, "PlaybackFinished": 1,
		"StasisEnd": 1,
	}
	if !reflect.DeepEqual(count, want) {
		t.Errorf("types %v\nwant  %v", count, want)
	}
}

func decodeOne(t *testing.T, frame string) any {
	t.Helper()
	ev, err := Parse([]byte(frame))
	if err != nil {
		t.Fatal(err)
	}
	v, err := ev.Decode()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func firstOfType(t *testing.T, typ string, match func(string) bool) string {
	t.Helper()
	for _, f := range capturedFrames(t) {
		ev, _ := Parse([]byte(f))
		if ev.Type == typ && (match == nil || match(f)) {
			return f
		}
	}
	t.Fatalf("no %s frame", typ)
	return ""
}

func TestDecodeTypedFields(t *testing.T) {
	cs := decodeOne(t, firstOfType(t, "ContactStatusChange", nil)).(*ContactStatusChange)
	if cs.Endpoint.Resource != "1001" || cs.Endpoint.Technology != "PJSIP" || cs.ContactInfo.ContactStatus != "NonQualified" ||
		cs.ContactInfo.URI != "sip:1001@127.0.0.1:5061" || cs.ContactInfo.AOR != "1001" {
		t.Errorf("contact %+v", cs)
	}
	// roundtrip_usec is a JSON string in ARI.
	if rtt, ok := cs.ContactInfo.RoundtripUsec.Int(); !ok || rtt != 0 {
		t.Errorf("roundtrip %q", cs.ContactInfo.RoundtripUsec)
	}

	d := decodeOne(t, firstOfType(t, "ChannelDestroyed", func(s string) bool { return strings.Contains(s, `"cause":17`) })).(*ChannelDestroyed)
	if d.Cause != 17 || d.CauseTxt != "User busy" || d.Channel.ID != "1795288210.5" || d.Channel.State != "Ring" {
		t.Errorf("destroyed %+v", d)
	}
	want := time.Date(2026, 11, 21, 19, 10, 10, 986e6, time.UTC)
	if !d.Channel.CreationTime.Equal(want) {
		t.Errorf("creationtime %v, want %v", d.Channel.CreationTime, want)
	}

	dial := decodeOne(t, firstOfType(t, "Dial", func(s string) bool { return strings.Contains(s, `"dialstatus":"ANSWER"`) })).(*DialEvent)
	if dial.Caller == nil || dial.Caller.ID != "1795288171.0" || dial.Peer.ID != "1795288171.1" || dial.Peer.State != "Up" {
		t.Errorf("dial %+v", dial)
	}

	enter := decodeOne(t, firstOfType(t, "ChannelEnteredBridge", nil)).(*ChannelEnteredBridge)
	if enter.Bridge.BridgeClass != "basic" || enter.Bridge.BridgeType != "mixing" || len(enter.Bridge.Channels) != 1 ||
		enter.Channel == nil || enter.Channel.Dialplan.AppName != "AppDial" {
		t.Errorf("enter %+v", enter)
	}

	ss := decodeOne(t, firstOfType(t, "StasisStart", nil)).(*StasisStart)
	if ss.Args == nil || len(ss.Args) != 0 || ss.Channel.Dialplan.AppData != "monitor-app" || ss.ReplaceChannel != nil {
		t.Errorf("stasis %+v", ss)
	}

	hr := decodeOne(t, firstOfType(t, "ChannelHangupRequest", func(s string) bool { return strings.Contains(s, `"soft":true`) })).(*ChannelHangupRequest)
	if !hr.Soft || hr.Cause != 16 {
		t.Errorf("hangup request %+v", hr)
	}

	vs := decodeOne(t, firstOfType(t, "ChannelVarset", nil)).(*ChannelVarset)
	if vs.Variable != "SIPDOMAIN" || vs.Value != "127.0.0.1" || vs.Channel == nil {
		t.Errorf("varset %+v", vs)
	}
}

// TestDecodeKeyOrder re-encodes every frame with its keys in another order:
// decoding must not depend on it (ARI's order is not stable).
func TestDecodeKeyOrder(t *testing.T) {
	for i, f := range capturedFrames(t) {
		var m map[string]any
		if err := json.Unmarshal([]byte(f), &m); err != nil {
			t.Fatal(err)
		}
		sorted, _ := json.Marshal(m) // encoding/json sorts map keys
		a, err1 := Parse([]byte(f))
		b, err2 := Parse(sorted)
		if err1 != nil || err2 != nil {
			t.Fatalf("frame %d: %v %v", i+1, err1, err2)
		}
		va, _ := a.Decode()
		vb, _ := b.Decode()
		if a.Type != b.Type || !a.Timestamp.Equal(b.Timestamp) || !reflect.DeepEqual(va, vb) {
			t.Fatalf("frame %d decodes differently with sorted keys", i+1)
		}
	}
}

func TestParseMalformed(t *testing.T) {
	for _, tc := range []struct{ name, frame string }{
		{"not json", `{"type":"ChannelCreated",`},
		{"garbage", "\x00\xffhello"},
		{"array", `[{"type":"ChannelCreated"}]`},
		{"no type", `{"application":"monitor-app","timestamp":"2026-11-21T19:09:15.921+0000"}`},
		{"empty type", `{"type":""}`},
		{"type not a string", `{"type":5}`},
		{"null", `null`},
		{"trailing data", `{"type":"ChannelCreated"} x`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.frame))
			var fe *FrameError
			if !errors.As(err, &fe) {
				t.Fatalf("err %v, want *FrameError", err)
			}
			if fe.Len != len(tc.frame) || !strings.HasPrefix(err.Error(), "ari: malformed frame") {
				t.Errorf("err %q", err)
			}
		})
	}
	// A known type whose body does not fit is an error of Decode, not Parse.
	ev, err := Parse([]byte(`{"type":"ChannelDestroyed","cause":"sixteen","channel":{}}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ev.Decode(); err == nil {
		t.Error("Decode accepted a string cause")
	}
}

func TestParseLenientEnvelope(t *testing.T) {
	// Only "type" is required; odd envelope fields are left empty.
	ev, err := Parse([]byte(`{"type":"ChannelCreated","timestamp":{},"application":7,"asterisk_id":null}`))
	if err != nil {
		t.Fatal(err)
	}
	if ev.Type != "ChannelCreated" || !ev.Timestamp.IsZero() || ev.Application != "" || ev.AsteriskID != "" {
		t.Errorf("%+v", ev)
	}
}

func TestParseUnknownType(t *testing.T) {
	// A type no Asterisk version has; envelope keys as documented.
	frame := `{"type":"PbxpulseFutureEvent","application":"monitor-app","timestamp":"2026-11-21T19:09:15.921+0000","asterisk_id":"02:00:00:00:00:01"}`
	ev, err := Parse([]byte(frame))
	if err != nil {
		t.Fatal(err)
	}
	v, err := ev.Decode()
	if v != nil || err != nil || Known(ev.Type) {
		t.Errorf("unknown type decoded to %v, %v", v, err)
	}
	if string(ev.Raw) != frame {
		t.Error("raw JSON not kept")
	}
}

func TestParseTime(t *testing.T) {
	for in, want := range map[string]time.Time{
		"2026-11-21T19:09:31.766+0000":  time.Date(2026, 11, 21, 19, 9, 31, 766e6, time.UTC),
		"2026-11-21T20:09:31.766+0100":  time.Date(2026, 11, 21, 19, 9, 31, 766e6, time.UTC),
		"2026-11-21T19:09:31Z":          time.Date(2026, 11, 21, 19, 9, 31, 0, time.UTC),
		"2026-11-21T19:09:31.5+00:00":   time.Date(2026, 11, 21, 19, 9, 31, 5e8, time.UTC),
		"":                              {},
		"yesterday":                     {},
		"2026-11-21 19:09:31.766 +0000": {},
	} {
		if got := ParseTime(in); !got.Equal(want) {
			t.Errorf("ParseTime(%q) = %v, want %v", in, got, want)
		}
	}
}

// FuzzARIDecode: no input panics; input that is not JSON is an error; what
// parses is valid JSON and decodes or errors without panicking.
func FuzzARIDecode(f *testing.F) {
	for _, fr := range capturedFrames(f) {
		f.Add([]byte(fr))
	}
	f.Add([]byte(`{"type":"ChannelDestroyed","cause":"x"}`))
	f.Add([]byte(`{"type":"Dial","peer":null,"caller":[]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		ev, err := Parse(b)
		if !json.Valid(b) && err == nil {
			t.Fatalf("invalid JSON accepted: %q", b)
		}
		if err != nil {
			var fe *FrameError
			if !errors.As(err, &fe) {
				t.Fatalf("error %T", err)
			}
			var obj map[string]any
			if json.Unmarshal(b, &obj) == nil {
				if s, ok := obj["type"].(string); ok && s != "" {
					t.Fatalf("object with a type refused: %v", err)
				}
			}
			return
		}
		if ev.Type == "" {
			t.Fatal("parsed without a type")
		}
		_, _ = ev.Decode()
	})
}
