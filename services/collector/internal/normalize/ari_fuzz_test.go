package normalize

import (
	"encoding/json"
	"testing"

	"github.com/pbxpulse/pbxpulse/pkg/ari"
)

// FuzzARINormalize feeds every captured websocket frame, and mutations of
// it, to the ARI normalizer in both modes, after the start of a captured
// call so that held channels and inferred linkedids are in play: nothing
// may panic, JSON that is not an ARI message must be refused by the
// decoder, and every event produced must have a subject and encode.
func FuzzARINormalize(f *testing.F) {
	for _, fr := range ariAllFrames(f) {
		f.Add(fr)
	}
	f.Add([]byte(`{"type":"Dial","application":"a","peer":{"id":"x","state":"Down"},"caller":{"id":"x"},"dialstatus":""}`))
	f.Add([]byte(`{"type":"ChannelCreated","channel":{"id":"","state":"Down"}}`))
	f.Add([]byte(`{"type":"PlaybackStarted","playback":{"target_uri":"channel:"}}`))
	prefix := ariPhase(f, "call_answered")[:6] // up to the callee held before its Dial
	f.Fuzz(func(t *testing.T, frame []byte) {
		ev, err := ari.Parse(frame)
		if err != nil {
			if json.Valid(frame) {
				var obj map[string]any
				if json.Unmarshal(frame, &obj) == nil {
					if s, ok := obj["type"].(string); ok && s != "" {
						t.Fatalf("valid ARI message refused: %v", err)
					}
				}
			}
			return
		}
		if !json.Valid(frame) {
			t.Fatalf("invalid JSON accepted")
		}
		for _, withAMI := range []bool{false, true} {
			a := &ARI{WithAMI: withAMI}
			for _, p := range prefix {
				a.Event(p)
			}
			out := a.Event(ev)
			out = append(out, a.Event(ev)...) // the same event twice
			out = append(out, a.Flush()...)
			for _, e := range out {
				ariCheckEvent(t, e)
			}
		}
	})
}
