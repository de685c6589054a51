// Package tail follows a growing log file from a remembered position.
//
// A Tailer hands out complete lines (a last line without its newline waits
// until the newline is written) with the position just after each. The
// caller commits a position once it has safely handed the lines up to it
// on (here: JetStream acknowledged them); the position is saved atomically
// in a state directory, and a new Tailer for the same path resumes from it,
// so a restart neither loses nor repeats lines.
//
// Files are polled. Handled: the file not existing yet; rotation by rename
// (a different file at the path: the old one is read to its end first, then
// the new one from its start, also across a restart as long as the rotated
// file sits next to the path, e.g. full.1); copy-truncate (the file got
// shorter than the position, or its first line changed: start again at 0,
// so also when it grew past the old position before the next poll);
// deletion and re-creation. Lost in a copy-truncate: what was written
// between the copy and the truncation and not read yet, as with any
// copy-truncate.
package tail

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Options configure a Tailer.
type Options struct {
	// StateDir holds the saved positions (created if missing).
	StateDir string
	// Poll is how often the file is checked when there is nothing to read.
	Poll time.Duration
	// MaxLine caps the length of a line handed out; the rest of a longer
	// line is skipped (Line.Truncated). Bounds the memory a line can take.
	MaxLine int
	// StartAtEnd makes a file without saved position start at its current
	// end instead of its beginning (only for files present at Open).
	StartAtEnd bool
	Log        *slog.Logger
}

// DefaultMaxLine is the default of Options.MaxLine.
const DefaultMaxLine = 1 << 20

// Line is one line of the file.
type Line struct {
	// Text without the newline.
	Text string
	// Start is the offset of the line's first byte.
	Start int64
	// Pos is the position just after the line (commit it when done).
	Pos Position
	// Truncated: the line was longer than MaxLine and was cut.
	Truncated bool
	// FileID identifies the content the line belongs to: the file's device
	// and inode and a fingerprint of its first line, so that a file
	// truncated and written again (copy-truncate rotation) gets a new one.
	// With Start it is a stable key of the line, also across restarts.
	FileID string
}

// Tailer follows one path. It is not safe for concurrent use.
type Tailer struct {
	path string
	opt  Options
	log  *slog.Logger

	f    *os.File
	id   Identity
	name string // the file actually open (differs from path for a rotated file)

	off  int64  // file offset of buf[r]
	buf  []byte // bytes read, not yet handed out, from r
	r    int
	read []byte

	skipping  bool // inside a line longer than MaxLine
	skipStart int64
	skipText  string

	rotatedSeen bool // a new file is at the path; one more read of the old one was done

	heads map[Identity]head // fingerprints of the files followed

	savedMeta json.RawMessage // Meta of the state found at Open

	fileID string // of the open file's content; "" until computed
}

// Open returns a tailer for path, resuming at its saved position. The file
// need not exist yet.
func Open(path string, opt Options) (*Tailer, error) {
	if opt.StateDir == "" {
		return nil, errors.New("tail: no state directory")
	}
	if opt.Poll <= 0 {
		opt.Poll = 200 * time.Millisecond
	}
	if opt.MaxLine <= 0 {
		opt.MaxLine = DefaultMaxLine
	}
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(opt.StateDir, 0o755); err != nil {
		return nil, fmt.Errorf("tail: state directory: %w", err)
	}
	t := &Tailer{path: path, opt: opt, log: opt.Log.With("file", path), read: make([]byte, 64<<10), heads: map[Identity]head{}}
	if err := t.resume(); err != nil {
		return nil, err
	}
	return t, nil
}

// Path is the followed path.
func (t *Tailer) Path() string { return t.path }

// resume opens the file of the saved position, if any.
func (t *Tailer) resume() error {
	st, ok, err := loadState(t.opt.StateDir, t.path)
	if err != nil {
		return err
	}
	t.savedMeta = st.Meta
	fi, statErr := os.Stat(t.path)
	if statErr != nil && !errors.Is(statErr, os.ErrNotExist) {
		return fmt.Errorf("tail: %w", statErr)
	}
	exists := statErr == nil
	if !ok {
		if !exists {
			return nil // it will be new when it appears: read it from 0
		}
		var at int64
		if t.opt.StartAtEnd {
			at = fi.Size()
		}
		return t.openAt(t.path, at)
	}
	if exists && isSaved(t.path, fi, st) {
		return t.openAt(t.path, st.Offset)
	}
	// the saved file is no longer at the path: finish it if it was rotated
	// next to it (full -> full.1), then go on with the new one
	if name := findRotated(t.path, st); name != "" {
		t.log.Info("resuming in rotated file", "rotated", name, "offset", st.Offset)
		return t.openAt(name, st.Offset)
	}
	if exists {
		t.log.Warn("saved file not found any more; starting the current file from the beginning", "offset", st.Offset)
		return t.openAt(t.path, 0)
	}
	return nil // whatever appears at the path later is new
}

