// Package logtailer follows Asterisk's log files and publishes their entries
// to the tenant's log stream (LogBatch payloads on
// pbx.<tenant>.<pbx>.log.<level>), the per-minute counts by level (LogStats
// on pbx.<tenant>.<pbx>.logstats) and the security events it recognises
// (SecurityEvent on pbx.<tenant>.<pbx>.evt.security.<type>).
package logtailer

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/pbxpulse/pbxpulse/pkg/bus"
	pb "github.com/pbxpulse/pbxpulse/pkg/pbxpulsev1"
	"github.com/pbxpulse/pbxpulse/services/logtailer/internal/logline"
	"github.com/pbxpulse/pbxpulse/services/logtailer/internal/tail"
)

// rescanInterval is how often the globs of LOG_FILES are expanded again.
const rescanInterval = 10 * time.Second

// Run follows the configured files until ctx ends.
//
// Entries are published in file order with many acknowledgements in
// flight; a file's position is saved only once everything before it was
// acknowledged, so a restart neither loses nor repeats lines. While NATS is
// slow or away, at most a few MiB await acknowledgement and the rest waits
// on disk. Should the service die between an acknowledgement and the save
// (at most COMMIT_EVERY entries or one second), the entries published again
// mostly get the same message ids and JetStream's duplicate window drops
// them; every entry also carries its (file, file_id, offset) key.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	return run(ctx, cfg, log, nil)
}

// run is Run; setup, when set, sees the runner before it starts (tests).
func run(ctx context.Context, cfg Config, log *slog.Logger, setup func(*runner)) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	tuneGC(log)
	nc, js, err := bus.Open(ctx, cfg.NATSURL, "pbxpulse-logtailer", cfg.Tenant, log)
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped before NATS was there
		}
		return err
	}
	defer nc.Drain()
	for wait := 250 * time.Millisecond; ; wait = min(2*wait, 5*time.Second) {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err = bus.EnsureLogStream(cctx, js, cfg.Tenant, cfg.LogLimits(), log)
		cancel()
		if err == nil || ctx.Err() != nil {
			break
		}
		log.Warn("cannot ensure the log stream yet, retrying", "stream", bus.LogStream(cfg.Tenant), "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	r, err := newRunner(cfg, nc, log)
	if err != nil {
		return err
	}
	if setup != nil {
		setup(r)
	}
	log.Info("logtailer started", "tenant", cfg.Tenant, "pbx", cfg.PBXID, "files", cfg.LogFiles,
		"state_dir", cfg.StateDir, "stream", bus.LogStream(cfg.Tenant))
	r.run(ctx)
	return nil
}

// tuneGC keeps the heap small unless the operator chose: the tailer's live
// data is a few MiB (buffers, what awaits acknowledgement), so the soft limit
// keeps RSS low on a PBX host whatever the file size.
func tuneGC(log *slog.Logger) {
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(20 << 20)
		log.Debug("GOMEMLIMIT set to 20MiB")
	}
}

type runner struct {
	cfg Config
	loc *time.Location
	nc  *nats.Conn
	log *slog.Logger

	rescan time.Duration // how often LOG_FILES is expanded again

	mu        sync.Mutex
	following map[string]bool
	followers []*follower
	wg        sync.WaitGroup

	published atomic.Uint64 // entries acknowledged, all files
}

func newRunner(cfg Config, nc *nats.Conn, log *slog.Logger) (*runner, error) {
	loc, err := cfg.Location()
	if err != nil {
		return nil, err
	}
	return &runner{cfg: cfg, loc: loc, nc: nc, log: log, rescan: rescanInterval, following: map[string]bool{}}, nil
}

// run follows the files until ctx ends, then waits for the followers.
func (r *runner) run(ctx context.Context) {
	r.scan(ctx)
	t := time.NewTicker(r.rescan)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			r.wg.Wait()
			return
		case <-t.C:
			r.scan(ctx)
		}
	}
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
		f, err := r.follow(p)
		if err != nil {
			r.log.Error("cannot follow file", "file", p, "err", err)
			r.mu.Lock()
			delete(r.following, p) // try again at the next scan
			r.mu.Unlock()
			continue
		}
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			defer f.tl.Close()
			f.run(ctx)
		}()
		r.log.Info("following file", "file", p)
	}
}

