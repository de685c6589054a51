// Package logline parses the lines Asterisk writes to its log files
// (/var/log/asterisk/full, messages, ...) and joins multi-line messages.
//
// The file channel format of Asterisk 22 is
//
//	[<date>] <LEVEL>[<thread>][C-<call id>] <file>: <message>
//
// where the date follows logger.conf's dateformat (the default "%b %e %T",
// e.g. "Nov 21 19:09:10", or "%F %T.%3q", e.g. "2026-11-21 19:09:31.767"),
// the call id part only appears for lines logged on behalf of a call, and
// some logger settings and versions write "<file>:<line> <function>:" (or
// the syslog form "<file>:<line> in <function>:") instead of "<file>:".
// The startup banner has a date but no level. A line that does not start
// with such a header continues the message of the previous line.
package logline

import (
	"errors"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// DefaultMaxBytes caps a message (one line or several joined).
const DefaultMaxBytes = 64 << 10

// TruncatedMarker is appended to a message that was cut at the cap.
const TruncatedMarker = " …[truncated]"

// ErrContinuation is returned by Parse for a line without a log header: it
// continues the message of the previous line.
var ErrContinuation = errors.New("logline: not a log header (continuation line)")

// Line is one parsed log entry.
type Line struct {
	// Time is the entry's timestamp; zero when the date could not be read
	// (custom dateformat).
	Time time.Time
	// RawTime is the text between the leading brackets.
	RawTime string
	// Level is the Asterisk level name as written (VERBOSE, DEBUG, NOTICE,
	// WARNING, ERROR, DTMF, SECURITY or a dynamic level); empty for the
	// banner and for orphan continuation lines.
	Level string
	// VerboseLevel is 2, 3 or 4 when the message carried the matching
	// verbose prefix ("  == ", "    -- ", "       > "), else 0.
	VerboseLevel int
	ThreadID     string
	// CallID is the Asterisk call identifier, e.g. "C-00000001".
	CallID     string
	SourceFile string
	SourceLine int
	Function   string
	Message    string
	// Truncated is set when the message was cut at the cap.
	Truncated bool
}

// HasTime reports whether the timestamp could be read.
func (l Line) HasTime() bool { return !l.Time.IsZero() }

// Parser parses lines; the zero value is not usable, use NewParser or Parse.
// A Parser is not safe for concurrent use.
type Parser struct {
	// Location is the PBX's time zone (log dates carry none).
	Location *time.Location
	// Now is used to guess the year of dates that have none.
	Now func() time.Time
	// MaxBytes caps the message.
	MaxBytes int

	// the last date read: consecutive lines mostly share it
	lastStamp string
	lastTime  time.Time
}

// NewParser returns a parser for logs written in loc (time.Local if nil).
func NewParser(loc *time.Location) *Parser {
	if loc == nil {
		loc = time.Local
	}
	return &Parser{Location: loc, Now: time.Now, MaxBytes: DefaultMaxBytes}
}

// Parse parses one line with the local time zone and the current year.
func Parse(line string) (Line, error) { return NewParser(nil).Parse(line) }

// Sanitize removes the line terminator, makes the text valid UTF-8 and caps
// it at max bytes (appending TruncatedMarker); it reports whether it cut.
func Sanitize(s string, max int) (string, bool) {
	s = strings.TrimRight(s, "\r\n")
	truncated := false
	if max > 0 && len(s) > max {
		s, truncated = s[:max], true
	}
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
		if max > 0 && len(s) > max { // replacement runes are longer than the bytes they replace
			s, truncated = s[:max], true
		}
	}
	if truncated {
		// do not leave half a rune at the cut
		for len(s) > 0 {
			r, size := utf8.DecodeLastRuneInString(s)
			if r != utf8.RuneError || size != 1 {
				break
			}
			s = s[:len(s)-1]
		}
		s += TruncatedMarker
	}
	return s, truncated
}

