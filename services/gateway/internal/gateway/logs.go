package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/pbxpulse/pbxpulse/pkg/bus"
	"github.com/pbxpulse/pbxpulse/pkg/config"
	pb "github.com/pbxpulse/pbxpulse/pkg/pbxpulsev1"
	"github.com/pbxpulse/pbxpulse/pkg/store"
)

// Log subscriptions: a client asks for the log lines of its tenant that
// match a filter, gets the most recent ones (the backlog), then every new
// one as the log tailer stores it, from the tenant's log stream.
const (
	maxLogSubs     = 8
	defaultBacklog = 200
	maxBacklog     = 1000
	// entriesPerFrame caps one logs message.
	entriesPerFrame = 200
	// The backlog is searched backwards from the stream's end in chunks
	// (by stream sequence) of firstChunk, growing fourfold, and gives up
	// after scanLimit bytes of matching-subject messages or scanSeqs
	// sequences: a filter that matches little costs bounded work.
	firstChunk = 64
	scanLimit  = 32 << 20
	scanSeqs   = 1 << 20
	// maxCandidates bounds the lines a call filter keeps while it has not
	// yet seen which call ids belong to the call (see logFilter.learn).
	maxCandidates = 2000
	// livePullBytes bounds what a live subscription fetches ahead.
	livePullBytes = 256 << 10
)

// logFilterSpec is the filter of a subscribeLogs message.
type logFilterSpec struct {
	PBX      string   `json:"pbx"`
	Endpoint string   `json:"endpoint"`
	Call     string   `json:"call"`
	Channel  string   `json:"channel"`
	Level    []string `json:"level"`
	Source   string   `json:"source"`
	Text     string   `json:"text"`
}

var callIDRe = regexp.MustCompile(`^C-[0-9A-Fa-f]{8}$`)

// logFilter decides which log lines a subscription gets. PBX and level
// select subjects (the server filters); the rest is checked here.
//
// A call filter names a call by its linkedid or a channel's uniqueid (the
// call's channel names are read from its live view or history), or by an
// Asterisk call id C-xxxxxxxx. A line belongs to a call named by id when it
// names one of the call's channels, or carries a call id seen on such a
// line: Asterisk tags every line logged for a channel with the call id, and
// a dialled channel inherits it, so the lines that name no channel are
// found too once a line naming one was seen.
type logFilter struct {
	tenant                    string
	pbxs                      map[string]bool // nil: every PBX
	levels                    map[string]bool // level tokens; nil: every level
	endpoint, channel, source string
	text                      string // lower case
	callQuery                 string // linkedid or uniqueid, until resolved
	call                      bool
	channels                  map[string]bool
	callIDs                   map[string]bool
}

func newLogFilter(tenant string, s logFilterSpec) (*logFilter, error) {
	f := &logFilter{tenant: tenant, endpoint: s.Endpoint, channel: s.Channel, source: s.Source, text: strings.ToLower(s.Text)}
	for name, v := range map[string]string{"endpoint": s.Endpoint, "channel": s.Channel, "call": s.Call, "source": s.Source, "text": s.Text} {
		if len(v) > 256 {
			return nil, fmt.Errorf("filter.%s: at most 256 bytes", name)
		}
	}
	if s.PBX != "" {
		if !config.ValidToken(s.PBX) {
			return nil, errors.New("filter.pbx: not a PBX id")
		}
		f.pbxs = map[string]bool{s.PBX: true}
	}
	if len(s.Level) > 16 {
		return nil, errors.New("filter.level: at most 16 levels")
	}
	for _, l := range s.Level {
		if l == "" || len(l) > 32 {
			return nil, errors.New("filter.level: levels are names such as ERROR or WARNING")
		}
		if f.levels == nil {
			f.levels = map[string]bool{}
		}
		f.levels[bus.LevelToken(l)] = true
	}
	switch {
	case s.Call == "":
	case callIDRe.MatchString(s.Call):
		f.call, f.callIDs, f.channels = true, map[string]bool{s.Call: true}, map[string]bool{}
	default:
		f.call, f.callQuery, f.callIDs = true, s.Call, map[string]bool{}
	}
	return f, nil
}

