// Package lease elects, per PBX, the one collector replica allowed to hold
// that PBX's AMI connection. During a Kubernetes rollout two replicas watch
// the same PBXs; if both were connected, every event would be published
// twice. The election is a lease in a JetStream key/value bucket: the holder
// creates the key, renews it with compare-and-set updates, and deletes it when
// it stops. The bucket's MaxAge is the lease TTL, so the key of a holder that
// crashed expires by itself and another replica takes over.
//
// Timing, with TTL the lease TTL:
//   - the holder renews every TTL/3 (retrying every TTL/12 after a failure);
//   - the leader's context is cancelled when its last successful renewal
//     was sent more than 3/4 TTL ago. The key cannot expire before TTL after
//     that send (the server stamps the write later, never earlier), so lead
//     has TTL/4 to stop using the PBX before another replica can hold the
//     key;
//   - a graceful stop deletes the key, and waiting replicas watch it, so the
//     handover takes one round trip rather than a TTL;
//   - after a crash, another replica takes over between TTL and about
//     TTL + TTL/3 after the last renewal.
//
// The guarantee rests on the elapsed time measured by the holder and by the
// NATS server agreeing to within TTL/4; a server whose wall clock jumps
// forward can expire a key early. The lease therefore prevents doubled
// events in every ordinary failure (crash, rollout, NATS restart, network
// loss), but it is not a fencing mechanism.
package lease

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pbxpulse/pbxpulse/pkg/config"
)

// DefaultBucket is the KV bucket holding the leases.
const DefaultBucket = "pbxpulse_leases"

// DefaultTTL is the lease TTL when Config.TTL is zero.
const DefaultTTL = 10 * time.Second

// MinTTL is the shortest TTL accepted: below it, one slow round trip to NATS
// would already cost the leadership.
const MinTTL = time.Second

// Causes of the cancellation of lead's context (see context.Cause). When
// Run's own context ends, the cause is that context's.
var (
	// ErrOverdue: no renewal succeeded for 3/4 of the TTL, so the key may
	// expire soon and another replica may acquire it.
	ErrOverdue = errors.New("lease: renewal overdue")
	// ErrLost: the key no longer holds this elector's revision (it expired
	// and was taken, or it was deleted).
	ErrLost = errors.New("lease: lost")
)

// errHeld means another holder has the key.
var errHeld = errors.New("held by")

// Config configures an Elector.
type Config struct {
	// Bucket is the KV bucket; DefaultBucket when empty.
	Bucket string
	// TTL is the lease TTL; DefaultTTL when zero, at least MinTTL.
	TTL time.Duration
	// Holder names this process in the keys it holds; the host name when
	// empty. A random suffix is always added, so that two processes with the
	// same name (a restarted container, a misconfiguration) never take each
	// other's key for their own.
	Holder string
	// Logger receives acquisitions, losses and renewal trouble;
	// slog.Default() when nil.
	Logger *slog.Logger
	// OnChange, if set, is called whenever this elector starts or stops
	// leading key (e.g. to set a gauge). It is called synchronously, possibly
	// from a timer goroutine, so it must be quick.
	OnChange func(key string, held bool)
}

// Elector runs leases for any number of keys in one bucket, all owned by the
// same holder id.
type Elector struct {
	js       jetstream.JetStream
	kv       jetstream.KeyValue
	bucket   string
	id       string
	log      *slog.Logger
	onChange func(string, bool)

	ttl        time.Duration
	renewEvery time.Duration // also the timeout of one attempt and the follower's poll
	retryEvery time.Duration // next renewal attempt after a failed one
	valid      time.Duration // how long after a renewal is sent leadership stands

	mu      sync.Mutex
	running map[string]bool
	held    map[string]bool
}

// New creates or opens the bucket and returns an Elector. The bucket's MaxAge
// must be at least the TTL for the lease to be safe: an existing bucket with
// a shorter one is raised to the TTL (raising is safe for electors already
// using it, lowering would not be), one with a longer one is used as is (only
// a crashed holder's takeover gets slower), and one without any is refused.
func New(ctx context.Context, js jetstream.JetStream, cfg Config) (*Elector, error) {
	if cfg.Bucket == "" {
		cfg.Bucket = DefaultBucket
	}
	if cfg.TTL == 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.TTL < MinTTL {
		return nil, fmt.Errorf("lease: TTL %s is below the minimum %s", cfg.TTL, MinTTL)
	}
	if cfg.Holder == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			h = "collector"
		}
		cfg.Holder = h
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	var suffix [4]byte
	if _, err := rand.Read(suffix[:]); err != nil {
		return nil, fmt.Errorf("lease: holder id: %w", err)
	}
	e := &Elector{
		js:         js,
		bucket:     cfg.Bucket,
		id:         cfg.Holder + "-" + hex.EncodeToString(suffix[:]),
		onChange:   cfg.OnChange,
		ttl:        cfg.TTL,
		renewEvery: cfg.TTL / 3,
		retryEvery: cfg.TTL / 12,
		valid:      cfg.TTL - cfg.TTL/4,
		running:    map[string]bool{},
		held:       map[string]bool{},
	}
	e.log = cfg.Logger.With("bucket", e.bucket, "holder", e.id)
	kv, err := e.ensureBucket(ctx)
	if err != nil {
		return nil, err
	}
	e.kv = kv
	return e, nil
}

