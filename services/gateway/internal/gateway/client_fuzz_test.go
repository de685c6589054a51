package gateway

import (
	"encoding/json"
	"strings"
	"testing"

	pb "github.com/pbxpulse/pbxpulse/pkg/pbxpulsev1"
)

// FuzzClientMessage feeds arbitrary client messages through what the
// gateway derives from them before touching NATS: the message, its log
// filter and the subjects the filter subscribes to. Whatever a client
// sends, nothing panics and every subject stays inside the tenant's log
// subjects with no wildcard beyond the filter's own "*" tokens: a client
// can never widen its subscription to another tenant or another domain.
func FuzzClientMessage(f *testing.F) {
	for _, s := range []string{
		`{"type":"requestUpdate"}`,
		`{"type":"ping"}`,
		`{"type":"subscribeLogs","id":"x","filter":{"pbx":"pbx1","endpoint":"1001","level":["ERROR","WARNING"]},"backlog":200}`,
		`{"type":"subscribeLogs","id":"c","filter":{"call":"C-0000000a","source":"res_pjsip_session.c","text":"Bye"}}`,
		`{"type":"subscribeLogs","id":"d","filter":{"call":"1795304666.7","channel":"PJSIP/1001-00000001"}}`,
		`{"type":"subscribeLogs","id":"e","filter":{"pbx":"*","level":[">","a.b","*"]}}`,
		`{"type":"unsubscribeLogs","id":"x"}`,
		`{"type":"subscribeLogs","id":"x","backlog":-1}`,
		`{"type":`, `[]`, `null`, `{"type":"subscribeLogs","filter":{"level":"ERROR"}}`,
	} {
		f.Add([]byte(s))
	}
	line := &pb.LogLine{Message: "Called 1002", CallId: "C-0000000a", SourceFile: "app_dial.c",
		Refs: &pb.PbxRefs{Channel: "PJSIP/1001-00000001", Endpoint: "1001"}}
	f.Fuzz(func(t *testing.T, data []byte) {
		var m clientMessage
		if json.Unmarshal(data, &m) != nil {
			return
		}
		flt, err := newLogFilter("acme", m.Filter)
		if err != nil {
			return
		}
		flt.learn("pbx1", line)
		flt.match("pbx1", "ERROR", line)
		for _, s := range flt.subjects() {
			tok := strings.Split(s, ".")
			if len(tok) != 5 || tok[0] != "pbx" || tok[1] != "acme" || tok[3] != "log" {
				t.Fatalf("filter %+v subscribes to %q, outside pbx.acme.*.log.*", m.Filter, s)
			}
			for _, x := range []string{tok[2], tok[4]} {
				if x == "" || x == ">" || (x != "*" && strings.ContainsAny(x, "*> \t\r\n")) {
					t.Fatalf("filter %+v: subject %q has token %q", m.Filter, s, x)
				}
			}
		}
	})
}
