package projection

import (
	"encoding/binary"
)

// Seen remembers the ids of the events applied within the last window
// stream sequences, so that an event stored twice (published again after
// JetStream's own duplicate window, or by two collectors) is applied once.
// Whether an event counts as a duplicate depends only on the stream, never
// on when the projector restarted: the set is persisted with every commit
// and reloaded, so a replay decides exactly as the live run did.
type Seen struct {
	window uint64
	ids    map[uint64]uint64 // id hash -> stream sequence it was applied at
	order  []seenEntry       // in sequence order from head, for eviction
	head   int
	commit []byte // entries added since the last take, encoded
}

type seenEntry struct{ seq, hash uint64 }

func NewSeen(window uint64) *Seen {
	return &Seen{window: window, ids: map[uint64]uint64{}}
}

// hashID is stable across processes (it is persisted): FNV-1a, 64 bits. With
// a window of 100,000 events a collision is a one in 10^9 chance.
func hashID(id string) uint64 {
	// hash/fnv's, written out: fnv.New64a costs an allocation per event.
	h := uint64(14695981039346656037)
	for i := 0; i < len(id); i++ {
		h ^= uint64(id[i])
		h *= 1099511628211
	}
	return h
}

// Duplicate reports whether id was applied within the window before seq,
// and records it as applied at seq when it was not.
func (s *Seen) Duplicate(seq uint64, id string) bool {
	if id == "" || s.window == 0 {
		return false
	}
	h := hashID(id)
	if prev, ok := s.ids[h]; ok && prev+s.window > seq {
		return true
	}
	s.add(seq, h)
	s.commit = binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(s.commit, seq), h)
	return false
}

func (s *Seen) add(seq, h uint64) {
	s.ids[h] = seq
	s.order = append(s.order, seenEntry{seq, h})
	for s.head < len(s.order) && s.order[s.head].seq+s.window <= seq {
		if e := s.order[s.head]; s.ids[e.hash] == e.seq {
			delete(s.ids, e.hash)
		}
		s.head++
	}
	if s.head > len(s.order)/2 {
		s.order = append(s.order[:0], s.order[s.head:]...)
		s.head = 0
	}
}

// Take returns the entries added since the last take, for storing.
func (s *Seen) Take() []byte {
	b := s.commit
	s.commit = nil
	return b
}

// Load adds stored entries (as take encoded them), skipping those already
// out of the window of upto.
func (s *Seen) Load(b []byte, upto uint64) {
	for ; len(b) >= 16; b = b[16:] {
		seq, h := binary.BigEndian.Uint64(b), binary.BigEndian.Uint64(b[8:])
		if seq+s.window > upto {
			s.add(seq, h)
		}
	}
}
