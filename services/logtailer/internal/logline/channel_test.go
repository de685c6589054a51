package logline

import (
	"regexp"
	"testing"
)

func TestChannel(t *testing.T) {
	for in, want := range map[string]string{
		`Executing [1002@internal:1] NoOp("PJSIP/1001-00000000", "Internal call from 1001 to 1002") in new stack`: "PJSIP/1001-00000000",
		`PJSIP/1001-00000000: Data: PJSIP/1002,20`:                                                                "PJSIP/1001-00000000",
		`Channel 0x55dd82ebf320 'PJSIP/1002-00000001' allocated`:                                                  "PJSIP/1002-00000001",
		`Called PJSIP/1002`:                                                   "",
		`Local/600@internal-0000000a;2 answered`:                              "Local/600@internal-0000000a;2",
		`Hungup 'IAX2/iaxtrunk-1234'`:                                         "IAX2/iaxtrunk-1234",
		`Creating topic. name: endpoint:IAX2/iaxpeer, detail: `:               "",
		`Loading module iax2/provision.c`:                                     "",
		`Registered channel type 'Surrogate' (Surrogate channel used to)`:     "",
		`PJSIP/my-trunk-0000001f;3x`:                                          "PJSIP/my-trunk-0000001f",
		`xPJSIP/1001-0000000a then SIP/peer-00ab`:                             "SIP/peer-00ab",
		`PJSIP/1001-00000000x Local/a-b-1;1`:                                  "Local/a-b-1;1",
		`PJSIP/a-1-zz`:                                                        "PJSIP/a-1",
		`PJSIP/-1`:                                                            "",
		`UnicastRTP/127.0.0.1:5000-0000002a`:                                  "",
		`WebSocket/1001-00000003 CBAnn/conf-0000007;1 at the end PJSIP/x-a;2`: "WebSocket/1001-00000003",
		`sending to Local/200@from-internal-00000003;2, ring`:                 "Local/200@from-internal-00000003;2",
		`Snoop/1649789000.12-00000001`:                                        "Snoop/1649789000.12-00000001",
	} {
		if got := Channel(in); got != want {
			t.Errorf("Channel(%q) = %q, want %q", in, got, want)
		}
	}
}

// channelRe is the definition Channel implements.
var channelRe = regexp.MustCompile(`\b(?:PJSIP|SIP|IAX2|Local|DAHDI|Motif|UnicastRTP|WebSocket|AudioSocket|Console|Snoop|Announcer|Recorder|CBAnn|CBRec)/[^\s"',:()<>\[\]{}]+-[0-9a-f]+(?:;[12])?\b`)

func channelByRegexp(msg string) string {
	if len(msg) > 4096 {
		msg = msg[:4096]
	}
	return channelRe.FindString(msg)
}

// TestChannelCapture: on every message of the capture, Channel finds what
// the regular expression finds.
func TestChannelCapture(t *testing.T) {
	p := testParser()
	found := 0
	for _, s := range readCapture(t, "full") {
		l, err := p.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		got, want := Channel(l.Message), channelByRegexp(l.Message)
		if got != want {
			t.Errorf("Channel(%q) = %q, regexp finds %q", l.Message, got, want)
		}
		if got != "" {
			found++
		}
	}
	if found < 300 {
		t.Errorf("only %d messages name a channel", found)
	}
}

func FuzzChannel(f *testing.F) {
	for _, s := range readCapture(f, "full") {
		f.Add(s)
	}
	f.Add("Local/a-b-1;1 PJSIP/x-0;2")
	f.Add("\u00e9PJSIP/1001-0a")
	f.Fuzz(func(t *testing.T, msg string) {
		if got, want := Channel(msg), channelByRegexp(msg); got != want {
			t.Fatalf("Channel(%q) = %q, regexp finds %q", msg, got, want)
		}
	})
}

func BenchmarkChannel(b *testing.B) {
	msgs := readCapture(b, "full")
	b.Run("hand-written", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			Channel(msgs[i%len(msgs)])
		}
	})
	b.Run("regexp", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			channelByRegexp(msgs[i%len(msgs)])
		}
	})
}