// Parse parses one line. It returns ErrContinuation for a line that has no
// log header. A header whose date cannot be read still parses (Time zero).
func (p *Parser) Parse(raw string) (Line, error) {
	s, truncated := Sanitize(raw, p.MaxBytes)
	if len(s) == 0 || s[0] != '[' {
		return Line{}, ErrContinuation
	}
	end := strings.IndexByte(s, ']')
	if end < 0 {
		return Line{}, ErrContinuation
	}
	stamp, rest := s[1:end], s[end+1:]
	if rest != "" && rest[0] != ' ' {
		return Line{}, ErrContinuation
	}
	rest = strings.TrimPrefix(rest, " ")
	l := Line{RawTime: stamp, Truncated: truncated}
	if stamp == p.lastStamp && stamp != "" {
		l.Time = p.lastTime
	} else {
		l.Time = p.parseTime(stamp)
		p.lastStamp, p.lastTime = stamp, l.Time
	}

	level, tid, callID, after, ok := parseLevel(rest)
	if !ok {
		// "[date] text": the banner, if the date really is a date. Anything
		// else ("[general]" in a dumped config) continues the previous entry.
		if !l.HasTime() {
			return Line{}, ErrContinuation
		}
		l.Message = strings.TrimRight(rest, " \t\r\n")
		return l, nil
	}
	l.Level, l.ThreadID, l.CallID = level, tid, callID
	after = strings.TrimPrefix(after, ":")
	after = strings.TrimLeft(after, " ")
	l.SourceFile, l.SourceLine, l.Function, after = parseSource(after)
	if l.SourceFile != "" {
		after = strings.TrimPrefix(after, " ") // the separator; more blanks belong to the message
	}
	if l.Level == "VERBOSE" {
		l.VerboseLevel, after = verbosePrefix(after)
	}
	l.Message = strings.TrimRight(strings.TrimLeft(after, " "), " \t\r\n")
	return l, nil
}

// dated layouts with a year, in the order they are tried
var yearLayouts = []string{
	"2006-01-02 15:04:05.000",
	"2006-01-02 15:04:05",
	"2006-01-02T15:04:05.000",
	"2006-01-02T15:04:05",
	"2006-01-02 15:04:05.000000",
}

// layouts without a year ("%b %e %T", Asterisk's default)
var noYearLayouts = []string{
	"Jan _2 15:04:05",
	"Jan _2 15:04:05.000",
	"Jan 2 15:04:05",
}

func (p *Parser) parseTime(s string) time.Time {
	if len(s) < 14 || len(s) > 40 {
		return time.Time{}
	}
	loc := p.Location
	if loc == nil {
		loc = time.Local
	}
	if s[0] >= '0' && s[0] <= '9' {
		for _, layout := range yearLayouts {
			if len(layout) != len(s) {
				continue
			}
			if t, err := time.ParseInLocation(layout, s, loc); err == nil {
				return t
			}
		}
		return time.Time{}
	}
	for _, layout := range noYearLayouts {
		t, err := time.ParseInLocation(layout, s, loc)
		if err != nil {
			continue
		}
		now := time.Now
		if p.Now != nil {
			now = p.Now
		}
		n := now().In(loc)
		t = time.Date(n.Year(), t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second(), t.Nanosecond(), loc)
		// a December line read in January belongs to last year
		if t.After(n.Add(48 * time.Hour)) {
			t = t.AddDate(-1, 0, 0)
		}
		return t
	}
	return time.Time{}
}

