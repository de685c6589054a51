// Package logstats reads the per-minute counts of log entries by level that
// the log tailer publishes (LogStats events on pbx.<tenant>.<pbx>.logstats,
// kept in the tenant's log stream), for the panel's statistics.
//
// A minute's counts can be published more than once (when the minute is over
// while the file is quiet, then again when late lines of it arrive, or around
// a restart); the last message of a (PBX, file, minute) holds its complete
// counts and is the one returned. Counts are per followed file: a PBX's
// files overlap (Asterisk's messages log repeats lines of full), so they are
// not summed here.
package logstats

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/pbxpulse/pbxpulse/pkg/bus"
	pb "github.com/pbxpulse/pbxpulse/pkg/pbxpulsev1"
)

// Minute is the counts of one followed file of one PBX in one minute.
type Minute struct {
	PBX string
	// File is the followed path as the log tailer is configured with it.
	File string
	// Start of the minute.
	Start time.Time
	// Levels maps a level token ("verbose", "notice", ..., "unknown") to its
	// number of entries.
	Levels map[string]uint64
	Total  uint64
}

// ClockSkew is how far a PBX's clock may run ahead of the NATS server's and
// its counts still be found: messages are looked for from that long before
// the first minute asked for.
const ClockSkew = 5 * time.Minute

// Last returns the counts of the minutes that started within the n minutes
// before now (the current one included), oldest first. pbx "" or "*" means
// every PBX of the tenant.
func Last(ctx context.Context, js jetstream.JetStream, tenant, pbx string, n int, now time.Time) ([]Minute, error) {
	if n <= 0 {
		return nil, fmt.Errorf("logstats: %d minutes", n)
	}
	since := now.Truncate(time.Minute).Add(-time.Duration(n-1) * time.Minute)
	return Read(ctx, js, tenant, pbx, since)
}

// Read returns the counts of the minutes starting at or after since, oldest
// first (then by PBX and file). A tenant without log stream has none.
func Read(ctx context.Context, js jetstream.JetStream, tenant, pbx string, since time.Time) ([]Minute, error) {
	if pbx == "" {
		pbx = "*"
	}
	stream, err := js.Stream(ctx, bus.LogStream(tenant))
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("logstats: %w", err)
	}
	start := since.Add(-ClockSkew)
	cons, err := stream.CreateConsumer(ctx, jetstream.ConsumerConfig{
		FilterSubject:     bus.LogStatsSubject(tenant, pbx),
		DeliverPolicy:     jetstream.DeliverByStartTimePolicy,
		OptStartTime:      &start,
		AckPolicy:         jetstream.AckNonePolicy,
		InactiveThreshold: time.Minute,
		MemoryStorage:     true,
	})
	if err != nil {
		return nil, fmt.Errorf("logstats: consumer: %w", err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = stream.DeleteConsumer(dctx, cons.CachedInfo().Name)
	}()

	latest := map[string]Minute{}
	pending := cons.CachedInfo().NumPending
	for got := uint64(0); got < pending; {
		batch, err := cons.Fetch(int(min(pending-got, 1000)), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return nil, fmt.Errorf("logstats: fetch: %w", err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			var ev pb.Event
			if err := proto.Unmarshal(m.Data(), &ev); err != nil {
				return nil, fmt.Errorf("logstats: message %s: %w", m.Subject(), err)
			}
			st := ev.GetLogStats()
			if st == nil || st.GetMinute().AsTime().Before(since) {
				continue
			}
			mi := Minute{PBX: ev.GetPbxId(), File: st.GetFile(), Start: st.GetMinute().AsTime(), Levels: map[string]uint64{}, Total: st.GetTotal()}
			for _, l := range st.GetLevels() {
				mi.Levels[l.GetLevel()] += l.GetCount()
			}
			latest[mi.PBX+"\x00"+mi.File+"\x00"+mi.Start.String()] = mi // the stream's order: the last one wins
		}
		if err := batch.Error(); err != nil {
			return nil, fmt.Errorf("logstats: fetch: %w", err)
		}
		if n == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			break // the pending messages went away meanwhile (limits)
		}
		got += uint64(n)
	}
	out := make([]Minute, 0, len(latest))
	for _, m := range latest {
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b Minute) int {
		if c := a.Start.Compare(b.Start); c != 0 {
			return c
		}
		if c := strings.Compare(a.PBX, b.PBX); c != 0 {
			return c
		}
		return strings.Compare(a.File, b.File)
	})
	return out, nil
}
