package logline

import "testing"

func TestChannel(t *testing.T) {
	for in, want := range map[string]string{
		`Executing [1002@internal:1] NoOp("PJSIP/1001-00000000", "Internal call from 1001 to 1002") in new stack`: "PJSIP/1001-00000000",
		`PJSIP/1001-00000000: Data: PJSIP/1002,20`:                                                                "PJSIP/1001-00000000",
		`Channel 0x55dd82ebf320 'PJSIP/1002-00000001' allocated`:                                                  "PJSIP/1002-00000001",
		`Called PJSIP/1002`:                                               "",
		`Local/600@internal-0000000a;2 answered`:                          "Local/600@internal-0000000a;2",
		`Hungup 'IAX2/iaxtrunk-1234'`:                                     "IAX2/iaxtrunk-1234",
		`Creating topic. name: endpoint:IAX2/iaxpeer, detail: `:           "",
		`Loading module iax2/provision.c`:                                 "",
		`Registered channel type 'Surrogate' (Surrogate channel used to)`: "",
	} {
		if got := Channel(in); got != want {
			t.Errorf("Channel(%q) = %q, want %q", in, got, want)
		}
	}
}
