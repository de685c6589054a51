package pbxsim

import (
	"strconv"
	"strings"
)

// field is one "Key: Value" line. Messages are ordered slices of fields
// because AMI consumers (and the captures) care about order and keys may repeat.
type field struct{ k, v string }

type msg []field

// encode renders the message exactly as Asterisk's manager does:
// "Key: Value\r\n" per line and a blank "\r\n" terminator.
func (m msg) encode() []byte {
	n := 2
	for _, f := range m {
		n += len(f.k) + len(f.v) + 4
	}
	b := make([]byte, 0, n)
	for _, f := range m {
		b = append(b, f.k...)
		b = append(b, ": "...)
		b = append(b, f.v...)
		b = append(b, "\r\n"...)
	}
	return append(b, "\r\n"...)
}

// get returns the first value of key k (case-insensitive like astman_get_header).
func (m msg) get(k string) string {
	for _, f := range m {
		if strings.EqualFold(f.k, k) {
			return f.v
		}
	}
	return ""
}

func itoa(i int) string { return strconv.Itoa(i) }

// withActionID inserts ActionID right after the first field ("Response:" or
// "Event:"), which is where Asterisk puts it for everything the simulator answers.
func withActionID(m msg, id string) msg {
	if id == "" || len(m) == 0 {
		return m
	}
	for _, f := range m {
		if f.k == "ActionID" {
			return m // placed by the action itself (QueueParams puts it last)
		}
	}
	out := make(msg, 0, len(m)+1)
	out = append(out, m[0], field{"ActionID", id})
	return append(out, m[1:]...)
}