// subjects are the log subjects the filter needs. A call filter takes every
// level: the lines that tie call ids to the call's channels are mostly
// VERBOSE, whatever levels are shown.
func (f *logFilter) subjects() []string {
	pbxs, levels := []string{"*"}, []string{"*"}
	if f.pbxs != nil && len(f.pbxs) <= 8 {
		pbxs = sortedKeys(f.pbxs)
	}
	if f.levels != nil && !f.call {
		levels = sortedKeys(f.levels)
	}
	var out []string
	for _, p := range pbxs {
		for _, l := range levels {
			out = append(out, "pbx."+f.tenant+"."+p+"."+bus.DomainLog+"."+l)
		}
	}
	return out
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// learn records the call id of a line that names one of the call's
// channels; it reports whether it was new.
func (f *logFilter) learn(pbx string, l *pb.LogLine) bool {
	if !f.call || l.GetCallId() == "" || (f.pbxs != nil && !f.pbxs[pbx]) {
		return false
	}
	if ch := l.GetRefs().GetChannel(); ch != "" && f.channels[ch] && !f.callIDs[l.GetCallId()] {
		f.callIDs[l.GetCallId()] = true
		return true
	}
	return false
}

// match reports whether a line passes the filter. pending is true when it
// passes everything but the call filter and carries a call id that may yet
// turn out to be the call's.
func (f *logFilter) match(pbx, level string, l *pb.LogLine) (ok, pending bool) {
	if f.pbxs != nil && !f.pbxs[pbx] {
		return false, false
	}
	if f.levels != nil && !f.levels[bus.LevelToken(level)] {
		return false, false
	}
	refs := l.GetRefs()
	if f.endpoint != "" && refs.GetEndpoint() != f.endpoint {
		return false, false
	}
	if f.channel != "" && refs.GetChannel() != f.channel {
		return false, false
	}
	if f.source != "" && l.GetSourceFile() != f.source {
		return false, false
	}
	if f.text != "" && !strings.Contains(strings.ToLower(l.GetMessage()), f.text) {
		return false, false
	}
	if !f.call {
		return true, false
	}
	if ch := refs.GetChannel(); ch != "" && f.channels[ch] {
		return true, false
	}
	if id := l.GetCallId(); id != "" {
		return f.callIDs[id], !f.callIDs[id]
	}
	return false, false
}

// resolveCall reads the channel names of the call a call filter names (by
// linkedid, else by a live channel's uniqueid) from the tenant's views.
func (g *Gateway) resolveCall(ctx context.Context, f *logFilter) (found bool, err error) {
	var onePBX string
	if f.pbxs != nil {
		onePBX = sortedKeys(f.pbxs)[0]
	}
	pbxs, channels := map[string]bool{}, map[string]bool{}
	add := func(pbx string, names ...string) {
		if onePBX != "" && pbx != onePBX {
			return
		}
		pbxs[pbx] = true
		for _, n := range names {
			if n != "" {
				channels[n] = true
			}
		}
	}
	err = store.InTenant(ctx, g.pool, f.tenant, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		const gen = `(SELECT gen FROM projector_position WHERE tenant=$1)`
		rows, _ := tx.Query(ctx, `SELECT pbx_id, body FROM calls WHERE tenant=$1 AND gen=`+gen+` AND linkedid=$2`, f.tenant, f.callQuery)
		if err := forEachBody(rows, func(pbx string, b []byte) error {
			var c pb.CallView
			if err := proto.Unmarshal(b, &c); err != nil {
				return err
			}
			add(pbx, c.GetChannelNames()...)
			for _, ch := range c.GetChannels() {
				add(pbx, ch.GetName())
			}
			return nil
		}); err != nil {
			return err
		}
		rows, _ = tx.Query(ctx, `SELECT pbx_id, body FROM call_history WHERE tenant=$1 AND gen=`+gen+` AND linkedid=$2`, f.tenant, f.callQuery)
		if err := forEachBody(rows, func(pbx string, b []byte) error {
			var r pb.CallRecord
			if err := proto.Unmarshal(b, &r); err != nil {
				return err
			}
			add(pbx, r.GetChannels()...)
			return nil
		}); err != nil {
			return err
		}
		if len(pbxs) > 0 {
			return nil
		}
		// Not a linkedid: the uniqueid of a channel of a live call.
		rows, _ = tx.Query(ctx, `SELECT pbx_id, body FROM calls WHERE tenant=$1 AND gen=`+gen, f.tenant)
		return forEachBody(rows, func(pbx string, b []byte) error {
			var c pb.CallView
			if err := proto.Unmarshal(b, &c); err != nil {
				return err
			}
			if !slices.ContainsFunc(c.GetChannels(), func(ch *pb.Channel) bool { return ch.GetUniqueid() == f.callQuery }) {
				return nil
			}
			add(pbx, c.GetChannelNames()...)
			for _, ch := range c.GetChannels() {
				add(pbx, ch.GetName())
			}
			return nil
		})
	})
	if err != nil {
		return false, fmt.Errorf("resolve call %q: %w", f.callQuery, err)
	}
	if len(pbxs) == 0 {
		return false, nil
	}
	f.pbxs, f.channels = pbxs, channels
	return true, nil
}

