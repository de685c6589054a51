package logtailer

import (
	"crypto/sha256"
	"encoding/binary"
	"hash"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/encoding/protowire"
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
// and SecurityEvent records.
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

	lines   []batchLine // reused: the first n are the open batch
	scratch []byte      // the LogBatch being encoded
	lineBuf []byte      // one LogLine being encoded
	ev      pb.Event
	h       hash.Hash
}

// batchLine is what a LogLine of the batch holds.
type batchLine struct {
	message, callID, threadID, sourceFile, function string
	channel, endpoint                               string
	sourceLine, verboseLevel                        int
	seconds                                         int64
	nanos                                           int32
	hasTime, truncated                              bool
	offset                                          int64
	lines                                           int
}

func (b *batcher) init(tenant, pbx, path string) {
	b.tenant, b.pbx, b.path = tenant, pbx, strings.ToValidUTF8(path, "\uFFFD")
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
		b.lines = append(b.lines, batchLine{})
	}
	var refs refsOf
	if ch := logline.Channel(e.Message); ch != "" {
		refs = refsOf{channel: ch, endpoint: ami.EndpointOfChannel(ch)}
	}
	if endpoint != "" && refs.endpoint == "" {
		refs.endpoint = endpoint
	}
	l := &b.lines[b.n]
	*l = batchLine{
		message: e.Message, callID: e.CallID, threadID: e.ThreadID, sourceFile: e.SourceFile, function: e.Function,
		channel: refs.channel, endpoint: refs.endpoint,
		sourceLine: e.SourceLine, verboseLevel: e.VerboseLevel,
		truncated: e.Truncated, offset: e.First.Start, lines: e.Lines,
	}
	if e.HasTime() {
		l.hasTime, l.seconds, l.nanos = true, e.Time.Unix(), int32(e.Time.Nanosecond())
		if b.at.IsZero() {
			b.at = e.Time
		}
	}
	b.n++
	b.bytes += len(e.Message) + len(e.CallID) + len(e.SourceFile) + len(e.Function) + len(refs.channel) + len(refs.endpoint) + 48
	b.end = e.Last.Pos
	return refs
}

// seal encodes the open batch into buf as a record and empties the batch.
func (b *batcher) seal(buf *[]byte) (*record, error) {
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
	data := b.appendBatchEvent((*buf)[:0], id, pbxTime, b.received)
	*buf = data
	msg := &nats.Msg{Subject: bus.LogSubject(b.tenant, b.pbx, b.level), Data: data, Header: nats.Header{"Content-Type": bus.ContentType}}
	r := &record{msg: msg, id: id, buf: buf, entries: b.n, pos: b.end}
	b.n, b.bytes = 0, 0
	return r, nil
}

// batchEvent returns the open batch as the pb.Event its encoding stands
// for (tests compare the two).
func (b *batcher) batchEvent(id string, pbxTime, received time.Time) *pb.Event {
	batch := &pb.LogBatch{File: b.path, FileId: b.fileID, Level: b.level}
	for _, l := range b.lines[:b.n] {
		ll := &pb.LogLine{
			Message: l.message, CallId: l.callID, ThreadId: l.threadID, SourceFile: l.sourceFile,
			SourceLine: int32(l.sourceLine), Function: l.function, VerboseLevel: uint32(l.verboseLevel),
			Offset: l.offset, Lines: uint32(l.lines), Truncated: l.truncated,
		}
		if l.hasTime {
			ll.PbxTime = &timestamppb.Timestamp{Seconds: l.seconds, Nanos: l.nanos}
		}
		if l.channel != "" || l.endpoint != "" {
			ll.Refs = &pb.PbxRefs{Channel: l.channel, Endpoint: l.endpoint}
		}
		batch.Lines = append(batch.Lines, ll)
	}
	return &pb.Event{Id: id, Tenant: b.tenant, PbxId: b.pbx, Source: pb.Source_SOURCE_LOG,
		PbxTime: timestamppb.New(pbxTime), ReceivedTime: timestamppb.New(received),
		Payload: &pb.Event_LogBatch{LogBatch: batch}}
}

// Field numbers of events.proto used by appendBatchEvent.
const (
	fEventID, fEventTenant, fEventPbxID, fEventSource, fEventPbxTime, fEventReceivedTime = 1, 2, 3, 4, 5, 6
	fEventLogBatch                                                                       = 51
	fBatchFile, fBatchFileID, fBatchLevel, fBatchLines                                   = 1, 2, 3, 4
	fLineMessage, fLineCallID, fLineThreadID, fLineSourceFile, fLineSourceLine           = 3, 4, 5, 6, 7
	fLineFunction, fLineVerboseLevel, fLinePbxTime, fLineRefs, fLineOffset               = 8, 9, 10, 11, 12
	fLineLines, fLineTruncated                                                           = 13, 14
	fRefsChannel, fRefsEndpoint                                                          = 3, 4
	fTimestampSeconds, fTimestampNanos                                                   = 1, 2
)