// parseLevel reads `LEVEL[thread]` and an optional `[C-xxxxxxxx]`.
func parseLevel(s string) (level, tid, callID, rest string, ok bool) {
	i := 0
	for i < len(s) && i <= 32 && (s[i] >= 'A' && s[i] <= 'Z' || i > 0 && (s[i] >= '0' && s[i] <= '9' || s[i] == '_')) {
		i++
	}
	if i == 0 || i >= len(s) || s[i] != '[' {
		return "", "", "", "", false
	}
	level = s[:i]
	s = s[i+1:]
	j := 0
	for j < len(s) && j < 20 && s[j] >= '0' && s[j] <= '9' {
		j++
	}
	if j == 0 || j >= len(s) || s[j] != ']' {
		return "", "", "", "", false
	}
	tid, s = s[:j], s[j+1:]
	if strings.HasPrefix(s, "[C-") {
		k := 3
		for k < len(s) && k < 3+16 && isHex(s[k]) {
			k++
		}
		if k > 3 && k < len(s) && s[k] == ']' {
			callID, s = s[1:k], s[k+1:]
		}
	}
	if s != "" && s[0] != ' ' && s[0] != ':' {
		return "", "", "", "", false
	}
	return level, tid, callID, s, true
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// parseSource reads "file.c:", "file.c:123 func:" or "file.c:123 in func:".
func parseSource(s string) (file string, line int, function, rest string) {
	colon := strings.IndexByte(s, ':')
	if colon <= 0 || !isSourceFile(s[:colon]) {
		return "", 0, "", s
	}
	file, rest = s[:colon], s[colon+1:]
	d := 0
	for d < len(rest) && d < 9 && rest[d] >= '0' && rest[d] <= '9' {
		d++
	}
	if d == 0 {
		return file, 0, "", rest
	}
	if d < len(rest) && rest[d] != ' ' {
		return file, 0, "", rest // "file.c:12abc": not a line number
	}
	line, _ = strconv.Atoi(rest[:d])
	rest = strings.TrimPrefix(rest[d:], " ")
	fn := strings.TrimPrefix(rest, "in ")
	k := 0
	for k < len(fn) && k < 128 && isIdent(fn[k]) {
		k++
	}
	if k > 0 && k < len(fn) && fn[k] == ':' {
		return file, line, fn[:k], fn[k+1:]
	}
	return file, line, "", rest
}

func isSourceFile(s string) bool {
	if len(s) > 128 {
		return false
	}
	dot := strings.LastIndexByte(s, '.')
	if dot <= 0 || dot == len(s)-1 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(isIdent(c) || c == '.' || c == '/' || c == '-' || c == '+') {
			return false
		}
	}
	return true
}

func isIdent(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// verbose prefixes of ast_verb(2..4): "  == ", "    -- ", "       > ",
// matched after the leading blanks (some versions trim them)
var verbosePrefixes = []struct {
	prefix string
	level  int
}{
	{"== ", 2},
	{"-- ", 3},
	{"> ", 4},
}

func verbosePrefix(s string) (int, string) {
	t := strings.TrimLeft(s, " ")
	for _, v := range verbosePrefixes {
		if strings.HasPrefix(t, v.prefix) {
			return v.level, t[len(v.prefix):]
		}
	}
	return 0, s
}

// Format writes l back in Asterisk's file format (the "file.c:line func:"
// variant when a line number is known). Parse(Format(l)) gives l back for
// lines that have a level and a source file.
func Format(l Line) string {
	var b strings.Builder
	b.WriteString("[")
	b.WriteString(l.RawTime)
	b.WriteString("] ")
	if l.Level == "" {
		b.WriteString(l.Message)
		return b.String()
	}
	b.WriteString(l.Level)
	b.WriteString("[")
	b.WriteString(l.ThreadID)
	b.WriteString("]")
	if l.CallID != "" {
		b.WriteString("[" + l.CallID + "]")
	}
	b.WriteString(" ")
	if l.SourceFile != "" {
		b.WriteString(l.SourceFile + ":")
		if l.SourceLine > 0 || l.Function != "" {
			b.WriteString(strconv.Itoa(l.SourceLine))
			if l.Function != "" {
				b.WriteString(" " + l.Function + ":")
			} else {
				// a second blank: a message starting "word:" is not a function
				b.WriteString(" ")
			}
		}
		b.WriteString(" ")
	}
	switch l.VerboseLevel {
	case 2:
		b.WriteString("  == ")
	case 3:
		b.WriteString("    -- ")
	case 4:
		b.WriteString("       > ")
	}
	b.WriteString(l.Message)
	return b.String()
}
