package lease

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pbxpulse/pbxpulse/pkg/testenv"
)

func TestScratchWatch(t *testing.T) {
	s := testenv.NATS(t)
	_, js := connect(t, s.ClientURL())
	kv, _ := js.CreateKeyValue(t.Context(), jetstream.KeyValueConfig{Bucket: "w", TTL: time.Minute})
	wctx, cancel := context.WithTimeout(t.Context(), time.Second)
	w, err := kv.Watch(wctx, "k", jetstream.UpdatesOnly())
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	time.Sleep(100 * time.Millisecond)
	kv.Put(t.Context(), "k", []byte("x"))
	select {
	case e, ok := <-w.Updates():
		t.Logf("got %v %v", e, ok)
	case <-time.After(time.Second):
		t.Logf("nothing")
	}
}
