package collector

import (
	"strings"
	"testing"
)

func TestPBXs(t *testing.T) {
	cases := []struct {
		name, hosts string
		want        []PBX
		err         string
	}{
		{"plain", "10.0.0.5:5038", []PBX{{ID: "10-0-0-5", Addr: "10.0.0.5:5038", User: "monitor", Secret: "pw"}}, ""},
		{"ids and own credentials", "pbx1=127.0.0.1:5038, pbx2=admin:s%40cret@pbx2.example:5039",
			[]PBX{{ID: "pbx1", Addr: "127.0.0.1:5038", User: "monitor", Secret: "pw"}, {ID: "pbx2", Addr: "pbx2.example:5039", User: "admin", Secret: "s@cret"}}, ""},
		{"no port", "pbx1=10.0.0.5", nil, "want host:port"},
		{"duplicate id", "a=h:1,a=h:2", nil, "twice"},
		{"bad id", "a.b=h:1", nil, "AMI_HOSTS id"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Config{AMIHosts: tc.hosts, AMIUser: "monitor", AMIPass: "pw"}.PBXs()
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				if err != nil && strings.Contains(err.Error(), "cret") {
					t.Fatalf("error leaks a secret: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("%v", got)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("%d: %+v, want %+v", i, got[i], tc.want[i])
				}
				if strings.Contains(got[i].String(), got[i].Secret) && got[i].Secret != "" {
					t.Errorf("String() shows the secret")
				}
			}
		})
	}
}

func TestValidateNeedsAPBX(t *testing.T) {
	c := Config{AMIHosts: " , ", Tenant: "t", Keepalive: 1, OutboxCapacity: 100, LeaseTTL: 1e9}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "no PBX") {
		t.Fatalf("got %v", err)
	}
	c.ARIHosts = "pbx1=http://127.0.0.1:8088"
	c.ARIApps = "pbxpulse"
	if err := c.Validate(); err != nil {
		t.Fatalf("ARI alone: %v", err)
	}
}

func TestARIPBXs(t *testing.T) {
	cases := []struct {
		name, hosts       string
		id, url, user, pw string
		err               string
	}{
		{"defaults", "pbx1=http://127.0.0.1:8088", "pbx1", "http://127.0.0.1:8088", "ari", "pw", ""},
		{"own credentials and prefix", "https://ari2:s%40cret@pbx2.example:8089/asterisk", "pbx2-example", "https://pbx2.example:8089/asterisk", "ari2", "s@cret", ""},
		{"not http", "pbx1=ws://h:1", "", "", "", "", "want http(s)"},
		{"no scheme", "pbx1=h:8088", "", "", "", "", "want http(s)"},
		{"duplicate", "a=http://h:1,a=http://h:2", "", "", "", "", "twice"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Config{ARIHosts: tc.hosts, ARIUser: "ari", ARIPass: "pw", ARIApps: "pbxpulse, monitor-app"}.ARIPBXs()
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				if strings.Contains(err.Error(), "cret") {
					t.Fatalf("error leaks a secret: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			p := got[0]
			if p.ID != tc.id || p.Conf.URL != tc.url || p.Conf.User != tc.user || p.Conf.Password != tc.pw || len(p.Conf.Apps) != 2 {
				t.Fatalf("%+v", p)
			}
			if strings.Contains(p.Conf.URL, "cret") {
				t.Fatal("the URL keeps the password")
			}
		})
	}
}
