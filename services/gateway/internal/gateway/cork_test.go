package gateway

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
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
	// After a close frame, no message.
	put("\x88\x02\x03\xe8")
	if err := w.writeMessage([]byte("late")); err == nil {
		t.Error("a message was written after the close frame")
	}
	conn.Close()
	if b := <-got; !bytes.Equal(b, want.Bytes()) {
		t.Fatalf("received %d bytes, want %d (same order)", len(b), want.Len())
	}
}

// TestWriteMessage: messages the writer frames itself reach a WebSocket
// client whole, of every length encoding, corked or not, with control
// frames of the connection between them.
func TestWriteMessage(t *testing.T) {
	sizes := []int{0, 1, 125, 126, 127, 0xffff, 0x10000, 300000}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		up := &upgrader{ResponseWriter: w}
		conn, err := websocket.Accept(up, r, nil)
		if err != nil {
			return
		}
		defer conn.CloseNow()
		ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
		defer cancel()
		ctx = conn.CloseRead(ctx) // reads the client's pongs
		for i, corked := range []bool{false, true} {
			if corked {
				up.out.cork()
			}
			for _, n := range sizes {
				if err := up.out.writeMessage(bytes.Repeat([]byte{byte('a' + i)}, n)); err != nil {
					t.Error(err)
					return
				}
			}
			if corked {
				if err := up.out.uncork(); err != nil {
					t.Error(err)
					return
				}
			}
			if err := conn.Ping(ctx); err != nil { // a control frame, and the client's pong
				t.Error(err)
				return
			}
		}
		conn.Close(websocket.StatusNormalClosure, "")
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	c.SetReadLimit(1 << 20)
	for i := range 2 {
		for _, n := range sizes {
			typ, b, err := c.Read(ctx)
			if err != nil {
				t.Fatalf("round %d, message of %d bytes: %v", i, n, err)
			}
			if typ != websocket.MessageText || !bytes.Equal(b, bytes.Repeat([]byte{byte('a' + i)}, n)) {
				t.Fatalf("message of %d bytes: got %d bytes of type %v", n, len(b), typ)
			}
		}
	}
	if _, _, err := c.Read(ctx); websocket.CloseStatus(err) != websocket.StatusNormalClosure {
		t.Fatalf("end: %v", err)
	}
}
