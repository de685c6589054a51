package logline

import "strings"

// Entry is one log entry: a header line and the continuation lines that
// followed it. P is the caller's position type (e.g. a file offset): First is
// the position of the header line, Last that of the last line joined.
type Entry[P any] struct {
	Line
	First, Last P
	// Lines is the number of physical lines joined.
	Lines int
}

// Joiner assembles entries from physical lines: a line without a log header
// is appended (after a newline) to the message of the pending entry. An
// entry is complete when the next header line arrives, or when the caller
// decides the writer has finished it (Flush, e.g. after a quiet period).
type Joiner[P any] struct {
	parser  *Parser
	pend    Entry[P] // valid when pending
	pending bool
}

// NewJoiner returns a joiner using p (the default parser if nil).
func NewJoiner[P any](p *Parser) *Joiner[P] {
	if p == nil {
		p = NewParser(nil)
	}
	return &Joiner[P]{parser: p}
}

// Add feeds one physical line read at pos. When it starts a new entry, the
// previously pending one is returned (ok true).
func (j *Joiner[P]) Add(raw string, pos P) (done Entry[P], ok bool) {
	l, err := j.parser.Parse(raw)
	if err != nil { // a continuation
		text, cut := Sanitize(raw, j.parser.MaxBytes)
		if !j.pending {
			// nothing to continue (we started mid-message): an entry of its own
			j.pend, j.pending = Entry[P]{Line: Line{Message: text, Truncated: cut}, First: pos, Last: pos, Lines: 1}, true
			return done, false
		}
		j.appendText(text)
		j.pend.Last = pos
		j.pend.Lines++
		return done, false
	}
	done, ok = j.pend, j.pending
	j.pend, j.pending = Entry[P]{Line: l, First: pos, Last: pos, Lines: 1}, true
	return done, ok
}

func (j *Joiner[P]) appendText(text string) {
	e := &j.pend
	if e.Truncated {
		return // already at the cap: the rest is dropped
	}
	max := j.parser.MaxBytes
	if max <= 0 || len(e.Message)+1+len(text) <= max {
		e.Message += "\n" + text
		return
	}
	var b strings.Builder
	b.WriteString(e.Message)
	b.WriteString("\n")
	b.WriteString(text)
	e.Message, _ = Sanitize(b.String(), max) // cuts and marks
	if !strings.HasSuffix(e.Message, TruncatedMarker) {
		e.Message += TruncatedMarker
	}
	e.Truncated = true
}

// Pending reports whether an entry is waiting for more lines.
func (j *Joiner[P]) Pending() bool { return j.pending }

// Flush returns the pending entry, if any, as complete.
func (j *Joiner[P]) Flush() (Entry[P], bool) {
	if !j.pending {
		var zero Entry[P]
		return zero, false
	}
	e := j.pend
	j.pend, j.pending = Entry[P]{}, false
	return e, true
}