// isSaved reports whether the file name (with info fi) is the one of the
// saved state: same identity and, as far as known, same first bytes.
func isSaved(name string, fi os.FileInfo, st stateFile) bool {
	if identityOf(fi) != st.Identity {
		return false
	}
	if st.HeadLen == 0 {
		return true
	}
	f, err := os.Open(name)
	if err != nil {
		return false
	}
	defer f.Close()
	h, err := readHead(f, int64(st.HeadLen))
	return err == nil && h.n == st.HeadLen && h.sum == st.Head
}

// findRotated looks for the saved file among path's siblings whose name
// starts with path's name (full.1, full-20261121, ...).
func findRotated(path string, st stateFile) string {
	if st.Identity == (Identity{}) {
		return ""
	}
	names, _ := filepath.Glob(escapeGlob(path) + "?*")
	for _, n := range names {
		if fi, err := os.Stat(n); err == nil && fi.Mode().IsRegular() && isSaved(n, fi, st) {
			return n
		}
	}
	return ""
}

func escapeGlob(s string) string {
	var b []byte
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '*', '?', '[', '\\':
			b = append(b, '\\')
		}
		b = append(b, s[i])
	}
	return string(b)
}

// openAt opens name and positions at offset (0 if the file is shorter).
func (t *Tailer) openAt(name string, offset int64) error {
	f, err := os.Open(name)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("tail: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("tail: %w", err)
	}
	if fi.Size() < offset {
		t.log.Warn("file is shorter than the saved position (truncated); reading from the beginning", "size", fi.Size(), "offset", offset)
		offset = 0
	}
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		f.Close()
		return fmt.Errorf("tail: %w", err)
	}
	t.f, t.id, t.name, t.fileID = f, identityOf(fi), name, ""
	t.off, t.buf, t.r = offset, t.buf[:0], 0
	t.skipping, t.rotatedSeen = false, false
	t.log.Debug("following", "name", name, "offset", offset)
	return nil
}

// Close releases the open file.
func (t *Tailer) Close() error {
	if t.f == nil {
		return nil
	}
	err := t.f.Close()
	t.f = nil
	return err
}

// SavedMeta returns the meta data saved with the position found at Open
// (nil if none). It was saved with a position in the file that was followed
// then, whether or not that file is still there.
func (t *Tailer) SavedMeta() json.RawMessage { return t.savedMeta }

// Commit saves p (a Line.Pos of this tailer) as the resume position.
func (t *Tailer) Commit(p Position) error { return t.CommitMeta(p, nil) }

// CommitMeta saves p as the resume position together with meta, the
// caller's data that must stay consistent with it (both are written in one
// atomic file replacement).
func (t *Tailer) CommitMeta(p Position, meta json.RawMessage) error {
	h := t.heads[p.Identity]
	if h.n < headSize && h.n < int(min(p.Offset, headSize)) && t.f != nil && p.Identity == t.id {
		if nh, err := readHead(t.f, p.Offset); err == nil {
			h = nh
			t.heads[p.Identity] = h
		}
	}
	if int64(h.n) > p.Offset { // cannot happen for positions of this file; be safe
		h = head{}
	}
	return saveState(t.opt.StateDir, p, h, meta)
}

// Next waits for the next complete line.
func (t *Tailer) Next(ctx context.Context) (Line, error) {
	for {
		l, ok, err := t.TryNext()
		if err != nil || ok {
			return l, err
		}
		select {
		case <-ctx.Done():
			return Line{}, ctx.Err()
		case <-time.After(t.opt.Poll):
		}
	}
}

// TryNext returns the next complete line, or ok false when there is none
// right now.
func (t *Tailer) TryNext() (l Line, ok bool, err error) {
	if t.f == nil {
		if err := t.openNew(); err != nil || t.f == nil {
			return Line{}, false, err
		}
	}
	for {
		if l, ok := t.take(); ok {
			return l, true, nil
		}
		if t.rewritten() {
			t.log.Warn("file truncated and written again; reading from the beginning", "offset", t.off+int64(len(t.buf)-t.r))
			if err := t.restart(); err != nil {
				return Line{}, false, err
			}
			continue
		}
		n, err := t.fill()
		if n > 0 {
			t.rotatedSeen = false
			continue
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return Line{}, false, fmt.Errorf("tail: read %s: %w", t.name, err)
		}
		break
	}
	return t.atEOF()
}

// openNew opens the file at the path, when there is one.
func (t *Tailer) openNew() error {
	if _, err := os.Stat(t.path); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("tail: %w", err)
	}
	return t.openAt(t.path, 0)
}