func forEachBody(rows pgx.Rows, fn func(pbx string, body []byte) error) error {
	var pbx string
	var body []byte
	_, err := pgx.ForEachRow(rows, []any{&pbx, &body}, func() error { return fn(pbx, body) })
	return err
}

// logSub is one log subscription of a client.
type logSub struct {
	id     string
	c      *client
	f      *logFilter
	n      int // backlog entries asked for
	ended  atomic.Bool
	ctx    context.Context
	cancel context.CancelFunc

	mu sync.Mutex
	cc jetstream.ConsumeContext
}

func (c *client) subscribeLogs(m clientMessage) {
	if !subIDRe.MatchString(m.ID) {
		c.push(errorFrame("invalid", "subscribeLogs: id must be 1-64 characters of A-Z a-z 0-9 _ . : -", ""))
		return
	}
	n := defaultBacklog
	if m.Backlog != nil {
		if n = *m.Backlog; n < 0 || n > maxBacklog {
			c.push(errorFrame("invalid", "subscribeLogs: backlog must be 0 to 1000", m.ID))
			return
		}
	}
	f, err := newLogFilter(c.p.Tenant, m.Filter)
	if err != nil {
		c.push(errorFrame("invalid", "subscribeLogs: "+err.Error(), m.ID))
		return
	}
	c.subsMu.Lock()
	_, dup := c.subs[m.ID]
	if dup || len(c.subs) >= maxLogSubs {
		c.subsMu.Unlock()
		msg := "subscribeLogs: id already subscribed"
		if !dup {
			msg = "subscribeLogs: at most " + strconv.Itoa(maxLogSubs) + " log subscriptions per connection"
		}
		c.push(errorFrame("invalid", msg, m.ID))
		return
	}
	if c.subs == nil {
		c.subs = map[string]*logSub{}
	}
	s := &logSub{id: m.ID, c: c, f: f, n: n}
	s.ctx, s.cancel = context.WithCancel(c.ctx)
	c.subs[m.ID] = s
	c.subsMu.Unlock()
	c.g.metrics.logSubs.Inc()
	go s.run()
}

func (c *client) unsubscribeLogs(id string) {
	c.subsMu.Lock()
	s := c.subs[id]
	delete(c.subs, id)
	c.subsMu.Unlock()
	if s == nil {
		c.push(errorFrame("not_found", "unsubscribeLogs: no such subscription", id))
		return
	}
	s.stop()
}

// stopLogs ends every subscription of a closing connection.
func (c *client) stopLogs() {
	c.subsMu.Lock()
	subs := c.subs
	c.subs = nil
	c.subsMu.Unlock()
	for _, s := range subs {
		s.stop()
	}
}

func (s *logSub) stop() {
	if s.ended.Swap(true) {
		return
	}
	s.cancel()
	s.mu.Lock()
	if s.cc != nil {
		s.cc.Stop()
	}
	s.mu.Unlock()
	s.c.g.metrics.logSubs.Dec()
}

// fail ends a subscription that cannot be served, telling the client.
func (s *logSub) fail(code, msg string) {
	s.c.subsMu.Lock()
	if s.c.subs[s.id] == s {
		delete(s.c.subs, s.id)
	}
	s.c.subsMu.Unlock()
	if !s.ended.Load() {
		s.c.push(errorFrame(code, msg, s.id))
	}
	s.stop()
}

// run sends the backlog, then follows the stream from right after it:
// nothing is missed or sent twice between the two.
func (s *logSub) run() {
	g, f := s.c.g, s.f
	stream, err := g.js.Stream(s.ctx, bus.LogStream(f.tenant))
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		s.fail("not_found", "no logs for this tenant yet")
		return
	}
	if err != nil {
		s.internal("log stream", err)
		return
	}
	if f.callQuery != "" {
		found, err := g.resolveCall(s.ctx, f)
		if err != nil {
			s.internal("call lookup", err)
			return
		}
		if !found {
			s.fail("not_found", "no call with that linkedid or uniqueid")
			return
		}
	}
	info, err := stream.Info(s.ctx)
	if err != nil {
		s.internal("log stream", err)
		return
	}
	last := info.State.LastSeq
	entries, err := s.backlog(stream, info.State.FirstSeq, last)
	if err != nil {
		s.internal("log backlog", err)
		return
	}
	for i := 0; i < len(entries); i += entriesPerFrame {
		if !s.c.push(s.logsFrame(entries[i:min(i+entriesPerFrame, len(entries))], true)) {
			return
		}
	}
	if !s.c.push(&frame{kind: kindLogsSubscribed, sub: s, data: fmt.Appendf(nil, `{"type":"logsSubscribed","id":%s,"data":{"backlog":%d}}`, jsonString(s.id), len(entries))}) {
		return
	}
	cons, err := stream.OrderedConsumer(s.ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: f.subjects(), DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: last + 1,
		InactiveThreshold: time.Minute,
	})
	if err != nil {
		s.internal("log consumer", err)
		return
	}
	cc, err := cons.Consume(s.live, jetstream.PullMaxBytes(livePullBytes),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			if !s.ended.Load() {
				g.log.Debug("log subscription", "tenant", f.tenant, "err", err)
			}
		}))
	if err != nil {
		s.internal("log consumer", err)
		return
	}
	s.mu.Lock()
	s.cc = cc
	s.mu.Unlock()
	if s.ended.Load() {
		cc.Stop()
	}
}

