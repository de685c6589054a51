package logtailer

import (
	"encoding/json"
	"fmt"
	"slices"
	"time"
)

// minuteStats counts a file's entries per level in the minute being read.
//
// The minute of an entry is that of its log date, so counts do not depend on
// when the file is read (a backlog read after a restart lands in the minutes
// it was written in). An entry dated before the open minute (threads writing
// out of order around a minute boundary) counts in the open minute; an entry
// without a readable date counts in the open minute, or in the current
// minute when none is open.
//
// The state is saved with the file position (tail.CommitMeta) as it was
// just after the entry at that position: after a restart the entries before
// the position are counted already and those after it are read and counted
// again, so a minute is neither lost nor counted twice.
type minuteStats struct {
	// Minute is the open minute (Unix seconds of its start); 0 when none.
	Minute int64 `json:"minute,omitempty"`
	// Counts of the open minute by level token, sorted by level.
	Counts []levelCount `json:"counts,omitempty"`
	// Dirty: counted since the counts were last published.
	Dirty bool `json:"dirty,omitempty"`
}

type levelCount struct {
	Level string `json:"level"`
	N     uint64 `json:"n"`
}

// statsGrace is how long after its end a minute of a quiet file is
// published: lines of the minute still on their way into the file get in.
const statsGrace = 2 * time.Second

// minuteOf returns the Unix second starting the minute of t.
func minuteOf(t time.Time) int64 {
	s := t.Unix()
	return s - (s%60+60)%60
}

// place returns the minute an entry dated at (zero: no date) is counted in,
// and whether that closes the open minute first.
func (s *minuteStats) place(at time.Time, now time.Time) (minute int64, closes bool) {
	if at.IsZero() {
		if s.Minute != 0 {
			return s.Minute, false
		}
		return minuteOf(now), false
	}
	m := minuteOf(at)
	switch {
	case s.Minute == 0:
		return m, false
	case m > s.Minute:
		return m, true
	default:
		return s.Minute, false
	}
}

// open starts counting minute m (the previous counts are gone).
func (s *minuteStats) open(m int64) {
	s.Minute, s.Counts, s.Dirty = m, s.Counts[:0], false
}

// add counts one entry of level token lvl in the open minute.
func (s *minuteStats) add(lvl string) {
	s.Dirty = true
	for i := range s.Counts {
		if s.Counts[i].Level == lvl {
			s.Counts[i].N++
			return
		}
	}
	i, _ := slices.BinarySearchFunc(s.Counts, lvl, func(c levelCount, l string) int {
		switch {
		case c.Level < l:
			return -1
		case c.Level > l:
			return 1
		}
		return 0
	})
	s.Counts = slices.Insert(s.Counts, i, levelCount{Level: lvl, N: 1})
}

// due reports whether the open minute should be published because it is
// over and the file is quiet.
func (s *minuteStats) due(now time.Time) bool {
	return s.Dirty && s.Minute != 0 && now.Unix() >= s.Minute+60+int64(statsGrace/time.Second)
}

// snapshot returns a copy that later counting does not change.
func (s *minuteStats) snapshot() minuteStats {
	c := *s
	c.Counts = slices.Clone(s.Counts)
	return c
}

func (s minuteStats) marshal() (json.RawMessage, error) {
	return json.Marshal(s)
}

// restoreStats reads the state saved with a position; empty meta is a fresh
// start.
func restoreStats(meta json.RawMessage) (minuteStats, error) {
	var s minuteStats
	if len(meta) == 0 {
		return s, nil
	}
	if err := json.Unmarshal(meta, &s); err != nil {
		return minuteStats{}, fmt.Errorf("saved log counts: %w", err)
	}
	slices.SortFunc(s.Counts, func(a, b levelCount) int {
		switch {
		case a.Level < b.Level:
			return -1
		case a.Level > b.Level:
			return 1
		}
		return 0
	})
	return s, nil
}