// ensureBucket creates the bucket or checks an existing one (see New).
func (e *Elector) ensureBucket(ctx context.Context) (jetstream.KeyValue, error) {
	cfg := jetstream.KeyValueConfig{
		Bucket:      e.bucket,
		Description: "pbxpulse leader leases: one collector per PBX",
		TTL:         e.ttl,
	}
	kv, err := e.js.CreateKeyValue(ctx, cfg)
	if err == nil {
		return kv, nil
	}
	if !errors.Is(err, jetstream.ErrBucketExists) {
		return nil, fmt.Errorf("lease: create bucket %s: %w", e.bucket, err)
	}
	// It exists with another configuration (e.g. another TTL).
	if kv, err = e.js.KeyValue(ctx, e.bucket); err != nil {
		return nil, fmt.Errorf("lease: open bucket %s: %w", e.bucket, err)
	}
	st, err := kv.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("lease: bucket %s status: %w", e.bucket, err)
	}
	switch ttl := st.TTL(); {
	case ttl == 0:
		return nil, fmt.Errorf("lease: bucket %s exists without a TTL: a crashed holder would keep its keys forever", e.bucket)
	case ttl < e.ttl:
		e.log.Warn("lease: raising the bucket TTL", "from", ttl, "to", e.ttl)
		if kv, err = e.js.UpdateKeyValue(ctx, cfg); err != nil {
			return nil, fmt.Errorf("lease: raise TTL of bucket %s: %w", e.bucket, err)
		}
	case ttl > e.ttl:
		e.log.Info("lease: bucket TTL is longer than ours; a crashed holder's keys last that long", "bucket_ttl", ttl, "ttl", e.ttl)
	}
	return kv, nil
}

// ID returns the holder id stored in the keys this elector holds.
func (e *Elector) ID() string { return e.id }

// Held reports whether this elector currently leads key: true from the
// acquisition until lead's context is cancelled.
func (e *Elector) Held(key string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.held[key]
}

func (e *Elector) setHeld(key string, held bool) {
	e.mu.Lock()
	e.held[key] = held
	e.mu.Unlock()
	if e.onChange != nil {
		e.onChange(key, held)
	}
}

// Key returns the lease key of a PBX.
func Key(tenant, pbx string) string { return tenant + "." + pbx }

// CheckKey reports whether key is dot-separated tenant/PBX id tokens.
func CheckKey(key string) error {
	for _, tok := range strings.Split(key, ".") {
		if !config.ValidToken(tok) {
			return fmt.Errorf("lease: key %q: want dot-separated tokens of 1-64 A-Z a-z 0-9 _ -", key)
		}
	}
	return nil
}

// Run competes for key until ctx ends. Whenever it holds the lease it calls
// lead with a context that is cancelled when ctx ends or as soon as the
// leadership is lost or can no longer be vouched for (cause ErrLost or
// ErrOverdue); lead must then stop using the PBX within TTL/4 and return.
// Run waits for lead to return before it releases the key or competes again,
// so lead never runs twice at once for a key. If lead returns while still
// leading, the key is released and Run competes again after TTL/3, giving
// another replica the first chance.
//
// NATS trouble never ends Run: it keeps trying until NATS answers again.
// Run returns nil when ctx ends, after releasing the key if it held it; it
// returns an error at once for an invalid key, or if this elector is
// already running key.
func (e *Elector) Run(ctx context.Context, key string, lead func(ctx context.Context)) error {
	if err := CheckKey(key); err != nil {
		return err
	}
	e.mu.Lock()
	if e.running[key] {
		e.mu.Unlock()
		return fmt.Errorf("lease: key %q is already run by this elector", key)
	}
	e.running[key] = true
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		delete(e.running, key)
		e.mu.Unlock()
	}()

	log := e.log.With("key", key)
	for {
		t, ok := e.acquire(ctx, log, key)
		if !ok {
			return nil
		}
		rev, early := e.hold(ctx, log, key, t, lead)
		e.release(ctx, log, key, rev)
		if ctx.Err() != nil {
			return nil
		}
		if early {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(e.renewEvery):
			}
		}
	}
}