func (r *runner) follow(p string) (*follower, error) {
	tl, err := tail.Open(p, tail.Options{
		StateDir: r.cfg.StateDir, Poll: r.cfg.Poll, StartAtEnd: r.cfg.StartAt == "end",
		Log: r.log,
	})
	if err != nil {
		return nil, err
	}
	stats, err := restoreStats(tl.SavedMeta())
	if err != nil {
		r.log.Warn("saved log counts unreadable; counting the current minute from here", "file", p, "err", err)
	}
	pipe, err := newPipeline(r.nc, r.log.With("file", p))
	if err != nil {
		tl.Close()
		return nil, err
	}
	parser := logline.NewParser(r.loc)
	parser.MaxBytes = r.cfg.MaxMessageBytes
	f := &follower{r: r, tl: tl, parser: parser, pipe: pipe, stats: stats, log: r.log.With("file", p)}
	f.batch.init(r.cfg.Tenant, r.cfg.PBXID, p)
	r.mu.Lock()
	r.followers = append(r.followers, f)
	r.mu.Unlock()
	return f, nil
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

// follower reads one file and publishes what it finds, in order, through
// its pipeline. Everything happens on its one goroutine.
type follower struct {
	r      *runner
	tl     *tail.Tailer
	parser *logline.Parser
	pipe   *pipeline
	log    *slog.Logger

	batch batcher
	stats minuteStats
	// sealed is the position just after the last entry handed to the
	// pipeline in a batch (the counts in stats are up to it when no batch
	// is open).
	sealed    tail.Position
	hasSealed bool

	uncommitted int // entries acknowledged since the last save
	lastCommit  time.Time
	committed   *record

	// now is the time, taken every clockEvery entries and when the file is
	// quiet: close enough for the receive time of a batch and the minute of
	// an undated entry, and a clock read per line is measurable.
	now      time.Time
	sinceNow int
	sent     bool // a record was sent since the last poll
	// unsent: stopped while sending; the counts include entries that are
	// read again at the next start, so they are not published now
	unsent bool

	// for tests and metrics: offsets of the last line read and saved
	readOffset, savedOffset atomic.Int64
}

// clockEvery is how many entries may share one reading of the clock.
const clockEvery = 64

// stopTimeout is how long a stopping follower waits for what it sent.
const stopTimeout = 3 * time.Second

func (f *follower) run(ctx context.Context) {
	j := logline.NewJoiner[tail.Line](f.parser)
	poll := f.r.cfg.Poll
	var idleSince time.Time
	// A file that was just written to is looked at again soon, then less
	// and less often down to every poll interval: a busy file is followed
	// closely, a quiet one costs a stat per interval.
	var soon time.Duration
	timer := time.NewTimer(poll)
	defer timer.Stop()
	f.lastCommit = time.Now()
	defer f.stop()
	for ctx.Err() == nil {
		l, ok, err := f.tl.TryNext()
		if err != nil {
			f.log.Warn("read failed", "err", err)
		}
		if ok {
			f.readOffset.Store(l.Pos.Offset)
			idleSince, soon = time.Time{}, time.Millisecond
			if e, done := j.Add(l.Text, l); done {
				if f.entry(ctx, e) != nil {
					return
				}
			}
			if f.sent { // acknowledgements matter once something was sent
				f.sent = false
				if f.pipe.poll(ctx) != nil {
					return
				}
				f.maybeCommit(false)
			}
			continue
		}
		f.now = time.Now()
		// Nothing more to read now. An entry still waiting for continuation
		// lines is complete once the file stayed quiet for a poll interval:
		// Asterisk writes a multi-line message at once.
		if j.Pending() {
			if idleSince.IsZero() {
				idleSince = time.Now()
			} else if time.Since(idleSince) >= poll {
				e, _ := j.Flush()
				if f.entry(ctx, e) != nil {
					return
				}
			}
		}
		if !j.Pending() {
			// what was read goes out now rather than waiting for a fuller batch
			if f.seal(ctx) != nil {
				return
			}
			if f.stats.due(time.Now()) && f.publishStats(ctx) != nil {
				return
			}
		}
		if f.pipe.poll(ctx) != nil {
			return
		}
		f.maybeCommit(true)
		wait := poll
		if soon > 0 {
			wait, soon = soon, 2*soon
			if soon >= poll {
				soon = 0
			}
		}
		timer.Reset(wait)
		acked, failed := f.pipe.headDone()
		select {
		case <-ctx.Done():
		case <-timer.C:
		case <-acked: // wake up to commit sooner
			f.pipe.headSettled(ctx, nil)
		case err := <-failed:
			if f.pipe.headSettled(ctx, err) != nil {
				return
			}
		}
	}
}

// stop publishes what was read and the open minute's counts, waits a little
// for the acknowledgements and saves the position they allow.
func (f *follower) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
	defer cancel()
	// (an entry still pending in j may yet grow: it is read again next time)
	if !f.unsent && f.seal(ctx) == nil && f.stats.Dirty {
		_ = f.publishStats(ctx)
	}
	if err := f.pipe.drain(ctx); err != nil {
		f.log.Warn("stopping before everything read was acknowledged; it is read again at the next start", "pending", len(f.pipe.fl), "err", err)
	}
	f.maybeCommit(true)
}