// atEOF decides what the end of the open file means.
func (t *Tailer) atEOF() (Line, bool, error) {
	fi, err := os.Stat(t.path)
	if errors.Is(err, os.ErrNotExist) {
		return Line{}, false, nil // deleted or renamed away: keep reading it until a new one appears
	}
	if err != nil {
		return Line{}, false, fmt.Errorf("tail: %w", err)
	}
	id := identityOf(fi)
	if id != t.id {
		// a new file is at the path. Read the old one once more (the writer
		// may have written between our last read and its reopen), then
		// finish it and switch.
		if !t.rotatedSeen {
			t.rotatedSeen = true
			return t.TryNext()
		}
		var last Line
		var ok bool
		if t.skipping {
			last, ok = Line{Text: t.skipText, Start: t.skipStart, Pos: t.pos(t.off), Truncated: true, FileID: t.currentFileID()}, true
		} else if rest := t.buf[t.r:]; len(rest) > 0 {
			// the unterminated last line of a finished file
			last, ok = Line{Text: string(rest), Start: t.off, Pos: t.pos(t.off + int64(len(rest))), FileID: t.currentFileID()}, true
		}
		t.log.Info("file rotated; following the new one", "old", t.name, "at", t.off+int64(len(t.buf)-t.r))
		t.f.Close()
		t.f = nil
		if err := t.openAt(t.path, 0); err != nil {
			return Line{}, false, err
		}
		if !ok && t.f != nil {
			return t.TryNext()
		}
		return last, ok, nil
	}
	if read := t.off + int64(len(t.buf)-t.r); fi.Size() < read {
		t.log.Warn("file truncated; reading from the beginning", "size", fi.Size(), "offset", read)
		if err := t.restart(); err != nil {
			return Line{}, false, err
		}
		return t.TryNext()
	}
	return Line{}, false, nil
}

// fingerprintSize is how much of a file's first line its FileID covers: a
// log line starts with its date, so this tells two contents of one inode
// apart.
const fingerprintSize = 64

// currentFileID returns the FileID of the open file. It is only called
// while handing out a line, so the file's first line is complete.
func (t *Tailer) currentFileID() string {
	if t.fileID == "" {
		t.fileID = strconv.FormatUint(t.id.Dev, 16) + ":" + strconv.FormatUint(t.id.Ino, 16) + ":" + t.fingerprint()
	}
	return t.fileID
}

// fingerprint hashes the start of the open file's first line.
func (t *Tailer) fingerprint() string {
	var b [fingerprintSize]byte
	n, _ := t.f.ReadAt(b[:], 0)
	first := b[:n]
	if i := bytes.IndexByte(first, '\n'); i >= 0 {
		first = first[:i]
	}
	sum := sha256.Sum256(first)
	return hex.EncodeToString(sum[:4])
}

// rewritten reports whether the open file's first line is no longer the
// one it had: it was truncated and written again (copy-truncate), perhaps
// already past the position reached, which its size alone would not show.
func (t *Tailer) rewritten() bool {
	return t.fileID != "" && !strings.HasSuffix(t.fileID, ":"+t.fingerprint())
}

// restart reads the open file again from its beginning (it was truncated).
func (t *Tailer) restart() error {
	if _, err := t.f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("tail: %w", err)
	}
	t.off, t.buf, t.r, t.skipping, t.fileID = 0, t.buf[:0], 0, false, ""
	delete(t.heads, t.id)
	return nil
}

func (t *Tailer) pos(off int64) Position {
	return Position{Path: t.path, Identity: t.id, Offset: off}
}

// fill reads more of the file into buf.
func (t *Tailer) fill() (int, error) {
	if t.r > 0 { // move the unconsumed bytes to the front
		n := copy(t.buf, t.buf[t.r:])
		t.buf, t.r = t.buf[:n], 0
	}
	n, err := t.f.Read(t.read)
	t.buf = append(t.buf, t.read[:n]...)
	return n, err
}

// take hands out the next complete line of buf.
func (t *Tailer) take() (Line, bool) {
	rest := t.buf[t.r:]
	i := bytes.IndexByte(rest, '\n')
	if t.skipping {
		if i < 0 {
			t.off += int64(len(rest))
			t.r = len(t.buf)
			return Line{}, false
		}
		t.off += int64(i + 1)
		t.r += i + 1
		t.skipping = false
		return Line{Text: t.skipText, Start: t.skipStart, Pos: t.pos(t.off), Truncated: true, FileID: t.currentFileID()}, true
	}
	if i < 0 {
		if len(rest) > t.opt.MaxLine {
			t.skipping, t.skipStart, t.skipText = true, t.off, string(rest[:t.opt.MaxLine])
			t.off += int64(len(rest))
			t.r = len(t.buf)
		}
		return Line{}, false
	}
	l := Line{Start: t.off, FileID: t.currentFileID()}
	if i > t.opt.MaxLine {
		l.Text, l.Truncated = string(rest[:t.opt.MaxLine]), true
	} else {
		l.Text = string(rest[:i])
	}
	t.off += int64(i + 1)
	t.r += i + 1
	l.Pos = t.pos(t.off)
	return l, true
}