func (s *logSub) internal(what string, err error) {
	if s.ctx.Err() != nil {
		s.stop()
		return
	}
	s.c.g.log.Warn("log subscription failed", "tenant", s.f.tenant, "what", what, "err", err)
	s.fail("internal", what+" unavailable, retry later")
}

// live handles one message of the live consumer (one at a time).
func (s *logSub) live(m jetstream.Msg) {
	if s.ended.Load() {
		return
	}
	md, err := m.Metadata()
	if err != nil {
		return
	}
	var out []logEntry
	s.decode(m.Data(), md.Sequence.Stream, func(e logEntry, pending bool) {
		if !pending {
			out = append(out, e)
		}
	})
	for i := 0; i < len(out); i += entriesPerFrame {
		if !s.c.push(s.logsFrame(out[i:min(i+entriesPerFrame, len(out))], false)) {
			return
		}
	}
}

// logEntry is one encoded LogEntry, with its place in the stream.
type logEntry struct {
	seq    uint64
	idx    int
	callID string // pending entries: the call id that would make them match
	data   []byte
}

func (s *logSub) logsFrame(es []logEntry, backlog bool) *frame {
	n := 64
	for _, e := range es {
		n += len(e.data) + 1
	}
	b := make([]byte, 0, n+len(s.id))
	b = append(b, `{"type":"logs","id":`...)
	b = append(b, jsonString(s.id)...)
	b = append(b, `,"backlog":`...)
	b = strconv.AppendBool(b, backlog)
	b = append(b, `,"data":{"entries":[`...)
	for i, e := range es {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, e.data...)
	}
	b = append(b, "]}}"...)
	return &frame{kind: kindLogs, sub: s, data: b}
}

// decode calls fn for each line of a log stream message that the filter
// lets through; pending lines (see logFilter.match) are passed too, with
// pending true, when there is a call filter.
func (s *logSub) decode(data []byte, seq uint64, fn func(e logEntry, pending bool)) {
	var ev pb.Event
	if err := proto.Unmarshal(data, &ev); err != nil || ev.GetTenant() != s.f.tenant {
		return
	}
	pbx := ev.GetPbxId()
	var file, level string
	var lines []*pb.LogLine
	switch p := ev.GetPayload().(type) {
	case *pb.Event_LogBatch:
		file, level, lines = p.LogBatch.GetFile(), p.LogBatch.GetLevel(), p.LogBatch.GetLines()
	case *pb.Event_LogLine: // stored before LogBatch existed
		file, level, lines = p.LogLine.GetFile(), p.LogLine.GetLevel(), []*pb.LogLine{p.LogLine}
	default:
		return
	}
	for i, l := range lines {
		s.f.learn(pbx, l)
		ok, pending := s.f.match(pbx, level, l)
		if !ok && !pending {
			continue
		}
		b, err := encodeEntry(pbx, file, level, seq, l)
		if err != nil {
			continue
		}
		fn(logEntry{seq: seq, idx: i, callID: l.GetCallId(), data: b}, pending)
	}
}

// encodeEntry writes a LogEntry: the line as protojson with its PBX, file
// and level always present, and its stream sequence.
func encodeEntry(pbx, file, level string, seq uint64, l *pb.LogLine) ([]byte, error) {
	l.File, l.Level = "", ""
	body, err := jsonOpts.Marshal(l)
	if err != nil {
		return nil, err
	}
	b := make([]byte, 0, len(body)+len(pbx)+len(file)+len(level)+64)
	b = append(b, `{"pbx_id":`...)
	b = append(b, jsonString(pbx)...)
	b = append(b, `,"file":`...)
	b = append(b, jsonString(file)...)
	b = append(b, `,"level":`...)
	b = append(b, jsonString(level)...)
	b = append(b, `,"stream_seq":"`...)
	b = strconv.AppendUint(b, seq, 10)
	b = append(b, '"')
	rest := strings.TrimLeft(string(body[1:]), " \t\n")
	if !strings.HasPrefix(rest, "}") {
		b = append(b, ',')
	}
	return append(b, rest...), nil
}

