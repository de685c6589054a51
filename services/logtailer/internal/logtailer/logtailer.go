package logtailer

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"log/slog"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/pbxpulse/pbxpulse/pkg/ami"
	"github.com/pbxpulse/pbxpulse/pkg/bus"
	pb "github.com/pbxpulse/pbxpulse/pkg/pbxpulsev1"
	"github.com/pbxpulse/pbxpulse/services/logtailer/internal/logline"
	"github.com/pbxpulse/pbxpulse/services/logtailer/internal/tail"
)

// rescanInterval is how often the globs of LOG_FILES are expanded again.
const rescanInterval = 10 * time.Second

// Run follows the configured files until ctx ends.
//
// Each entry is published with PublishRetry, i.e. acknowledged by JetStream
// before the next one; while NATS is away publishing stalls and the lines
// wait on disk. A file's position is saved only after the entries up to it
// were acknowledged, so a restart neither loses nor repeats lines. Should
// the service die between an ack and the save (at most COMMIT_EVERY entries
// or one second), the entries published again get the same event ids and
// JetStream's duplicate window drops them.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	loc, _ := cfg.Location()
	nc, js, err := bus.Open(ctx, cfg.NATSURL, "pbxpulse-logtailer", log)
	if err != nil {
		return err
	}
	defer nc.Drain()
	r := &runner{cfg: cfg, loc: loc, pub: bus.NewPublisher(js), log: log, following: map[string]bool{}}
	log.Info("logtailer started", "tenant", cfg.Tenant, "pbx", cfg.PBXID, "files", cfg.LogFiles, "state_dir", cfg.StateDir)
	r.scan(ctx)
	t := time.NewTicker(rescanInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			r.wg.Wait()
			return nil
		case <-t.C:
			r.scan(ctx)
		}
	}
}

type publisher interface {
	PublishRetry(ctx context.Context, ev *pb.Event, log *slog.Logger) error
}

type runner struct {
	cfg Config
	loc *time.Location
	pub publisher
	log *slog.Logger

	mu        sync.Mutex
	following map[string]bool
	wg        sync.WaitGroup
}

// scan starts a follower for every path of LOG_FILES not followed yet.
func (r *runner) scan(ctx context.Context) {
	for _, p := range r.paths() {
		r.mu.Lock()
		skip := r.following[p] || r.isRotatedCopy(p)
		if !skip {
			r.following[p] = true
		}
		r.mu.Unlock()
		if skip {
			continue
		}
		tl, err := tail.Open(p, tail.Options{
			StateDir: r.cfg.StateDir, Poll: r.cfg.Poll, StartAtEnd: r.cfg.StartAt == "end",
			Log: r.log,
		})
		if err != nil {
			r.log.Error("cannot follow file", "file", p, "err", err)
			r.mu.Lock()
			delete(r.following, p) // try again at the next scan
			r.mu.Unlock()
			continue
		}
		parser := logline.NewParser(r.loc)
		parser.MaxBytes = r.cfg.MaxMessageBytes
		f := &follower{r: r, tl: tl, parser: parser, log: r.log.With("file", p)}
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			defer tl.Close()
			f.run(ctx)
		}()
		r.log.Info("following file", "file", p)
	}
}