// entry takes one complete entry: counts it, adds it to the open batch and
// publishes it as a security event when it is one.
func (f *follower) entry(ctx context.Context, e logline.Entry[tail.Line]) error {
	if f.sinceNow++; f.sinceNow >= clockEvery || f.now.IsZero() {
		f.now, f.sinceNow = time.Now(), 0
	}
	now := f.now
	minute, closes := f.stats.place(e.Time, now)
	if !f.batch.fits(e) || closes {
		if err := f.seal(ctx); err != nil {
			return err
		}
	}
	if closes {
		if f.stats.Dirty {
			if err := f.publishStats(ctx); err != nil {
				return err
			}
		}
		f.stats.open(minute)
	} else if f.stats.Minute == 0 {
		f.stats.open(minute)
	}
	f.stats.add(bus.LevelToken(e.Level))
	var sec *pb.SecurityEvent
	if logline.IsSecurity(e.Level, e.Message) {
		if s, ok := logline.ParseSecurity(e.Message); ok {
			sec = securityEvent(s, f.tl.Path())
		}
	}
	refs := f.batch.add(e, now, securityEndpoint(sec))
	if sec != nil {
		r, err := f.batch.securityRecord(e, sec, refs, now, f.pipe.buffer())
		if err != nil {
			return err
		}
		if err := f.send(ctx, r); err != nil {
			return err
		}
	}
	if f.batch.full() {
		return f.seal(ctx)
	}
	return nil
}

// seal publishes the open batch, if any.
func (f *follower) seal(ctx context.Context) error {
	if f.batch.empty() {
		return nil
	}
	r, err := f.batch.seal(f.pipe.buffer())
	if err != nil {
		return err
	}
	f.sealed, f.hasSealed = r.pos, true
	r.commit, r.stats = true, f.stats.snapshot()
	f.sent = true
	return f.send(ctx, r)
}

// publishStats publishes the open minute's counts (no batch is open).
func (f *follower) publishStats(ctx context.Context) error {
	r, err := f.batch.statsRecord(f.stats, time.Now(), f.pipe.buffer())
	if err != nil {
		return err
	}
	f.stats.Dirty = false
	if f.hasSealed {
		r.commit, r.pos, r.stats = true, f.sealed, f.stats.snapshot()
	}
	return f.send(ctx, r)
}

func (f *follower) send(ctx context.Context, r *record) error {
	err := f.pipe.send(ctx, r)
	if err != nil {
		f.unsent = true
	}
	return err
}

// maybeCommit saves the acknowledged position when enough entries passed,
// a second went by, or (force) the file is quiet.
func (f *follower) maybeCommit(force bool) {
	if n := f.pipe.published; n > 0 {
		f.uncommitted += int(n)
		f.r.published.Add(n)
		f.pipe.published = 0
	}
	a := f.pipe.acked
	if a == nil || a == f.committed {
		return
	}
	if !force && f.uncommitted < f.r.cfg.CommitEvery && time.Since(f.lastCommit) < time.Second {
		return
	}
	meta, err := a.stats.marshal()
	if err == nil {
		err = f.tl.CommitMeta(a.pos, meta)
	}
	if err != nil {
		f.log.Error("cannot save position", "err", err)
		return
	}
	f.committed, f.uncommitted, f.lastCommit = a, 0, time.Now()
	f.savedOffset.Store(a.pos.Offset)
}
