package ami

import "testing"

func TestEndpointOfChannel(t *testing.T) {
	cases := map[string]string{
		"PJSIP/1001-00000000":       "1001",
		"PJSIP/provider-0000000a":   "provider",
		"PJSIP/my-trunk-0000000b":   "my-trunk",
		"Local/600@internal-0001;1": "",
		"IAX2/iaxtrunk-123":         "iaxtrunk",
		"garbage":                   "",
	}
	for in, want := range cases {
		if got := EndpointOfChannel(in); got != want {
			t.Errorf("%q: %q, want %q", in, got, want)
		}
	}
}

func TestEndpointOfDevice(t *testing.T) {
	cases := map[string]string{"PJSIP/1001": "1001", "IAX2/iaxtrunk": "iaxtrunk", "Queue:support_avail": "", "Custom:x": ""}
	for in, want := range cases {
		if got := EndpointOfDevice(in); got != want {
			t.Errorf("%q: %q, want %q", in, got, want)
		}
	}
}
