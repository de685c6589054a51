package projection

import (
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	pb "github.com/pbxpulse/pbxpulse/pkg/pbxpulsev1"
)

// DecodeEvent decodes a stored event, accepting exactly what
// proto.Unmarshal accepts, into the same message. The event's strings may
// share data's memory: data must not change afterwards.
//
// It is the projector's largest cost per event, so it first tries
// vtprotobuf's generated decoder in its unsafe mode: its strings share
// data's memory instead of each being copied (NATS hands every message
// its own buffer and never reuses it), which takes a third of
// proto.Unmarshal's time and a quarter of its allocations. That decoder
// does not check that strings are UTF-8, which proto3 requires and
// Postgres's text columns enforce (one bad string would fail every commit
// of its batch), so eventStrings checks them on the wire. Anything that
// fails either way goes to proto.Unmarshal, whose verdict and error are
// the reference.
func DecodeEvent(data []byte) (*pb.Event, error) {
	ev := &pb.Event{}
	if ev.UnmarshalVTUnsafe(data) == nil && eventStrings.valid(data, 0) {
		return ev, nil
	}
	ev = &pb.Event{}
	if err := proto.Unmarshal(data, ev); err != nil {
		return nil, err
	}
	return ev, nil
}

// eventStrings finds an Event's strings on the wire.
var eventStrings = newWireStrings((&pb.Event{}).ProtoReflect().Descriptor(), map[protoreflect.FullName]*wireStrings{})

// wireStrings is where a message's strings are, by field number: its
// string fields and the messages that hold more (those that hold none, a
// Timestamp, are skipped whole).
type wireStrings struct {
	fields []wireField
}

type wireField struct {
	str bool
	msg *wireStrings
}

// maxWireDepth bounds the nesting valid follows (the schema's own is a
// handful); deeper data is left to proto.Unmarshal.
const maxWireDepth = 64

func newWireStrings(md protoreflect.MessageDescriptor, known map[protoreflect.FullName]*wireStrings) *wireStrings {
	if w, ok := known[md.FullName()]; ok {
		return w // a message that contains itself
	}
	w := &wireStrings{}
	known[md.FullName()] = w
	fs := md.Fields()
	top := 0
	for i := range fs.Len() {
		top = max(top, int(fs.Get(i).Number()))
	}
	fields := make([]wireField, top+1)
	any := false
	for i := range fs.Len() {
		switch f := fs.Get(i); f.Kind() {
		case protoreflect.StringKind:
			fields[f.Number()].str, any = true, true
		case protoreflect.MessageKind:
			if sub := newWireStrings(f.Message(), known); sub != nil {
				fields[f.Number()].msg, any = sub, true
			}
		}
	}
	if !any {
		delete(known, md.FullName())
		return nil
	}
	w.fields = fields
	return w
}

// valid reports whether every string in b, a message of w's type, is
// UTF-8; false also when b is not well-formed. It runs on every event, so
// it reads the wire itself for the common cases (one-byte tags and
// lengths) and leaves the rest to protowire.
func (w *wireStrings) valid(b []byte, depth int) bool {
	if depth > maxWireDepth {
		return false
	}
	for len(b) > 0 {
		var num protowire.Number
		var typ protowire.Type
		if c := b[0]; c < 0x80 {
			num, typ, b = protowire.Number(c>>3), protowire.Type(c&7), b[1:]
		} else {
			var n int
			if num, typ, n = protowire.ConsumeTag(b); n < 0 {
				return false
			}
			b = b[n:]
		}
		if typ != protowire.BytesType {
			n := protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return false
			}
			b = b[n:]
			continue
		}
		var v []byte
		if len(b) > 0 && b[0] < 0x80 && int(b[0]) < len(b) {
			v, b = b[1:1+b[0]], b[1+b[0]:]
		} else {
			n := 0
			if v, n = protowire.ConsumeBytes(b); n < 0 {
				return false
			}
			b = b[n:]
		}
		if int(num) >= len(w.fields) {
			continue // unknown: kept as bytes
		}
		switch f := w.fields[num]; {
		case f.str:
			if !utf8.Valid(v) {
				return false
			}
		case f.msg != nil:
			if !f.msg.valid(v, depth+1) {
				return false
			}
		}
	}
	return true
}
