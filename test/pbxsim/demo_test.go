package pbxsim

import (
	"context"
	"testing"
	"time"
)

// TestDemoScenarios runs every scenario of the demo with negligible
// pauses and checks each leaves the PBX idle after its characteristic
// events.
func TestDemoScenarios(t *testing.T) {
	fast := func(lo, hi time.Duration) time.Duration { return time.Millisecond }
	for _, tc := range []struct {
		r    int
		want []string
	}{
		{0, []string{"Newexten", "Hangup"}},
		{20, []string{"QueueCallerJoin", "QueueCallerLeave"}},
		{30, []string{"DialBegin", "Hangup"}},
		{40, []string{"DialEnd", "Hangup"}},
		{50, []string{"Hold", "Unhold", "DTMFEnd"}},
		{60, []string{"BlindTransfer", "BridgeEnter"}},
		{65, []string{"AttendedTransfer", "Hangup"}},
		{90, []string{"BridgeEnter", "Hangup"}},
	} {
		h := newHarness(t, Config{})
		h.s.demoCall(context.Background(), tc.r, []string{"1001", "1002", "1003"}, fast)
		ami, ari := h.phase()
		if got := amiTypes(ami, nil); !subsequence(got, tc.want) {
			t.Errorf("r=%d: events %v lack %v", tc.r, got, tc.want)
		}
		checkDocumented(t, ami, ari)
		if n := h.s.Channels(); n != 0 {
			t.Errorf("r=%d: %d channels left", tc.r, n)
		}
	}
}
