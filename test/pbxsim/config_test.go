package pbxsim

import (
	"encoding/json"
	"strings"
	"testing"
)

// configSections decodes GetConfigJSON's JSON line into (name, vars)
// pairs in order; same-named sections repeat, so no map.
func configSections(t *testing.T, js string) [][2]any {
	t.Helper()
	d := json.NewDecoder(strings.NewReader(js))
	if tok, err := d.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("JSON %q: %v", js, err)
	}
	var out [][2]any
	for d.More() {
		k, err := d.Token()
		if err != nil {
			t.Fatal(err)
		}
		vars := map[string]string{}
		if err := d.Decode(&vars); err != nil {
			t.Fatal(err)
		}
		out = append(out, [2]any{k.(string), vars})
	}
	return out
}

func section(t *testing.T, secs [][2]any, name, typ string) map[string]string {
	t.Helper()
	for _, s := range secs {
		if v := s[1].(map[string]string); s[0] == name && v["type"] == typ {
			return v
		}
	}
	return nil
}

func TestGetConfigJSON(t *testing.T) {
	_, addr := startServer(t, Config{})
	c := dial(t, addr)
	c.login("off")
	ms := c.action("g", "Action", "GetConfigJSON", "Filename", "pjsip.conf")
	if len(ms) != 1 || names(ms[0]) != "Response,ActionID,JSON" {
		t.Fatalf("GetConfigJSON: %v", ms)
	}
	secs := configSections(t, ms[0].get("JSON"))
	ep := section(t, secs, "1001", "endpoint")
	if ep == nil || ep["context"] != "internal" || ep["aors"] != "1001" || ep["callerid"] != `"Ext 1001" <1001>` {
		t.Errorf("endpoint 1001: %v", ep)
	}
	if a := section(t, secs, "1005", "aor"); a["qualify_frequency"] != "10" {
		t.Errorf("aor 1005: %v", a)
	}
	if r := section(t, secs, "provider-reg", "registration"); r["server_uri"] != "sip:127.0.0.1:5070" {
		t.Errorf("registration: %v", r)
	}
	// Category and Filter narrow the dump.
	ms = c.action("g2", "Action", "GetConfigJSON", "Filename", "pjsip.conf", "Category", "1002", "Filter", "type=auth")
	secs = configSections(t, ms[0].get("JSON"))
	if len(secs) != 1 || secs[0][1].(map[string]string)["password"] != "pw1002" {
		t.Errorf("filtered: %v", secs)
	}
	for _, tc := range []struct{ fn, want string }{
		{"", "Filename not specified"},
		{"extensions.conf", "Config file not found"},
		{"../../etc/passwd", "File requires escalated privileges"},
	} {
		ms := c.action("ge", "Action", "GetConfigJSON", "Filename", tc.fn)
		if ms[0].get("Message") != tc.want {
			t.Errorf("%q: %v", tc.fn, ms)
		}
	}
}

