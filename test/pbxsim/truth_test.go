package pbxsim

import (
	"testing"
	"time"
)

func TestTruth(t *testing.T) {
	s, _ := startServer(t, Config{})
	s.Register("1001")
	s.Register("1002")
	s.RegisterTrunk()
	c := s.Dial("1001", "1002")

	tr := s.Truth()
	if len(tr.Endpoints) != 5 || !tr.Trunk.Registered || tr.Trunk.Registration != "provider-reg" {
		t.Fatalf("truth %+v", tr)
	}
	e1, _ := tr.Endpoint("1001")
	e3, _ := tr.Endpoint("1003")
	if !e1.Registered || e1.DeviceState != "BUSY" || len(e1.Contacts) != 1 || e1.Contacts[0].URI != "sip:1001@127.0.0.1:5061" ||
		e1.Contacts[0].Expires.Before(time.Now()) || len(e1.Channels) != 1 {
		t.Errorf("1001 %+v", e1)
	}
	if e3.Registered || e3.DeviceState != "UNAVAILABLE" || e3.Contacts != nil {
		t.Errorf("1003 %+v", e3)
	}
	ids := c.Uniqueids()
	a, ok := tr.Channel(ids[0])
	b, _ := tr.Channel(ids[1])
	if !ok || a.State != "Ring" || b.State != "Ringing" || a.Linkedid != b.Linkedid || a.Linkedid != c.Linkedid() ||
		a.ConnectedNum != "1002" || b.CallerNum != "1002" || b.ConnectedNum != "1001" || a.App != "Dial" || a.BridgeID != "" {
		t.Errorf("ringing channels %+v %+v", a, b)
	}

	c.Answer()
	c.Hold("1001")
	tr = s.Truth()
	a, _ = tr.Channel(ids[0])
	b, _ = tr.Channel(ids[1])
	if a.State != "Up" || a.BridgeID == "" || a.BridgeID != b.BridgeID || !a.OnHold || b.OnHold {
		t.Errorf("answered channels %+v %+v", a, b)
	}
	if len(tr.Bridges) != 1 || tr.Bridges[0].Technology != "native_rtp" || len(tr.Bridges[0].Channels) != 2 {
		t.Errorf("bridges %+v", tr.Bridges)
	}
	if q := tr.Queues[0]; q.Name != "support" || len(q.Members) != 2 || q.Members[0].Interface != "PJSIP/1004" || q.Members[0].Status != 5 {
		t.Errorf("queue %+v", q)
	}

	c.Hangup()
	s.Unregister("1002")
	tr = s.Truth()
	if len(tr.Channels) != 0 || len(tr.Bridges) != 0 {
		t.Errorf("after hangup %+v", tr)
	}
	if e, _ := tr.Endpoint("1002"); e.Registered || e.DeviceState != "UNAVAILABLE" {
		t.Errorf("1002 %+v", e)
	}
}

// TestScaleEndpoints: 10,000 generated endpoints are listed quickly and
// completely, and stay cheap until used.
func TestScaleEndpoints(t *testing.T) {
	if testing.Short() {
		t.Skip("10,000 endpoints")
	}
	s, addr := startServer(t, Config{GenerateEndpoints: 10000})
	for i := range 2000 {
		s.Register(itoa(10001 + i))
	}
	c := dial(t, addr)
	c.login("off")
	start := time.Now()
	eps := c.action("e", "Action", "PJSIPShowEndpoints")
	cts := c.action("c", "Action", "PJSIPShowContacts")
	took := time.Since(start)
	if n := len(eps); n != 10000+1+2 { // phones + trunk + start/complete
		t.Errorf("PJSIPShowEndpoints listed %d messages", n)
	}
	if eps[1].get("ObjectName") != "10001" || eps[10000].get("ObjectName") != "20000" || eps[len(eps)-1].get("ListItems") != "10001" {
		t.Errorf("endpoint list ends %v / %v", eps[1], eps[len(eps)-1])
	}
	if n := len(cts); n != 2000+2 {
		t.Errorf("PJSIPShowContacts listed %d messages", n)
	}
	if took > 10*time.Second {
		t.Errorf("listing took %s", took)
	}
	if tr := s.Truth(); len(tr.Endpoints) != 10000 {
		t.Errorf("truth has %d endpoints", len(tr.Endpoints))
	}
	c20 := s.Dial("10001", "20000")
	c20.Answer()
	c20.Hangup()
	t.Logf("10,000 endpoints listed in %s", took)
}