// appendBatchEvent appends the protobuf encoding of batchEvent to dst,
// written by hand: it is the tailer's hot path, and generic marshalling
// took a third of its time. The strings are valid UTF-8 (the parser
// sanitizes messages; the other fields are ASCII or parts of messages).
func (b *batcher) appendBatchEvent(dst []byte, id string, pbxTime, received time.Time) []byte {
	body := b.scratch[:0]
	body = appendString(body, fBatchFile, b.path)
	body = appendString(body, fBatchFileID, b.fileID)
	body = appendString(body, fBatchLevel, b.level)
	for i := range b.lines[:b.n] {
		b.lineBuf = appendLine(b.lineBuf[:0], &b.lines[i])
		body = protowire.AppendTag(body, fBatchLines, protowire.BytesType)
		body = protowire.AppendBytes(body, b.lineBuf)
	}
	b.scratch = body

	dst = appendString(dst, fEventID, id)
	dst = appendString(dst, fEventTenant, b.tenant)
	dst = appendString(dst, fEventPbxID, b.pbx)
	dst = appendVarint(dst, fEventSource, uint64(pb.Source_SOURCE_LOG))
	dst = appendTimestamp(dst, fEventPbxTime, pbxTime.Unix(), int32(pbxTime.Nanosecond()))
	dst = appendTimestamp(dst, fEventReceivedTime, received.Unix(), int32(received.Nanosecond()))
	dst = protowire.AppendTag(dst, fEventLogBatch, protowire.BytesType)
	return protowire.AppendBytes(dst, body)
}

func appendLine(dst []byte, l *batchLine) []byte {
	dst = appendString(dst, fLineMessage, l.message)
	dst = appendString(dst, fLineCallID, l.callID)
	dst = appendString(dst, fLineThreadID, l.threadID)
	dst = appendString(dst, fLineSourceFile, l.sourceFile)
	dst = appendVarint(dst, fLineSourceLine, uint64(int64(int32(l.sourceLine))))
	dst = appendString(dst, fLineFunction, l.function)
	dst = appendVarint(dst, fLineVerboseLevel, uint64(uint32(l.verboseLevel)))
	if l.hasTime {
		dst = appendTimestamp(dst, fLinePbxTime, l.seconds, l.nanos)
	}
	if l.channel != "" || l.endpoint != "" {
		n := 0
		if l.channel != "" {
			n += 1 + protowire.SizeBytes(len(l.channel))
		}
		if l.endpoint != "" {
			n += 1 + protowire.SizeBytes(len(l.endpoint))
		}
		dst = protowire.AppendTag(dst, fLineRefs, protowire.BytesType)
		dst = protowire.AppendVarint(dst, uint64(n))
		dst = appendString(dst, fRefsChannel, l.channel)
		dst = appendString(dst, fRefsEndpoint, l.endpoint)
	}
	dst = appendVarint(dst, fLineOffset, uint64(l.offset))
	dst = appendVarint(dst, fLineLines, uint64(uint32(l.lines)))
	if l.truncated {
		dst = appendVarint(dst, fLineTruncated, 1)
	}
	return dst
}

// appendString appends a string field, omitted when empty (proto3).
func appendString(dst []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return dst
	}
	dst = protowire.AppendTag(dst, num, protowire.BytesType)
	return protowire.AppendString(dst, s)
}

// appendVarint appends a varint field, omitted when zero (proto3).
func appendVarint(dst []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return dst
	}
	dst = protowire.AppendTag(dst, num, protowire.VarintType)
	return protowire.AppendVarint(dst, v)
}

// appendTimestamp appends a google.protobuf.Timestamp field (always
// present: it is a message).
func appendTimestamp(dst []byte, num protowire.Number, seconds int64, nanos int32) []byte {
	n := 0
	if seconds != 0 {
		n += 1 + protowire.SizeVarint(uint64(seconds))
	}
	if nanos != 0 {
		n += 1 + protowire.SizeVarint(uint64(int64(nanos)))
	}
	dst = protowire.AppendTag(dst, num, protowire.BytesType)
	dst = protowire.AppendVarint(dst, uint64(n))
	dst = appendVarint(dst, fTimestampSeconds, uint64(seconds))
	return appendVarint(dst, fTimestampNanos, uint64(int64(nanos)))
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
