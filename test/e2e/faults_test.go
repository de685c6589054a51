package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	pb "github.com/pbxpulse/pbxpulse/pkg/pbxpulsev1"
	"github.com/pbxpulse/pbxpulse/test/pbxsim"
)

// collectorSession is the simulator's id of the collector's AMI session.
func collectorSession(t *testing.T, sim *pbxsim.Server) string {
	t.Helper()
	var id string
	testenvEventually(t, 10*time.Second, func() error {
		for _, s := range sim.Sessions() {
			if s.Kind == "ami" && s.Events && !s.Frozen {
				id = s.ID
				return nil
			}
		}
		return errNoSession
	})
	return id
}

var errNoSession = errors.New("no collector AMI session yet")

// A link that stays open but goes silent is found by the keepalive within a
// few seconds, published as disconnected, and replaced.
func TestCollectorSilentDeadLink(t *testing.T) {
	s := startStack(t, true)
	if err := s.StartService("collector", "AMI_KEEPALIVE=1s", "AMI_MAX_BACKOFF=1s"); err != nil {
		t.Fatal(err)
	}
	log := follow(t, s)
	log.until(t, "connected", 30*time.Second, func(evs []*pb.Event) bool {
		return connState(evs, "pbx1") == pb.PbxConnection_STATE_CONNECTED
	})
	s.Sim.Freeze(collectorSession(t, s.Sim))
	frozen := time.Now()
	log.until(t, "disconnected", 30*time.Second, func(evs []*pb.Event) bool {
		return connState(evs, "pbx1") == pb.PbxConnection_STATE_DISCONNECTED
	})
	t.Logf("silent link detected after %s (keepalive 1s)", time.Since(frozen).Round(100*time.Millisecond))
	log.until(t, "reconnected on a new session", 30*time.Second, func(evs []*pb.Event) bool {
		return countConn(evs, "pbx1", pb.PbxConnection_STATE_CONNECTED) >= 2
	})
}

// Events lost and reordered between PBX and collector: the periodic
// reconciliation notices, corrects, and the views end equal to the PBX.
func TestCollectorLostAndReorderedEventsConverge(t *testing.T) {
	s := startStack(t, false, "RECONCILE_INTERVAL=1s")
	ws := dial(t, "ws://"+s.HTTPAddr+"/ws")
	log := follow(t, s)
	for _, ext := range []string{"1001", "1002", "1003"} {
		s.Sim.Register(ext)
	}
	call := s.Sim.Dial("1001", "1002")
	call.Answer()
	id := "pbx1/" + call.Linkedid()
	ws.until("call bridged", 30*time.Second, func() bool { return str(ws.calls[id], "state") == "bridged" })

	sess := collectorSession(t, s.Sim)
	s.Sim.SwapNext(sess)      // the next two events arrive swapped
	s.Sim.Unregister("1003")  // ...
	s.Sim.DropNext(sess, 200) // and everything of the hang-up is lost
	call.Hangup()
	ws.until("reconciliation closed the call the collector never saw end", 30*time.Second, func() bool {
		return ws.calls[id] == nil
	})
	ws.until("1003 offline", 30*time.Second, func() bool { return str(ws.endpoints["pbx1/1003"], "status") == "offline" })
	evs := log.until(t, "a reconciliation with channel drift", 30*time.Second, func(evs []*pb.Event) bool {
		for _, e := range evs {
			if r := e.GetReconciliation(); r != nil && r.ChannelsDrift > 0 {
				return true
			}
		}
		return false
	})
	_ = evs
	// The views equal the simulator's truth.
	truth := s.Sim.Truth()
	if len(truth.Channels) != 0 {
		t.Fatalf("simulator still has channels %v", truth.Channels)
	}
	for _, ep := range truth.Endpoints {
		if ep.Name == "provider" {
			continue
		}
		want := "offline"
		if ep.Registered {
			want = "online"
		}
		t.Logf("endpoint %s: view %q, truth %s", ep.Name, str(ws.endpoints["pbx1/"+ep.Name], "status"), want)
		ws.until("endpoint "+ep.Name+" "+want, 10*time.Second, func() bool {
			return str(ws.endpoints["pbx1/"+ep.Name], "status") == want
		})
	}
}

func request(t *testing.T, nc *nats.Conn, action, body string) *pb.CommandReply {
	t.Helper()
	msg, err := nc.Request("pbx.acme.pbx1.cmd."+action, []byte(body), 10*time.Second)
	if err != nil {
		t.Fatalf("%s: %v", action, err)
	}
	var rep struct {
		Ok        bool   `json:"ok"`
		ErrorCode string `json:"errorCode"`
		Message   string `json:"message"`
		RequestID string `json:"requestId"`
		ActionID  string `json:"actionId"`
		Options   []struct {
			Name, Value string
		} `json:"options"`
	}
	if err := json.Unmarshal(msg.Data, &rep); err != nil {
		t.Fatalf("%s reply %q: %v", action, msg.Data, err)
	}
	out := &pb.CommandReply{Ok: rep.Ok, ErrorCode: rep.ErrorCode, Message: rep.Message, RequestId: rep.RequestID, ActionId: rep.ActionID}
	for _, o := range rep.Options {
		out.Options = append(out.Options, &pb.ConfigOption{Name: o.Name, Value: o.Value})
	}
	return out
}