// term is one acquisition: the revision written and when it was sent.
type term struct {
	rev  uint64
	sent time.Time
}

// acquire tries to take key until it succeeds or ctx ends. While another
// holder has the key it watches the key, so that a release is noticed at
// once, and polls every TTL/3, because an expiry by MaxAge leaves no delete
// marker to watch.
func (e *Elector) acquire(ctx context.Context, log *slog.Logger, key string) (term, bool) {
	var w *watcher
	var updates <-chan jetstream.KeyValueEntry
	defer func() {
		if w != nil {
			w.stop()
		}
	}()
	poll := time.NewTimer(e.renewEvery)
	defer poll.Stop()
	failures := 0 // in a row, to log an outage once rather than every poll
	for {
		t, err := e.tryAcquire(ctx, key)
		if err == nil {
			return t, true
		}
		if ctx.Err() != nil {
			return term{}, false
		}
		if errors.Is(err, errHeld) {
			failures = 0
			log.Debug("lease: waiting", "err", err)
			if w == nil {
				if w = e.watch(ctx, log, key); w != nil {
					// Retry now: a release between the attempt and the
					// start of the watch would otherwise go unnoticed.
					updates = w.Updates()
					continue
				}
			}
		} else {
			if failures%20 == 0 {
				log.Warn("lease: cannot acquire", "err", err, "attempts", failures+1)
			}
			failures++
		}
		poll.Reset(e.renewEvery)
	wait:
		for {
			select {
			case <-ctx.Done():
				return term{}, false
			case <-poll.C:
				break wait
			case ent, ok := <-updates:
				if !ok {
					w.stop()
					w, updates = nil, nil
					continue
				}
				if ent != nil && (ent.Operation() == jetstream.KeyValueDelete || ent.Operation() == jetstream.KeyValuePurge) {
					break wait
				}
			}
		}
	}
}

// watch starts a watch of key's updates; on failure it returns nil and the
// caller polls only.
func (e *Elector) watch(ctx context.Context, log *slog.Logger, key string) *watcher {
	// The watch's context is also its lifetime (nats.go unsubscribes when it
	// ends), so it cannot carry a timeout; a timer bounds the creation
	// instead, which may otherwise hang through a NATS outage.
	wctx, cancel := context.WithCancel(ctx)
	abort := time.AfterFunc(e.renewEvery, cancel)
	w, err := e.kv.Watch(wctx, key, jetstream.UpdatesOnly())
	if !abort.Stop() && err == nil {
		err = errors.New("watch creation timed out")
		_ = w.Stop()
	}
	if err != nil {
		cancel()
		log.Debug("lease: cannot watch; polling only", "err", err)
		return nil
	}
	return &watcher{w, cancel}
}

type watcher struct {
	jetstream.KeyWatcher
	cancel context.CancelFunc
}

func (w *watcher) stop() {
	_ = w.Stop()
	w.cancel()
}

// tryAcquire makes one attempt to take key.
func (e *Elector) tryAcquire(ctx context.Context, key string) (term, error) {
	ctx, cancel := context.WithTimeout(ctx, e.renewEvery)
	defer cancel()
	sent := time.Now()
	// Create also succeeds over a delete marker (nats.go retries with the
	// marker's revision), and a key expired by MaxAge leaves nothing at all.
	rev, err := e.kv.Create(ctx, key, []byte(e.id))
	if err == nil {
		return term{rev, sent}, nil
	}
	if errors.Is(err, jetstream.ErrNoStreamResponse) {
		// No stream answers for the bucket's subjects: it was deleted, or a
		// NATS server came back without its storage.
		if _, berr := e.ensureBucket(ctx); berr != nil {
			return term{}, fmt.Errorf("create: %w; %w", err, berr)
		}
		return term{}, fmt.Errorf("create: %w (bucket recreated)", err)
	}
	ent, gerr := e.kv.Get(ctx, key)
	if errors.Is(gerr, jetstream.ErrKeyNotFound) {
		// Released or expired between the two calls.
		sent = time.Now()
		if rev, err = e.kv.Create(ctx, key, []byte(e.id)); err == nil {
			return term{rev, sent}, nil
		}
		return term{}, fmt.Errorf("create: %w", err)
	}
	if gerr != nil {
		return term{}, fmt.Errorf("create: %w; get: %w", err, gerr)
	}
	if string(ent.Value()) != e.id {
		return term{}, fmt.Errorf("%w %s", errHeld, ent.Value())
	}
	// The key carries our own id: a renewal or creation that timed out here
	// but reached the server (nats.go buffers publishes while reconnecting),
	// or a release that failed. Nobody else wrote since, so taking it over
	// with a compare-and-set is as good as a Create.
	sent = time.Now()
	rev, err = e.kv.Update(ctx, key, []byte(e.id), ent.Revision())
	if err != nil {
		return term{}, fmt.Errorf("take back own key: %w", err)
	}
	return term{rev, sent}, nil
}

