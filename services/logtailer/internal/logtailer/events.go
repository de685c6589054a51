package logtailer

import (
	"crypto/sha256"
	"encoding/binary"
	"hash"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/pbxpulse/pbxpulse/pkg/ami"
	"github.com/pbxpulse/pbxpulse/pkg/bus"
	pb "github.com/pbxpulse/pbxpulse/pkg/pbxpulsev1"
	"github.com/pbxpulse/pbxpulse/services/logtailer/internal/logline"
	"github.com/pbxpulse/pbxpulse/services/logtailer/internal/tail"
)

// Batch limits: a run of same-level entries is cut into messages of at most
// this many entries or (roughly) bytes. Enough to make a busy file cost far
// fewer messages than lines; small enough for a few dozen to be in flight.
const (
	maxBatchEntries = 256
	maxBatchBytes   = 64 << 10
)

// refsOf is what an entry concerns.
type refsOf struct {
	channel, endpoint string
}

// batcher builds a follower's messages: the open LogBatch, and the LogStats
// and SecurityEvent records. Its protobuf objects are reused from one
// message to the next (they are encoded before being reset).
type batcher struct {
	tenant, pbx, path string

	level    string
	fileID   string
	n        int
	bytes    int
	first    int64         // offset of the first entry
	end      tail.Position // just after the last entry
	at       time.Time     // date of the first dated entry
	received time.Time

	lines []*pb.LogLine
	times []*timestamppb.Timestamp
	refs  []*pb.PbxRefs
	batch pb.LogBatch
	ev    pb.Event
	h     hash.Hash
}

func (b *batcher) init(tenant, pbx, path string) {
	b.tenant, b.pbx, b.path = tenant, pbx, path
	b.h = sha256.New()
}

func (b *batcher) empty() bool { return b.n == 0 }

func (b *batcher) full() bool { return b.n >= maxBatchEntries || b.bytes >= maxBatchBytes }

// fits reports whether e can join the open batch.
func (b *batcher) fits(e logline.Entry[tail.Line]) bool {
	return b.n == 0 || e.Level == b.level && e.First.FileID == b.fileID && b.bytes+len(e.Message) <= maxBatchBytes
}

// add appends e to the open batch (which it must fit); endpoint, when set,
// is what the entry concerns beyond the channel its message names.
func (b *batcher) add(e logline.Entry[tail.Line], now time.Time, endpoint string) refsOf {
	if b.n == 0 {
		b.level, b.fileID, b.first, b.received, b.at = e.Level, e.First.FileID, e.First.Start, now, time.Time{}
	}
	if b.n == len(b.lines) {
		b.lines = append(b.lines, &pb.LogLine{})
		b.times = append(b.times, &timestamppb.Timestamp{})
		b.refs = append(b.refs, &pb.PbxRefs{})
	}
	ll := b.lines[b.n]
	ll.Reset()
	ll.Message = e.Message
	ll.CallId = e.CallID
	ll.ThreadId = e.ThreadID
	ll.SourceFile = e.SourceFile
	ll.SourceLine = int32(e.SourceLine)
	ll.Function = e.Function
	ll.VerboseLevel = uint32(e.VerboseLevel)
	ll.Offset = e.First.Start
	ll.Lines = uint32(e.Lines)
	ll.Truncated = e.Truncated
	if e.HasTime() {
		ts := b.times[b.n]
		ts.Seconds, ts.Nanos = e.Time.Unix(), int32(e.Time.Nanosecond())
		ll.PbxTime = ts
		if b.at.IsZero() {
			b.at = e.Time
		}
	}
	var refs refsOf
	if ch := logline.Channel(e.Message); ch != "" {
		refs = refsOf{channel: ch, endpoint: ami.EndpointOfChannel(ch)}
	}
	if endpoint != "" && refs.endpoint == "" {
		refs.endpoint = endpoint
	}
	if refs != (refsOf{}) {
		r := b.refs[b.n]
		r.Reset()
		r.Channel, r.Endpoint = refs.channel, refs.endpoint
		ll.Refs = r
	}
	b.n++
	b.bytes += len(e.Message) + len(e.CallID) + len(e.SourceFile) + len(e.Function) + 48
	b.end = e.Last.Pos
	return refs
}

