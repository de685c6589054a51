package mediabridge

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/pbxpulse/pbxpulse/pkg/testenv"
)

func TestWorkerAnswersDiscovery(t *testing.T) {
	srv := testenv.NATS(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Config{NATSURL: srv.ClientURL(), Tenant: "acme", WorkerID: "w1", HealthAddr: "127.0.0.1:0"}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	}()
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	var info WorkerInfo
	testenv.Eventually(t, 5*time.Second, func() error {
		m, err := nc.Request(DiscoverySubject("acme"), nil, 200*time.Millisecond)
		if err != nil {
			return err
		}
		return json.Unmarshal(m.Data, &info)
	})
	if info.WorkerID != "w1" || info.Tenant != "acme" {
		t.Fatalf("info %+v", info)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