// hold runs lead while renewing key and returns once lead has returned, with
// the revision of key this elector may still own (0 if surely none) and
// whether lead returned before its context was cancelled.
func (e *Elector) hold(ctx context.Context, log *slog.Logger, key string, t term, lead func(context.Context)) (rev uint64, early bool) {
	leadCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	e.setHeld(key, true)
	log.Info("lease: leading")
	// Everything that ends the leadership cancels leadCtx; this marks it
	// without waiting for the renewal loop, which may be stuck in a request.
	var revokedAt time.Time
	marked := make(chan struct{})
	context.AfterFunc(leadCtx, func() {
		defer close(marked)
		revokedAt = time.Now()
		e.setHeld(key, false)
		log.Info("lease: leadership ended", "cause", context.Cause(leadCtx))
	})

	// The deadline is a timer of its own so that it fires on time even while
	// a renewal request hangs.
	overdue := time.AfterFunc(time.Until(t.sent.Add(e.valid)), func() { cancel(ErrOverdue) })
	defer overdue.Stop()

	done := make(chan struct{})
	go func() {
		defer close(done)
		lead(leadCtx)
	}()

	rev = t.rev
	renew := time.NewTimer(e.renewEvery)
	defer renew.Stop()
	for {
		select {
		case <-done:
			if leadCtx.Err() == nil {
				early = true
				cancel(errors.New("lead returned"))
			}
			// Wait for the mark so that it cannot overtake the next term's.
			<-marked
			if took := time.Since(revokedAt); !early && took > e.ttl-e.valid {
				log.Warn("lease: lead was slow to return; another replica may have led meanwhile", "took", took, "allowed", e.ttl-e.valid)
			}
			return rev, early
		case <-renew.C:
			// Renewals go on after leadCtx is cancelled, until lead has
			// returned: while it winds down, the key should stay ours.
			// They are not cut short by ctx either, for the same reason.
			rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), e.renewEvery)
			sent := time.Now()
			r, err := e.kv.Update(rctx, key, []byte(e.id), rev)
			rcancel()
			switch {
			case err == nil:
				rev = r
				// If the timer already fired the leadership is over anyway;
				// the key, still ours, is released once lead returns.
				if overdue.Stop() {
					overdue.Reset(time.Until(sent.Add(e.valid)))
				}
				renew.Reset(e.renewEvery)
			case errors.Is(err, jetstream.ErrKeyRevisionMismatch), errors.Is(err, jetstream.ErrNoStreamResponse):
				// The key changed under us or the bucket is gone: someone
				// else may hold the key already.
				log.Warn("lease: lost", "err", err)
				rev = 0
				cancel(fmt.Errorf("%w: %w", ErrLost, err))
			default:
				// Transient (timeout, disconnected): the last renewal still
				// vouches for us until the overdue timer says otherwise.
				log.Warn("lease: renewal failed", "err", err)
				renew.Reset(e.retryEvery)
			}
		}
	}
}

// release deletes key if it still holds this elector's revision rev, or
// failing that, any revision carrying this elector's id, so that a waiting
// replica takes over at once instead of after the TTL. It runs after lead has
// returned, so dropping the key is always safe; failures are only logged (the
// key then expires).
func (e *Elector) release(ctx context.Context, log *slog.Logger, key string, rev uint64) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), e.renewEvery)
	defer cancel()
	if rev != 0 {
		err := e.kv.Delete(ctx, key, jetstream.LastRevision(rev))
		if err == nil {
			log.Info("lease: released")
			return
		}
		if !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			log.Warn("lease: release failed; the key will expire", "err", err)
			return
		}
	}
	ent, err := e.kv.Get(ctx, key)
	if err != nil || string(ent.Value()) != e.id {
		return
	}
	if err := e.kv.Delete(ctx, key, jetstream.LastRevision(ent.Revision())); err != nil {
		log.Warn("lease: release failed; the key will expire", "err", err)
		return
	}
	log.Info("lease: released")
}