// seal encodes the open batch into buf as a record and empties the batch.
func (b *batcher) seal(buf *[]byte) (*record, error) {
	b.batch.Reset()
	b.batch.File, b.batch.FileId, b.batch.Level, b.batch.Lines = b.path, b.fileID, b.level, b.lines[:b.n]

	b.h.Reset()
	b.hashString("batch")
	b.hashString(b.path)
	b.hashString(b.fileID)
	b.hashUint(uint64(b.first), uint64(b.end.Offset))
	b.hashString(b.level)
	id := b.id(b.at)

	pbxTime := b.at
	if pbxTime.IsZero() {
		pbxTime = b.received
	}
	ev := b.envelope(id, pbxTime, b.received)
	ev.Payload = &pb.Event_LogBatch{LogBatch: &b.batch}
	r, err := b.record(ev, buf)
	if err != nil {
		return nil, err
	}
	r.entries, r.pos = b.n, b.end
	b.n, b.bytes = 0, 0
	return r, nil
}

// statsRecord encodes the counts of s's open minute. Identical counts get
// the same id: published again after a restart, JetStream stores them once.
func (b *batcher) statsRecord(s minuteStats, now time.Time, buf *[]byte) (*record, error) {
	st := &pb.LogStats{File: b.path, Minute: timestamppb.New(time.Unix(s.Minute, 0)), Levels: make([]*pb.LevelCount, 0, len(s.Counts))}
	b.h.Reset()
	b.hashString("stats")
	b.hashString(b.path)
	b.hashUint(uint64(s.Minute))
	for _, c := range s.Counts {
		st.Levels = append(st.Levels, &pb.LevelCount{Level: c.Level, Count: c.N})
		st.Total += c.N
		b.hashString(c.Level)
		b.hashUint(c.N)
	}
	minute := time.Unix(s.Minute, 0)
	ev := b.envelope(b.id(minute), minute, now)
	ev.Payload = &pb.Event_LogStats{LogStats: st}
	return b.record(ev, buf)
}

// securityRecord encodes the security event of entry e. Its id depends only
// on the entry's text (date, thread, message): the same event read from two
// files (security and full) is stored once.
func (b *batcher) securityRecord(e logline.Entry[tail.Line], s *pb.SecurityEvent, refs refsOf, now time.Time, buf *[]byte) (*record, error) {
	at, ok := logline.ParseEventTV(s.GetEventTv())
	if !ok {
		at = e.Time
	}
	b.h.Reset()
	b.hashString("security")
	b.hashString(e.RawTime)
	b.hashString(e.ThreadID)
	b.hashString(e.Message)
	id := b.id(at)
	if at.IsZero() {
		at = now
	}
	ev := b.envelope(id, at, now)
	if refs != (refsOf{}) {
		ev.Refs = &pb.PbxRefs{Channel: refs.channel, Endpoint: refs.endpoint}
	}
	ev.Payload = &pb.Event_SecurityEvent{SecurityEvent: s}
	return b.record(ev, buf)
}

func (b *batcher) envelope(id string, pbxTime, received time.Time) *pb.Event {
	ev := &b.ev
	ev.Reset()
	ev.Id, ev.Tenant, ev.PbxId, ev.Source = id, b.tenant, b.pbx, pb.Source_SOURCE_LOG
	ev.PbxTime, ev.ReceivedTime = timestamppb.New(pbxTime), timestamppb.New(received)
	return ev
}

func (b *batcher) record(ev *pb.Event, buf *[]byte) (*record, error) {
	msg, err := bus.AppendMessage((*buf)[:0], ev)
	if err != nil {
		return nil, err
	}
	*buf = msg.Data
	return &record{msg: msg, id: ev.Id, buf: buf}, nil
}

func (b *batcher) hashString(s string) {
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(s)))
	b.h.Write(n[:])
	b.h.Write([]byte(s))
}

func (b *batcher) hashUint(vs ...uint64) {
	var n [8]byte
	for _, v := range vs {
		binary.BigEndian.PutUint64(n[:], v)
		b.h.Write(n[:])
	}
}

// id is a UUIDv7 whose time is at (zero: the entries carry no readable
// date, and the time bits are zero so the id stays the same when they are
// read again) and whose other bits are the hash of what was written to b.h
// (besides tenant and PBX), so that a message built again from the same
// entries gets the same id and JetStream's duplicate window stores it once.
func (b *batcher) id(at time.Time) string {
	b.hashString(b.tenant)
	b.hashString(b.pbx)
	var sum [sha256.Size]byte
	b.h.Sum(sum[:0])
	var u uuid.UUID
	var ms uint64
	if !at.IsZero() {
		ms = uint64(max(at.UnixMilli(), 0))
	}
	u[0], u[1], u[2], u[3], u[4], u[5] = byte(ms>>40), byte(ms>>32), byte(ms>>24), byte(ms>>16), byte(ms>>8), byte(ms)
	copy(u[6:], sum[:10])
	u[6] = 0x70 | u[6]&0x0f // version 7
	u[8] = 0x80 | u[8]&0x3f // RFC 9562 variant
	return u.String()
}
