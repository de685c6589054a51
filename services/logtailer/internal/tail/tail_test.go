package tail

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

type env struct {
	t     *testing.T
	dir   string
	path  string
	state string
}

func newEnv(t *testing.T) *env {
	dir := t.TempDir()
	return &env{t: t, dir: dir, path: filepath.Join(dir, "full"), state: filepath.Join(dir, "state")}
}

func (e *env) open(opt Options) *Tailer {
	e.t.Helper()
	opt.StateDir = e.state
	if opt.Poll == 0 {
		opt.Poll = 5 * time.Millisecond
	}
	tl, err := Open(e.path, opt)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { tl.Close() })
	return tl
}

func (e *env) write(s string) { e.t.Helper(); e.writeFile(e.path, s, os.O_APPEND) }

func (e *env) writeFile(path, s string, flag int) {
	e.t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|flag, 0o644)
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := f.WriteString(s); err != nil {
		e.t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		e.t.Fatal(err)
	}
}

// drain returns every line available now.
func drain(t *testing.T, tl *Tailer) []Line {
	t.Helper()
	var out []Line
	for {
		l, ok, err := tl.TryNext()
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			return out
		}
		out = append(out, l)
	}
}

func texts(ls []Line) []string {
	out := []string{}
	for _, l := range ls {
		out = append(out, l.Text)
	}
	return out
}

func expect(t *testing.T, got []Line, want ...string) {
	t.Helper()
	if want == nil {
		want = []string{}
	}
	if g := texts(got); !slices.Equal(g, want) {
		t.Fatalf("lines %q, want %q", g, want)
	}
}

func TestAppendAndPartialLine(t *testing.T) {
	e := newEnv(t)
	e.write("a\nbb\n")
	tl := e.open(Options{})
	got := drain(t, tl)
	expect(t, got, "a", "bb")
	if got[0].Start != 0 || got[0].Pos.Offset != 2 || got[1].Start != 2 || got[1].Pos.Offset != 5 {
		t.Errorf("positions %+v", got)
	}
	e.write("c\npar")
	expect(t, drain(t, tl), "c")
	expect(t, drain(t, tl)) // the partial line waits
	e.write("tial\r\n")
	got = drain(t, tl)
	expect(t, got, "partial\r")
	if got[0].Start != 7 || got[0].Pos.Offset != 16 {
		t.Errorf("positions %+v", got[0])
	}
}

func TestNotExistingYet(t *testing.T) {
	e := newEnv(t)
	tl := e.open(Options{StartAtEnd: true})
	expect(t, drain(t, tl))
	e.write("first\n")
	expect(t, drain(t, tl), "first") // a file created after the start is read from 0
}

func TestStartAtEnd(t *testing.T) {
	e := newEnv(t)
	e.write("old\n")
	tl := e.open(Options{StartAtEnd: true})
	expect(t, drain(t, tl))
	e.write("new\n")
	expect(t, drain(t, tl), "new")
}

func TestRenameRotation(t *testing.T) {
	e := newEnv(t)
	e.write("1\n2\n")
	tl := e.open(Options{})
	expect(t, drain(t, tl), "1", "2")
	e.write("3\nunterminated")
	if err := os.Rename(e.path, e.path+".1"); err != nil {
		t.Fatal(err)
	}
	expect(t, drain(t, tl), "3") // no new file yet: keep reading the old one
	e.write("4\n")               // the new file
	got := drain(t, tl)
	expect(t, got, "unterminated", "4")
	if got[1].Pos.Identity == got[0].Pos.Identity || got[1].Pos.Offset != 2 {
		t.Errorf("positions %+v", got)
	}
	e.write("5\n")
	expect(t, drain(t, tl), "5")
}

func TestCopyTruncate(t *testing.T) {
	e := newEnv(t)
	e.write("line 1\nline 2\n")
	tl := e.open(Options{})
	expect(t, drain(t, tl), "line 1", "line 2")
	e.writeFile(e.path, "x\n", os.O_TRUNC)
	got := drain(t, tl)
	expect(t, got, "x")
	if got[0].Start != 0 {
		t.Errorf("start %d", got[0].Start)
	}
}

func TestDeleteAndRecreate(t *testing.T) {
	e := newEnv(t)
	e.write("1\n")
	tl := e.open(Options{})
	expect(t, drain(t, tl), "1")
	e.write("2\n")
	if err := os.Remove(e.path); err != nil {
		t.Fatal(err)
	}
	expect(t, drain(t, tl), "2") // what was written before the delete is not lost
	expect(t, drain(t, tl))
	e.write("new 1\nnew 2\n")
	expect(t, drain(t, tl), "new 1", "new 2")
}

func TestLongLine(t *testing.T) {
	e := newEnv(t)
	e.write("0123456789abcdef\nok\n0123456789")
	tl := e.open(Options{MaxLine: 10})
	got := drain(t, tl)
	expect(t, got, "0123456789", "ok")
	if !got[0].Truncated || got[0].Pos.Offset != 17 || got[1].Truncated {
		t.Errorf("%+v", got)
	}
	e.write("more than max without newline")
	expect(t, drain(t, tl))
	e.write("end\nnext\n")
	got = drain(t, tl)
	expect(t, got, "0123456789", "next")
	if !got[0].Truncated || got[0].Start != 20 || got[1].Start != 20+10+29+4 {
		t.Errorf("%+v", got)
	}
}