// paths expands LOG_FILES; a plain path is kept even when it does not exist
// yet.
func (r *runner) paths() []string {
	var out []string
	seen := map[string]bool{}
	add := func(p string) {
		if p = filepath.Clean(p); !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	for _, pat := range r.cfg.Patterns() {
		if !strings.ContainsAny(pat, "*?[") {
			add(pat)
			continue
		}
		matches, _ := filepath.Glob(pat)
		for _, m := range matches {
			add(m)
		}
	}
	// rotated copies matched along with the file they were rotated from
	var kept []string
	for _, p := range out {
		rotated := false
		for _, q := range out {
			rotated = rotated || rotationOf(p, q)
		}
		if !rotated {
			kept = append(kept, p)
		}
	}
	return kept
}

// isRotatedCopy: p is named like a rotation of a followed file (r.mu held).
func (r *runner) isRotatedCopy(p string) bool {
	for q := range r.following {
		if rotationOf(p, q) {
			return true
		}
	}
	return false
}

var rotatedSuffix = regexp.MustCompile(`^[.-][0-9][0-9._-]*(\.(gz|bz2|xz|zst))?$`)

// rotationOf reports whether p is named like a rotated copy of q: full.1,
// full.1.gz, full-20261121, full.2026-11-21.
func rotationOf(p, q string) bool {
	return p != q && strings.HasPrefix(p, q) && rotatedSuffix.MatchString(p[len(q):])
}

// follower publishes the entries of one file.
type follower struct {
	r      *runner
	tl     *tail.Tailer
	parser *logline.Parser
	log    *slog.Logger

	acked      *tail.Position // last position acknowledged, not yet saved
	unsaved    int
	lastCommit time.Time
}

func (f *follower) run(ctx context.Context) {
	j := logline.NewJoiner[tail.Line](f.parser)
	poll := f.r.cfg.Poll
	var idleSince time.Time
	f.lastCommit = time.Now()
	defer f.commit() // what was acknowledged before the stop
	for ctx.Err() == nil {
		l, ok, err := f.tl.TryNext()
		if err != nil {
			f.log.Warn("read failed", "err", err)
		}
		if ok {
			idleSince = time.Time{}
			if e, done := j.Add(l.Text, l); done && !f.publish(ctx, e) {
				return
			}
			if f.unsaved >= f.r.cfg.CommitEvery || time.Since(f.lastCommit) >= time.Second {
				f.commit()
			}
			continue
		}
		// Nothing more to read now. An entry still waiting for continuation
		// lines is complete once the file stayed quiet for a poll interval:
		// Asterisk writes a multi-line message at once.
		if j.Pending() {
			if idleSince.IsZero() {
				idleSince = time.Now()
			} else if time.Since(idleSince) >= poll {
				e, _ := j.Flush()
				if !f.publish(ctx, e) {
					return
				}
			}
		}
		f.commit()
		select {
		case <-ctx.Done():
		case <-time.After(poll):
		}
	}
}

// commit saves the last acknowledged position.
func (f *follower) commit() {
	if f.acked == nil {
		return
	}
	if err := f.tl.Commit(*f.acked); err != nil {
		f.log.Error("cannot save position", "err", err)
		return
	}
	f.acked, f.unsaved, f.lastCommit = nil, 0, time.Now()
}

// publish publishes one entry until JetStream acknowledges it; false when
// ctx ended first.
func (f *follower) publish(ctx context.Context, e logline.Entry[tail.Line]) bool {
	ev := f.event(e, time.Now())
	if err := f.r.pub.PublishRetry(ctx, ev, f.log); err != nil {
		if ctx.Err() != nil {
			return false
		}
		// refused for good (e.g. too large): retrying would block the file forever
		f.log.Error("log entry refused by JetStream, skipped", "offset", e.First.Start, "err", err)
	}
	pos := e.Last.Pos
	f.acked = &pos
	f.unsaved++
	return true
}

// event builds the LogLine event of an entry.
func (f *follower) event(e logline.Entry[tail.Line], now time.Time) *pb.Event {
	cfg := f.r.cfg
	ev := &pb.Event{
		Tenant:       cfg.Tenant,
		PbxId:        cfg.PBXID,
		Source:       pb.Source_SOURCE_LOG,
		ReceivedTime: timestamppb.New(now),
		Payload: &pb.Event_LogLine{LogLine: &pb.LogLine{
			File:         f.tl.Path(),
			Level:        e.Level,
			Message:      e.Message,
			CallId:       e.CallID,
			ThreadId:     e.ThreadID,
			SourceFile:   e.SourceFile,
			SourceLine:   int32(e.SourceLine),
			Function:     e.Function,
			VerboseLevel: uint32(e.VerboseLevel),
		}},
	}
	if e.HasTime() {
		ev.PbxTime = timestamppb.New(e.Time)
	} else {
		ev.PbxTime = ev.ReceivedTime
	}
	if ch := logline.Channel(e.Message); ch != "" {
		ev.Refs = &pb.PbxRefs{Channel: ch, Endpoint: ami.EndpointOfChannel(ch)}
	}
	ev.Id = eventID(cfg.Tenant, cfg.PBXID, e)
	return ev
}

// eventID is a UUIDv7 whose time is the entry's log time and whose other
// bits hash where the entry lies (file identity and offset) and its text: an
// entry read twice (a crash between ack and position save) gets the same
// id, and JetStream's duplicate window stores it once. Entries without a
// readable date get a random UUIDv7.
func eventID(tenant, pbx string, e logline.Entry[tail.Line]) string {
	if !e.HasTime() {
		id, err := uuid.NewV7()
		if err != nil {
			return uuid.NewString()
		}
		return id.String()
	}
	h := sha256.New()
	var nums [24]byte
	binary.BigEndian.PutUint64(nums[0:], e.First.Pos.Dev)
	binary.BigEndian.PutUint64(nums[8:], e.First.Pos.Ino)
	binary.BigEndian.PutUint64(nums[16:], uint64(e.First.Start))
	h.Write([]byte(tenant + "\x00" + pbx + "\x00" + e.First.Pos.Path + "\x00"))
	h.Write(nums[:])
	h.Write([]byte(e.RawTime + "\x00" + e.Message))
	sum := h.Sum(nil)

	var u uuid.UUID
	ms := uint64(max(e.Time.UnixMilli(), 0))
	u[0], u[1], u[2], u[3], u[4], u[5] = byte(ms>>40), byte(ms>>32), byte(ms>>24), byte(ms>>16), byte(ms>>8), byte(ms)
	copy(u[6:], sum[:10])
	u[6] = 0x70 | u[6]&0x0f // version 7
	u[8] = 0x80 | u[8]&0x3f // RFC 9562 variant
	return u.String()
}