func jsonString(s string) []byte {
	b, _ := json.Marshal(s)
	return b
}

// backlog returns the last s.n entries up to sequence last that match,
// oldest first, reading the stream backwards in growing chunks.
func (s *logSub) backlog(stream jetstream.Stream, first, last uint64) ([]logEntry, error) {
	if s.n == 0 || last == 0 || last < first {
		return nil, nil
	}
	var found, pending []logEntry
	pendingBytes, scanned := 0, 0
	hi, span := last, uint64(firstChunk)
	for len(found) < s.n && scanned < scanLimit && last-hi < scanSeqs {
		if err := s.ctx.Err(); err != nil {
			return nil, err // unsubscribed or disconnected: stop reading
		}
		lo := first
		if hi-first+1 > span {
			lo = hi - span + 1
		}
		var chunk []logEntry
		known := len(s.f.callIDs)
		n, err := scanRange(s.ctx, stream, s.f.subjects(), lo, hi, scanLimit-scanned, func(seq uint64, data []byte) {
			s.decode(data, seq, func(e logEntry, isPending bool) {
				if !isPending {
					chunk = append(chunk, e)
					if len(chunk) > 2*s.n {
						chunk = slices.Delete(chunk, 0, len(chunk)-s.n) // only the newest can be kept
					}
				} else if len(pending) < maxCandidates && pendingBytes < scanLimit/8 {
					pending = append(pending, e)
					pendingBytes += len(e.data)
				}
			})
		})
		if err != nil {
			return nil, err
		}
		scanned += n
		found = append(chunk, found...)
		if len(s.f.callIDs) > known && len(pending) > 0 {
			// Lines read earlier (newer) whose call id this chunk tied to
			// the call.
			kept := pending[:0]
			for _, e := range pending {
				if s.f.callIDs[e.callID] {
					found = append(found, e)
				} else {
					kept = append(kept, e)
				}
			}
			pending = kept
			sortEntries(found)
		}
		if len(found) > s.n {
			found = found[len(found)-s.n:]
		}
		if lo <= first {
			break
		}
		hi, span = lo-1, min(span*4, scanSeqs)
	}
	return found, nil
}

func sortEntries(es []logEntry) {
	slices.SortFunc(es, func(a, b logEntry) int {
		if a.seq != b.seq {
			if a.seq < b.seq {
				return -1
			}
			return 1
		}
		return a.idx - b.idx
	})
}

// scanRange calls fn with each message of stream in [lo, hi] on subjects,
// in order, through a short-lived consumer, until it has read budget bytes
// or ctx ends; it returns the bytes read. The budget and ctx bound what one
// subscription can make the server read, whatever the chunk's size.
func scanRange(ctx context.Context, stream jetstream.Stream, subjects []string, lo, hi uint64, budget int, fn func(seq uint64, data []byte)) (int, error) {
	cfg := jetstream.ConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: lo,
		AckPolicy: jetstream.AckNonePolicy, MemoryStorage: true, InactiveThreshold: time.Minute,
	}
	if len(subjects) == 1 {
		cfg.FilterSubject = subjects[0]
	} else {
		cfg.FilterSubjects = subjects
	}
	cons, err := stream.CreateConsumer(ctx, cfg)
	if err != nil {
		return 0, fmt.Errorf("backlog consumer: %w", err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = stream.DeleteConsumer(dctx, cons.CachedInfo().Name)
	}()
	pending := cons.CachedInfo().NumPending
	read := 0
	for got := uint64(0); got < pending && read < budget; {
		if err := ctx.Err(); err != nil {
			return read, err
		}
		batch, err := cons.FetchNoWait(int(min(pending-got, 256)))
		if err != nil {
			return read, fmt.Errorf("backlog fetch: %w", err)
		}
		n, past := 0, false
		for m := range batch.Messages() {
			n++
			md, err := m.Metadata()
			if err != nil || past {
				continue
			}
			if md.Sequence.Stream > hi {
				past = true
				continue
			}
			read += len(m.Data())
			fn(md.Sequence.Stream, m.Data())
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return read, fmt.Errorf("backlog fetch: %w", err)
		}
		if n == 0 || past {
			break
		}
		got += uint64(n)
	}
	return read, nil
}