// Call control over NATS request/reply against the simulated PBX.
func TestCollectorCommands(t *testing.T) {
	s := startStack(t, true)
	if err := s.StartService("collector"); err != nil {
		t.Fatal(err)
	}
	log := follow(t, s)
	log.until(t, "connected", 30*time.Second, func(evs []*pb.Event) bool {
		return connState(evs, "pbx1") == pb.PbxConnection_STATE_CONNECTED
	})
	nc, err := nats.Connect(s.NATSURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	s.Sim.Register("1001")
	s.Sim.Register("1002")
	call := s.Sim.Dial("1001", "1002")
	call.Answer()
	callee := call.Channels()[1]

	rep := request(t, nc, "hangup", `{"channel":"`+callee+`","meta":{"actor":"alice","requestId":"r1"}}`)
	if !rep.Ok || rep.RequestId != "r1" {
		t.Fatalf("hangup: %+v", rep)
	}
	testenvEventually(t, 10*time.Second, func() error {
		if n := len(s.Sim.Truth().Channels); n != 0 {
			return fmt.Errorf("simulator still has %d channels", n)
		}
		return nil
	})
	for _, tc := range []struct{ action, body, code string }{
		{"hangup", `{"channel":"PJSIP/1001-00000999"}`, "not_found"},
		{"hangup", `{"channel":"PJSIP/1001\r\nAction: Command"}`, "invalid"},
		{"hangup", `{"channel":"x"`, "invalid"},
		{"reboot", `{}`, "invalid"},
		{"originate", `{"channel":"PJSIP/1001","exten":"10 02"}`, "invalid"},
		{"config_update", `{"section":"1001","set":{"type":"aor"}}`, "invalid"},
		{"config_update", `{"section":"1001","set":{"nonexistent_option":"1"}}`, "invalid"},
		{"config_get", `{"section":"9999"}`, "not_found"},
	} {
		if rep := request(t, nc, tc.action, tc.body); rep.Ok || rep.ErrorCode != tc.code {
			t.Errorf("%s %s: %+v, want error %s", tc.action, tc.body, rep, tc.code)
		}
	}

	rep = request(t, nc, "originate", `{"channel":"PJSIP/1001","exten":"1002","context":"internal","meta":{"actor":"bob"}}`)
	if !rep.Ok || rep.ActionId == "" {
		t.Fatalf("originate: %+v", rep)
	}
	log.until(t, "the originated call's channels", 30*time.Second, func(evs []*pb.Event) bool {
		return len(created(evs)) >= 4
	})

	rep = request(t, nc, "config_get", `{"section":"1001","type":"auth"}`)
	if !rep.Ok {
		t.Fatalf("config_get: %+v", rep)
	}
	for _, o := range rep.Options {
		if o.Name == "password" && o.Value != "" {
			t.Fatal("config_get returned the password")
		}
	}
	rep = request(t, nc, "config_update", `{"section":"1001","set":{"callerid":"\"Alice\" <1001>"},"meta":{"actor":"admin"}}`)
	if !rep.Ok {
		t.Fatalf("config_update: %+v", rep)
	}
	rep = request(t, nc, "config_get", `{"section":"1001"}`)
	found := false
	for _, o := range rep.Options {
		found = found || (o.Name == "callerid" && o.Value == `"Alice" <1001>`)
	}
	if !found {
		t.Fatalf("callerid not updated: %+v", rep.Options)
	}
	evs := log.until(t, "audit events", 10*time.Second, func(evs []*pb.Event) bool {
		n := 0
		for _, e := range evs {
			if e.GetAudit() != nil {
				n++
			}
		}
		return n >= 11
	})
	var sawAlice bool
	for _, e := range evs {
		if a := e.GetAudit(); a != nil {
			sawAlice = sawAlice || (a.Actor == "alice" && a.Action == "hangup" && a.Ok && a.RequestId == "r1")
			if strings.Contains(a.Detail, "monitor-secret") || strings.Contains(a.Detail, "pw1001") {
				t.Fatal("a secret reached an audit event")
			}
		}
	}
	if !sawAlice {
		t.Fatal("no audit event for alice's hangup")
	}
}

// ARI beside AMI: the Stasis application's facts arrive from ARI, and no
// channel fact is published twice.
func TestCollectorARIBesideAMI(t *testing.T) {
	s := startStack(t, true)
	ariAddr, err := s.Sim.ListenARI("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.StartService("collector", "ARI_HOSTS=pbx1=http://"+ariAddr.String(), "ARI_USER=ari", "ARI_PASS=ari-secret", "ARI_APPS=monitor-app"); err != nil {
		t.Fatal(err)
	}
	log := follow(t, s)
	log.until(t, "connected", 30*time.Second, func(evs []*pb.Event) bool {
		return connState(evs, "pbx1") == pb.PbxConnection_STATE_CONNECTED
	})
	testenvEventually(t, 10*time.Second, func() error {
		for _, ss := range s.Sim.Sessions() {
			if ss.Kind == "ari" {
				return nil
			}
		}
		return errors.New("no ARI websocket yet")
	})
	s.Sim.Register("1001")
	c := s.Sim.CallApp("1001", "700")
	c.Hangup()
	evs := log.until(t, "StasisStart and StasisEnd from ARI", 30*time.Second, func(evs []*pb.Event) bool {
		n := 0
		for _, e := range evs {
			if e.GetStasisApp() != nil && e.Source == pb.Source_SOURCE_ARI && e.GetStasisApp().Application == "monitor-app" {
				n++
			}
		}
		return n == 2
	})
	for id, n := range created(evs) {
		if n != 1 {
			t.Errorf("channel %s created %d times", id, n)
		}
	}
	for _, e := range evs {
		if e.Source == pb.Source_SOURCE_ARI && (e.GetChannelCreated() != nil || e.GetChannelHungUp() != nil) {
			t.Errorf("ARI published a channel fact AMI already has: %v", e)
		}
	}
}