func TestRestartMidFile(t *testing.T) {
	e := newEnv(t)
	for i := range 100 {
		e.write(fmt.Sprintf("line %d\n", i))
	}
	tl := e.open(Options{})
	var seen []string
	for range 40 {
		l, err := tl.Next(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		seen = append(seen, l.Text)
		if err := tl.Commit(l.Pos); err != nil {
			t.Fatal(err)
		}
	}
	for range 10 { // read but never committed (not acknowledged): must come again
		if _, err := tl.Next(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	tl.Close()

	tl2 := e.open(Options{})
	seen = append(seen, texts(drain(t, tl2))...)
	var want []string
	for i := range 100 {
		want = append(want, fmt.Sprintf("line %d", i))
	}
	if !slices.Equal(seen, want) {
		t.Fatalf("after restart: %d lines %q", len(seen), seen)
	}
}

func TestRestartAfterRotation(t *testing.T) {
	e := newEnv(t)
	e.write("1\n2\n3\n")
	tl := e.open(Options{})
	l, _ := tl.Next(context.Background())
	if err := tl.Commit(l.Pos); err != nil {
		t.Fatal(err)
	}
	tl.Close()
	// rotated while the tailer was down
	if err := os.Rename(e.path, e.path+".1"); err != nil {
		t.Fatal(err)
	}
	e.write("new\n")
	tl2 := e.open(Options{})
	expect(t, drain(t, tl2), "2", "3", "new")

}

// TestRestartNewFileSameInode: the saved file was deleted while the tailer
// was down and a new one (quite possibly with the same inode number) took
// its place: it is read from its beginning.
func TestRestartNewFile(t *testing.T) {
	e := newEnv(t)
	e.write("old line 1\nold line 2\n")
	tl := e.open(Options{})
	got := drain(t, tl)
	if err := tl.Commit(got[0].Pos); err != nil {
		t.Fatal(err)
	}
	tl.Close()
	if err := os.Remove(e.path); err != nil {
		t.Fatal(err)
	}
	e.write("a new file, longer than the old position\nsecond\n")
	expect(t, drain(t, e.open(Options{})), "a new file, longer than the old position", "second")
}

func TestRestartAfterTruncate(t *testing.T) {
	e := newEnv(t)
	e.write("aaaa\nbbbb\n")
	tl := e.open(Options{})
	got := drain(t, tl)
	if err := tl.Commit(got[1].Pos); err != nil {
		t.Fatal(err)
	}
	tl.Close()
	e.writeFile(e.path, "c\n", os.O_TRUNC)
	expect(t, drain(t, e.open(Options{})), "c")
}

func TestStateIsAtomic(t *testing.T) {
	e := newEnv(t)
	e.write("a\n")
	tl := e.open(Options{})
	l, _ := tl.Next(context.Background())
	for range 20 {
		if err := tl.Commit(l.Pos); err != nil {
			t.Fatal(err)
		}
	}
	entries, err := os.ReadDir(e.state)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Fatalf("state dir holds %d files, want 1 (no temp file left)", len(entries))
	}
	p, ok, err := loadState(e.state, e.path)
	if err != nil || !ok || p.Position != l.Pos || p.HeadLen != 2 {
		t.Fatalf("state %+v %v %v, want %+v", p, ok, err, l.Pos)
	}
}

func TestNextHonoursContext(t *testing.T) {
	e := newEnv(t)
	tl := e.open(Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	if _, err := tl.Next(ctx); err == nil {
		t.Fatal("Next returned without a line")
	}
}

// TestCommitMeta: the caller's data is saved with the position in one
// atomic write and found again by the next tailer, also when the file it
// belonged to was rotated away meanwhile.
func TestCommitMeta(t *testing.T) {
	cases := []struct {
		name   string
		meta   string
		rotate bool
	}{
		{"same file", `{"minute":29876543,"counts":{"notice":3}}`, false},
		{"rotated while down", `{"n":1}`, true},
		{"nothing saved", ``, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.write("a\nb\n")
			tl := e.open(Options{})
			if m := tl.SavedMeta(); m != nil {
				t.Fatalf("meta %s before any commit", m)
			}
			got := drain(t, tl)
			if err := tl.CommitMeta(got[0].Pos, json.RawMessage(tc.meta)); err != nil {
				t.Fatal(err)
			}
			tl.Close()
			if tc.rotate {
				if err := os.Rename(e.path, e.path+".1"); err != nil {
					t.Fatal(err)
				}
				e.write("c\n")
			}
			tl2 := e.open(Options{})
			if string(tl2.SavedMeta()) != tc.meta {
				t.Errorf("meta %q, want %q", tl2.SavedMeta(), tc.meta)
			}
			want := []string{"b"}
			if tc.rotate {
				want = append(want, "c")
			}
			expect(t, drain(t, tl2), want...)
		})
	}
}

// TestFileID: a line's FileID changes with the file's content (rotation,
// copy-truncate), not with reading further or restarting.
func TestFileID(t *testing.T) {
	e := newEnv(t)
	e.write("[2026-11-21 19:10:00.000] first\nsecond\n")
	tl := e.open(Options{})
	got := drain(t, tl)
	id := got[0].FileID
	if id == "" || got[1].FileID != id {
		t.Fatalf("ids %q %q", id, got[1].FileID)
	}
	if err := tl.Commit(got[0].Pos); err != nil {
		t.Fatal(err)
	}
	tl.Close()
	tl = e.open(Options{}) // resumed mid-file
	if got := drain(t, tl); len(got) != 1 || got[0].FileID != id {
		t.Fatalf("after restart %+v, want id %q", got, id)
	}
	e.writeFile(e.path, "[2026-11-21 19:11:00.000] after the truncation\n", os.O_TRUNC)
	got = drain(t, tl)
	if len(got) != 1 || got[0].FileID == id || got[0].Start != 0 {
		t.Fatalf("after copy-truncate %+v, old id %q", got, id)
	}
}
