package ami

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/staskobzar/goami2"
)

// fakePBX is a scripted AMI peer on real TCP: it greets, accepts one
// login, and hands every later action to answer.
func fakePBX(t *testing.T, secret string, answer func(w *bufio.Writer, action *goami2.Message)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				w := bufio.NewWriter(c)
				w.WriteString("Asterisk Call Manager/11.0.0\r\n")
				w.Flush()
				r := NewReader(c)
				for {
					m, err := r.ReadMessage()
					if err != nil {
						return
					}
					if m.Field("Action") == "Login" {
						if m.Field("Secret") != secret {
							fmt.Fprintf(w, "Response: Error\r\nActionID: %s\r\nMessage: Authentication failed\r\n\r\n", m.ActionID())
							w.Flush()
							return
						}
						fmt.Fprintf(w, "Response: Success\r\nActionID: %s\r\nMessage: Authentication accepted\r\n\r\n", m.ActionID())
						w.Flush()
						continue
					}
					answer(w, m)
					w.Flush()
				}
			}()
		}
	}()
	return ln.Addr().String()
}

func TestActionCollectsListAmidEvents(t *testing.T) {
	addr := fakePBX(t, "s3cret", func(w *bufio.Writer, a *goami2.Message) {
		id := a.ActionID()
		// As Asterisk does: the list interleaves with unrelated events.
		fmt.Fprintf(w, "Response: Success\r\nActionID: %s\r\nEventList: start\r\nMessage: A listing of Contacts follows, presented as ContactList events\r\n\r\n", id)
		fmt.Fprintf(w, "Event: ContactList\r\nActionID: %s\r\nEndpoint: 1001\r\n\r\n", id)
		fmt.Fprintf(w, "Event: DeviceStateChange\r\nPrivilege: call,all\r\nDevice: PJSIP/1001\r\nState: BUSY\r\n\r\n")
		fmt.Fprintf(w, "Event: ContactList\r\nActionID: %s\r\nEndpoint: 1002\r\n\r\n", id)
		fmt.Fprintf(w, "Event: ContactListComplete\r\nActionID: %s\r\nEventList: Complete\r\nListItems: 2\r\n\r\n", id)
	})
	ctx := context.Background()
	c, err := Dial(ctx, addr, "monitor", "s3cret", Options{Events: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	res, err := c.Action(ctx, goami2.NewAction("PJSIPShowContacts"))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Items) != 2 || res.Complete.Field("ListItems") != "2" || res.Error() != nil {
		t.Fatalf("result: %d items, complete %v", len(res.Items), res.Complete)
	}
	select {
	case ev := <-c.Events():
		if ev.Msg.Field("Event") != "DeviceStateChange" || ev.Seq != 1 || res.DoneSeq != 1 {
			t.Fatalf("event %v seq %d, done seq %d", ev.Msg, ev.Seq, res.DoneSeq)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("the interleaved event was not delivered")
	}
}

func TestLoginFailureHidesSecret(t *testing.T) {
	addr := fakePBX(t, "right", nil)
	_, err := Dial(context.Background(), addr, "monitor", "wrong-secret", Options{})
	if !errors.Is(err, ErrAuth) {
		t.Fatalf("err = %v, want ErrAuth", err)
	}
	if strings.Contains(err.Error(), "wrong-secret") {
		t.Fatalf("error leaks the secret: %v", err)
	}
}

// TestBackPressureNeverDrops floods events at a consumer that reads slowly:
// every event must arrive, in order.
func TestBackPressureNeverDrops(t *testing.T) {
	const n = 20000
	addr := fakePBX(t, "s", func(w *bufio.Writer, a *goami2.Message) {
		fmt.Fprintf(w, "Response: Success\r\nActionID: %s\r\nMessage: go\r\n\r\n", a.ActionID())
		for i := 1; i <= n; i++ {
			fmt.Fprintf(w, "Event: Newexten\r\nPrivilege: dialplan,all\r\nN: %d\r\n\r\n", i)
		}
	})
	ctx := context.Background()
	c, err := Dial(ctx, addr, "monitor", "s", Options{Events: true, EventBuffer: 16})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Action(ctx, goami2.NewAction("Flood")); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= n; i++ {
		if i%1000 == 0 {
			time.Sleep(20 * time.Millisecond) // a slow consumer
		}
		select {
		case ev := <-c.Events():
			if got := ev.Msg.Field("N"); got != fmt.Sprint(i) || ev.Seq != uint64(i) {
				t.Fatalf("event %d: N=%s seq=%d", i, got, ev.Seq)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("event %d never came", i)
		}
	}
}

func TestActionFailsWhenConnectionDies(t *testing.T) {
	addr := fakePBX(t, "s", func(w *bufio.Writer, a *goami2.Message) {
		panic(nil) // never reached: the test closes first
	})
	ctx := context.Background()
	c, err := Dial(ctx, addr, "monitor", "s", Options{})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if _, err := c.Action(ctx, goami2.NewAction("Ping")); err == nil {
		t.Fatal("action on a closed connection succeeded")
	}
	select {
	case <-c.Done():
	case <-time.After(time.Second):
		t.Fatal("Done not closed")
	}
}
