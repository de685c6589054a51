package eventgen

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pbxpulse/pbxpulse/pkg/bus"
	pb "github.com/pbxpulse/pbxpulse/pkg/pbxpulsev1"
)

// PublishWindow is how many publishes Publish keeps awaiting their ack.
const PublishWindow = 1000

// Publish stores events on their subjects (bus.Message: protobuf body,
// Content-Type header) with the event id as Nats-Msg-Id, as the
// collector's outbox does: asynchronously, up to PublishWindow acks in
// flight, in order. After a failed ack the failed event and every later
// one of its window are published again one by one, in order; JetStream's
// deduplication stores those that had in fact arrived once. It returns
// when every event is acknowledged, or the first error that retrying
// cannot help.
func Publish(ctx context.Context, js jetstream.JetStream, events []*pb.Event) error {
	for start := 0; start < len(events); start += PublishWindow {
		win := events[start:min(start+PublishWindow, len(events))]
		futures := make([]jetstream.PubAckFuture, 0, len(win))
		for _, ev := range win {
			msg, err := bus.Message(ev)
			if err != nil {
				return err
			}
			f, err := js.PublishMsgAsync(msg, jetstream.WithMsgID(ev.GetId()))
			if err != nil {
				break // settle what went out, then go on one by one
			}
			futures = append(futures, f)
		}
		failed := len(futures)
		for i, f := range futures {
			select {
			case <-ctx.Done():
				return fmt.Errorf("publish: %w", ctx.Err())
			case <-f.Ok():
			case <-f.Err():
				failed = min(failed, i)
			}
		}
		for _, ev := range win[failed:] {
			if err := publishSync(ctx, js, ev); err != nil {
				return err
			}
		}
	}
	return nil
}

// publishSync publishes one event until it is stored, the refusal is
// permanent, or ctx ends.
func publishSync(ctx context.Context, js jetstream.JetStream, ev *pb.Event) error {
	msg, err := bus.Message(ev)
	if err != nil {
		return err
	}
	wait := 50 * time.Millisecond
	for {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := js.PublishMsg(pctx, msg, jetstream.WithMsgID(ev.GetId()))
		cancel()
		if err == nil {
			return nil
		}
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && apiErr.Code >= 400 && apiErr.Code < 500 && apiErr.Code != 408 && apiErr.Code != 503 {
			return fmt.Errorf("publish %s: %w", msg.Subject, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("publish %s: %w (last error: %v)", msg.Subject, ctx.Err(), err)
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Second)
	}
}
