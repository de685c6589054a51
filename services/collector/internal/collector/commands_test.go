package collector

import (
	"testing"
)

// GetConfigJSON as Asterisk writes it: same-named sections repeat their key,
// options may repeat, "istemplate" is metadata, and only '\' and '"' are
// escaped (a raw tab can appear).
func TestParseConfigJSON(t *testing.T) {
	in := `{"1001":{"type":"endpoint","allow":"ulaw","allow":"alaw","callerid":"\"Ext 1001\" <1001>"},` +
		`"1001":{"type":"auth","password":"pw` + "\t" + `1001"},"tpl":{"istemplate":1,"templates":"a","x":"y"}}`
	got, err := parseConfigJSON(in)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0].name != "1001" || got[1].name != "1001" || got[2].name != "tpl" {
		t.Fatalf("sections %+v", got)
	}
	if len(got[0].opts) != 4 || got[0].opts[1].Value != "ulaw" || got[0].opts[2].Value != "alaw" {
		t.Fatalf("endpoint options %v", got[0].opts)
	}
	if v, _ := got[0].get("callerid"); v != `"Ext 1001" <1001>` {
		t.Fatalf("callerid %q", v)
	}
	if v, _ := got[1].get("password"); v != "pw\t1001" {
		t.Fatalf("password %q", v)
	}
	if i, err := pick(got, "1001", "auth"); err != nil || i != 1 {
		t.Fatalf("pick auth: %d %v", i, err)
	}
	if _, err := pick(got, "1001", "aor"); err == nil {
		t.Fatal("picked a missing aor")
	}
	for _, bad := range []string{``, `{`, `{"a":[]}`, `{"a":{"b":"c"}} x`, `[1]`} {
		if _, err := parseConfigJSON(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

func TestCommandValidation(t *testing.T) {
	cases := []struct {
		re    string
		value string
		ok    bool
	}{
		{"channel", "PJSIP/1001-00000000", true},
		{"channel", "Local/100@internal-00000001;2", true},
		{"channel", "PJSIP/1001\r\nAction: Command", false},
		{"channel", "1001", false},
		{"exten", "0800123", true},
		{"exten", "*72#", true},
		{"exten", "10 01", false},
		{"context", "from-internal", true},
		{"context", "a,b", false},
	}
	for _, tc := range cases {
		re := map[string]interface{ MatchString(string) bool }{"channel": channelRe, "exten": extenRe, "context": contextRe}[tc.re]
		if got := re.MatchString(tc.value); got != tc.ok {
			t.Errorf("%s %q: %v, want %v", tc.re, tc.value, got, tc.ok)
		}
	}
}
