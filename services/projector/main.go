// Command projector applies a tenant's PBX events from NATS JetStream to the
// projections in Postgres and announces every committed change.
//
//	projector                      follow the stream (the service)
//	projector rebuild [-from T]    rebuild every projection from the stream, then swap it in
//	projector asof -at T           print the live views as they stood at time T (JSON)
//
// T is RFC 3339 (2026-11-21T10:32:00Z). Configuration comes from the
// environment, as for the service.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/pbxpulse/pbxpulse/pkg/bus"
	"github.com/pbxpulse/pbxpulse/pkg/projection"
	"github.com/pbxpulse/pbxpulse/pkg/service"
	"github.com/pbxpulse/pbxpulse/services/projector/internal/projector"
)

func main() {
	if len(os.Args) < 2 {
		service.Main("projector", projector.Run)
		return
	}
	fs := flag.NewFlagSet("projector "+os.Args[1], flag.ExitOnError)
	switch os.Args[1] {
	case "rebuild":
		from := fs.String("from", "", "replay from the first event stored at or after this time (RFC 3339); default: the beginning")
		_ = fs.Parse(os.Args[2:])
		t := parseTime(fs, *from, false)
		service.Main("projector", func(ctx context.Context, cfg projector.Config, log *slog.Logger) error {
			return projector.Rebuild(ctx, cfg, log, t)
		})
	case "asof":
		at := fs.String("at", "", "the time (RFC 3339)")
		_ = fs.Parse(os.Args[2:])
		t := parseTime(fs, *at, true)
		service.Main("projector", func(ctx context.Context, cfg projector.Config, log *slog.Logger) error {
			return asOf(ctx, cfg, log, t)
		})
	default:
		fmt.Fprintf(os.Stderr, "projector: unknown command %q (want rebuild or asof)\n", os.Args[1])
		os.Exit(2)
	}
}

func parseTime(fs *flag.FlagSet, s string, required bool) time.Time {
	if s == "" && !required {
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: want an RFC 3339 time: %v\n", fs.Name(), err)
		fs.Usage()
		os.Exit(2)
	}
	return t
}

func asOf(ctx context.Context, cfg projector.Config, log *slog.Logger, at time.Time) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	nc, js, err := bus.Open(ctx, cfg.NATSURL, "pbxpulse-projector-asof", cfg.Tenant, log)
	if err != nil {
		return err
	}
	defer nc.Close()
	loc, _ := time.LoadLocation(cfg.TimeZone)
	snap, seq, err := projection.AsOf(ctx, js, cfg.Tenant, at, loc, log)
	if err != nil {
		return err
	}
	out, err := protojson.MarshalOptions{UseProtoNames: true, Multiline: true}.Marshal(snap)
	if err != nil {
		return fmt.Errorf("encode: %w", err)
	}
	log.Info("views as of", "at", at, "stream_seq", seq)
	_, err = os.Stdout.Write(append(out, '\n'))
	return err
}
