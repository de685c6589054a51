package ami

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const fixtures = "../../testdata/asterisk/22.10.1/ami"

type capturedMessage struct {
	Raw    string      `json:"raw"`
	Banner bool        `json:"banner"`
	Fields [][2]string `json:"fields"`
}

func loadMessages(t testing.TB, name string) []capturedMessage {
	t.Helper()
	f, err := os.Open(filepath.Join(fixtures, name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []capturedMessage
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var m capturedMessage
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

// TestReaderMatchesCaptures reads each captured session byte stream and
// checks every message against the capture's own parse.
func TestReaderMatchesCaptures(t *testing.T) {
	sessions := []string{"ami-events", "ami-actions-idle", "ami-actions-incall", "ami-badlogin"}
	for _, s := range sessions {
		t.Run(s, func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join(fixtures, s+".in.raw"))
			if err != nil {
				t.Fatal(err)
			}
			want := loadMessages(t, s+".messages.jsonl")
			r := NewReader(bytes.NewReader(raw))
			banner, err := r.ReadBanner()
			if err != nil {
				t.Fatal(err)
			}
			if !want[0].Banner || banner+"\r\n" != want[0].Raw {
				t.Fatalf("banner %q, want %q", banner, want[0].Raw)
			}
			for i, w := range want[1:] {
				msg, err := r.ReadMessage()
				if err != nil {
					t.Fatalf("message %d: %v", i+1, err)
				}
				got := msg.Headers()
				if len(got) != len(w.Fields) {
					t.Fatalf("message %d: %d fields, want %d (%q)", i+1, len(got), len(w.Fields), w.Raw)
				}
				for j, f := range w.Fields {
					wantVal := strings.TrimRight(f[1], "\n")
					if got[j].Name != f[0] || got[j].Value != wantVal {
						t.Fatalf("message %d field %d: %q=%q, want %q=%q", i+1, j, got[j].Name, got[j].Value, f[0], wantVal)
					}
				}
			}
			if _, err := r.ReadMessage(); !errors.Is(err, io.EOF) {
				t.Fatalf("after last message: %v, want EOF", err)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	cases := []struct {
		name  string
		input string
		ok    bool
	}{
		{"simple", "Event: X\r\nKey: b", true},
		{"empty value", "Event: X\r\nTransport: ", true},
		{"bare LF in value", "Response: Error\r\nMessage: Unable to retrieve endpoint 9999\n", true},
		{"no colon", "garbage line", false},
		{"empty", "", false},
		{"binary", "\x00\x01\x02", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.input))
			if (err == nil) != tc.ok {
				t.Fatalf("Parse(%q) err=%v, want ok=%v", tc.input, err, tc.ok)
			}
			if err != nil {
				var pe *ParseError
				if !errors.As(err, &pe) {
					t.Fatalf("error %T is not a *ParseError", err)
				}
			}
		})
	}
}

func TestReaderTruncatedAndOversized(t *testing.T) {
	r := NewReader(strings.NewReader("Asterisk Call Manager/11.0.0\r\nEvent: X\r\nA: b\r\n"))
	if _, err := r.ReadBanner(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ReadMessage(); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("truncated: %v", err)
	}
	big := "Asterisk Call Manager/11.0.0\r\nEvent: X\r\nA: " + strings.Repeat("x", MaxFrameSize+10) + "\r\n\r\n"
	r = NewReader(strings.NewReader(big))
	_, _ = r.ReadBanner()
	if _, err := r.ReadMessage(); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("oversized: %v", err)
	}
	if _, err := NewReader(strings.NewReader("SSH-2.0-OpenSSH\r\n")).ReadBanner(); !errors.Is(err, ErrBanner) {
		t.Fatalf("bad banner: %v", err)
	}
}

// FuzzReader feeds arbitrary bytes after a banner: the reader must return
// messages or errors, never panic or loop.
func FuzzReader(f *testing.F) {
	for _, s := range []string{"ami-events", "ami-actions-idle", "ami-actions-incall", "ami-badlogin"} {
		raw, err := os.ReadFile(filepath.Join(fixtures, s+".in.raw"))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(raw)
		// Seed single messages too, so mutations stay near the format.
		for _, part := range firstN(bytes.SplitAfter(raw, terminator), 20) {
			f.Add(part)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r := NewReader(bytes.NewReader(data))
		if _, err := r.ReadBanner(); err != nil {
			return
		}
		for i := 0; i < 10000; i++ {
			msg, err := r.ReadMessage()
			var pe *ParseError
			switch {
			case errors.As(err, &pe):
				continue
			case err != nil:
				return
			case msg == nil:
				t.Fatal("nil message without error")
			}
		}
	})
}

func firstN[T any](s []T, n int) []T {
	if len(s) < n {
		return s
	}
	return s[:n]
}

// A Latin-1 caller-ID name is not UTF-8; it must not make the event
// unencodable downstream.
func TestParseInvalidUTF8(t *testing.T) {
	m, err := Parse([]byte("Event: Newchannel\r\nCallerIDName: Jos\xe9\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Field("CallerIDName"); got != "Jos\uFFFD" {
		t.Fatalf("got %q", got)
	}
}