func TestUpdateConfigAndReload(t *testing.T) {
	s, addr := startServer(t, Config{})
	c := dial(t, addr)
	c.login("on")
	upd := func(id string, kv ...string) msg {
		return c.action(id, append([]string{"Action", "UpdateConfig", "SrcFilename", "pjsip.conf", "DstFilename", "pjsip.conf"}, kv...)...)[0]
	}
	errs := []struct {
		kv   []string
		want string
	}{
		{[]string{"Action-000000", "update", "Cat-000000", "1001", "Var-000000", "nosuchvar", "Value-000000", "x"}, "Update did not complete successfully"},
		{[]string{"Action-000000", "update", "Cat-000000", "9999", "Var-000000", "context", "Value-000000", "x"}, "Given category does not exist"},
		{[]string{"Action-000000", "update"}, "Category not specified"},
		{[]string{"Action-000000", "append", "Cat-000000", "1001"}, "Problem with category, value, or line (if required)"},
		{[]string{"Action-000000", "frobnicate", "Cat-000000", "1001"}, "Unknown action command"},
		{[]string{"Action-000000", "newcat", "Cat-000000", "1001"}, "Create category did not complete successfully"},
		{[]string{"Action-000000", "delete", "Cat-000000", "1001", "Var-000000", "nosuchvar"}, "Update did not complete successfully"},
	}
	for i, tc := range errs {
		if m := upd("ue"+itoa(i), tc.kv...); m.get("Response") != "Error" || m.get("Message") != tc.want {
			t.Errorf("%v: %v, want %q", tc.kv, m, tc.want)
		}
	}
	if m := c.action("uf", "Action", "UpdateConfig", "SrcFilename", "pjsip.conf")[0]; m.get("Message") != "Filename not specified" {
		t.Errorf("no DstFilename: %v", m)
	}
	// A failed batch leaves the file untouched.
	upd("bad", "Action-000000", "update", "Cat-000000", "1001", "Var-000000", "context", "Value-000000", "other",
		"Action-000001", "update", "Cat-000001", "9999", "Var-000001", "x", "Value-000001", "y")
	ms := c.action("g", "Action", "GetConfigJSON", "Filename", "pjsip.conf", "Category", "1001", "Filter", "type=endpoint")
	if ep := configSections(t, ms[0].get("JSON")); ep[0][1].(map[string]string)["context"] != "internal" {
		t.Errorf("partial update applied: %v", ep)
	}

	// Add endpoint 1006 (endpoint, auth, aor) and rename 1001's callerid.
	m := upd("add",
		"Action-000000", "newcat", "Cat-000000", "1006",
		"Action-000001", "append", "Cat-000001", "1006", "Var-000001", "type", "Value-000001", "endpoint",
		"Action-000002", "append", "Cat-000002", "1006", "Var-000002", "context", "Value-000002", "internal",
		"Action-000003", "append", "Cat-000003", "1006", "Var-000003", "callerid", "Value-000003", `"Lobby" <1006>`,
		"Action-000004", "update", "Cat-000004", "1001", "Var-000004", "callerid", "Value-000004", `"Reception" <1001>`, "Options-000004", "catfilter=type=endpoint",
	)
	if m.get("Response") != "Success" || len(m) != 2 {
		t.Fatalf("UpdateConfig: %v", m)
	}
	// Not applied before the reload.
	if _, ok := s.Truth().Endpoint("1006"); ok {
		t.Error("endpoint created before Reload")
	}
	if m := c.action("r", "Action", "Reload", "Module", "res_pjsip.so")[0]; m.get("Message") != "Module Reloaded" {
		t.Fatalf("Reload: %v", m)
	}
	if _, ok := s.Truth().Endpoint("1006"); !ok {
		t.Error("endpoint 1006 missing after Reload")
	}
	found := false
	for _, e := range endpointsListed(t, c) {
		found = found || e.get("ObjectName") == "1006"
	}
	if !found {
		t.Error("1006 not in PJSIPShowEndpoints")
	}
	s.Register("1006")
	s.Register("1001")
	call := s.Dial("1001", "1006")
	if tr := s.Truth(); tr.Channels[0].CallerName != "Reception" {
		t.Errorf("callerid not applied: %+v", tr.Channels[0])
	}
	call.Hangup()

	// Deleting the sections removes the endpoint on the next reload.
	upd("del", "Action-000000", "delcat", "Cat-000000", "1006")
	c.action("r2", "Action", "Reload")
	if _, ok := s.Truth().Endpoint("1006"); ok {
		t.Error("1006 still there after delcat + Reload")
	}
}

func endpointsListed(t *testing.T, c *client) []msg {
	t.Helper()
	var out []msg
	for _, m := range c.action("eps", "Action", "PJSIPShowEndpoints") {
		if m.get("Event") == "EndpointList" {
			out = append(out, m)
		}
	}
	return out
}
