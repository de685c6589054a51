package gateway

import (
	"bytes"
	"io"
	"net"
	"strings"
	"testing"
)

// TestCorkWriter: corked writes arrive once uncorked, in order, complete,
// whatever their sizes; uncorked ones at once.
func TestCorkWriter(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan []byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- nil
			return
		}
		b, _ := io.ReadAll(c)
		got <- b
	}()
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	w := &corkWriter{Conn: conn}
	var want bytes.Buffer
	put := func(s string) {
		if n, err := w.Write([]byte(s)); err != nil || n != len(s) {
			t.Fatalf("write %d bytes: %d, %v", len(s), n, err)
		}
		want.WriteString(s)
	}
	cases := []struct {
		name   string
		corked bool
		writes []string
	}{
		{"uncorked", false, []string{"a", "bc"}},
		{"small, corked", true, []string{"de", "f", strings.Repeat("g", 100)}},
		{"over the cork's limit", true, []string{strings.Repeat("h", corkMax-10), "ij", strings.Repeat("k", 3*corkMax), "l"}},
		{"nothing", true, nil},
		{"uncorked again", false, []string{"end"}},
	}
	for _, tc := range cases {
		if tc.corked {
			w.cork()
		}
		for _, s := range tc.writes {
			put(s)
		}
		if tc.corked {
			if err := w.uncork(); err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
		}
	}
	conn.Close()
	if b := <-got; !bytes.Equal(b, want.Bytes()) {
		t.Fatalf("received %d bytes, want %d (same order)", len(b), want.Len())
	}
}
