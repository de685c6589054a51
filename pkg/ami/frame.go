// Package ami speaks the Asterisk Manager Interface: framing, parsing and an
// owned connection that correlates ActionIDs, collects EventList responses
// and applies back-pressure instead of dropping messages.
//
// goami2 provides the message type, the field parser and action builder; this
// package owns the socket because goami2's Client drops a message when its
// reader is more than 10 ms late and cannot correlate responses.
package ami

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/staskobzar/goami2"
)

// MaxFrameSize bounds one AMI message; a peer that sends more without a
// terminating blank line is broken or hostile.
const MaxFrameSize = 1 << 20

// ErrFrameTooLarge is returned when a message exceeds MaxFrameSize.
var ErrFrameTooLarge = errors.New("ami: message exceeds maximum size")

// ErrBanner is returned when the peer does not greet like an Asterisk manager.
var ErrBanner = errors.New("ami: unexpected banner")

var terminator = []byte("\r\n\r\n")

// Reader splits an AMI byte stream into messages.
type Reader struct {
	br *bufio.Reader
	sc *bufio.Scanner
}

// NewReader returns a Reader over r.
func NewReader(r io.Reader) *Reader {
	br := bufio.NewReaderSize(r, 64<<10)
	sc := bufio.NewScanner(br)
	sc.Buffer(make([]byte, 0, 64<<10), MaxFrameSize+len(terminator))
	sc.Split(splitFrames)
	return &Reader{br: br, sc: sc}
}

// ReadBanner reads the single greeting line ("Asterisk Call Manager/11.0.0\r\n",
// with no blank line after it). It must be called before ReadMessage.
func (r *Reader) ReadBanner() (string, error) {
	line, err := r.br.ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("ami: read banner: %w", err)
	}
	line = strings.TrimRight(line, "\r\n")
	if !strings.HasPrefix(line, "Asterisk Call Manager/") {
		return "", fmt.Errorf("%w: %q", ErrBanner, truncate(line, 64))
	}
	// The scanner reads from the same bufio.Reader, so nothing is lost.
	return line, nil
}

// ReadMessage returns the next message. A message that cannot be parsed is
// returned as a *ParseError (the stream stays usable); io.EOF and network
// errors end the stream.
func (r *Reader) ReadMessage() (*goami2.Message, error) {
	if !r.sc.Scan() {
		if err := r.sc.Err(); err != nil {
			if errors.Is(err, bufio.ErrTooLong) {
				return nil, ErrFrameTooLarge
			}
			return nil, err
		}
		return nil, io.EOF
	}
	return Parse(r.sc.Bytes())
}

// ParseError reports a frame that is not a valid AMI message.
type ParseError struct {
	Raw string
	Err error
}

func (e *ParseError) Error() string {
	return fmt.Sprintf("ami: parse %q: %v", truncate(e.Raw, 80), e.Err)
}

func (e *ParseError) Unwrap() error { return e.Err }

// Parse parses one frame (without its terminating blank line) into a
// goami2.Message. It splits lines itself rather than calling goami2.Parse,
// which trims leading spaces from values (Command output and RTCP reports
// keep them), rejects one-letter keys, and fails on the bare "\n" Asterisk
// puts inside some values ("Message: Unable to retrieve endpoint 9999\n");
// here a bare line feed is trimmed from a value's end and turned into a space
// inside it.
func Parse(frame []byte) (*goami2.Message, error) {
	frame = bytes.TrimLeft(frame, "\r\n")
	if len(frame) == 0 {
		return nil, &ParseError{Raw: "", Err: errors.New("empty message")}
	}
	// One string for the whole frame: values are slices of it and keys
	// come from a table of known names, so a message costs a couple of
	// allocations instead of two per field.
	fs := string(frame)
	msg := goami2.NewMessage()
	rest := fs
	for len(rest) > 0 {
		var line string
		if i := strings.Index(rest, "\r\n"); i >= 0 {
			line, rest = rest[:i], rest[i+2:]
		} else {
			line, rest = rest, ""
		}
		k := strings.IndexByte(line, ':')
		if k <= 0 || !validKey(line[:k]) {
			return nil, &ParseError{Raw: fs, Err: fmt.Errorf("line %q is not \"Key: value\"", truncate(line, 40))}
		}
		v := line[k+1:]
		if len(v) > 0 && v[0] == ' ' {
			v = v[1:]
		}
		v = strings.TrimRight(v, "\n")
		if strings.IndexByte(v, '\n') >= 0 || strings.IndexByte(v, '\r') >= 0 {
			v = strings.NewReplacer("\r", " ", "\n", " ").Replace(v)
		}
		// Asterisk passes header bytes through (a caller-ID name in
		// Latin-1, say); everything downstream wants UTF-8 text.
		if !utf8.ValidString(v) {
			v = strings.ToValidUTF8(v, "\uFFFD")
		}
		msg.AddField(internKey(line[:k]), v)
	}
	return msg, nil
}

// knownKeys holds the field names Asterisk sends most; internKey returns the
// table's copy so that the frame's string is not kept alive by a key alone.
var knownKeys = func() map[string]string {
	m := map[string]string{}
	for _, k := range []string{
		"Event", "Privilege", "Channel", "ChannelState", "ChannelStateDesc", "CallerIDNum", "CallerIDName",
		"ConnectedLineNum", "ConnectedLineName", "Language", "AccountCode", "Context", "Exten", "Priority",
		"Uniqueid", "Linkedid", "Variable", "Value", "Application", "AppData", "ActionID", "Response", "Message",
		"EventList", "Device", "State", "Cause", "Cause-txt", "BridgeUniqueid", "BridgeType", "BridgeTechnology",
		"BridgeCreator", "BridgeName", "BridgeNumChannels", "BridgeVideoSourceMode", "DestChannel",
		"DestChannelState", "DestChannelStateDesc", "DestCallerIDNum", "DestCallerIDName", "DestConnectedLineNum",
		"DestConnectedLineName", "DestLanguage", "DestAccountCode", "DestContext", "DestExten", "DestPriority",
		"DestUniqueid", "DestLinkedid", "DialStatus", "DialString", "EventTV", "Severity", "Service",
		"EventVersion", "AccountID", "SessionID", "LocalAddress", "RemoteAddress", "UsingPassword", "SessionTV",
		"Status", "EndpointName", "AOR", "URI", "ContactStatus", "RoundtripUsec", "Peer", "PeerStatus", "ChannelType",
		"Queue", "MemberName", "Interface", "StateInterface", "Membership", "Penalty", "CallsTaken", "LastCall",
		"LastPause", "LoginTime", "InCall", "Paused", "PausedReason", "Ringinuse", "Wrapuptime", "Extension",
	} {
		m[k] = k
	}
	return m
}()

func internKey(k string) string {
	if v, ok := knownKeys[k]; ok {
		return v
	}
	return strings.Clone(k)
}

var crlf = []byte("\r\n")

func validKey(k string) bool {
	for i := 0; i < len(k); i++ {
		if c := k[i]; c <= ' ' || c >= 0x7f {
			return false
		}
	}
	return true
}

// splitFrames is a bufio.SplitFunc that yields AMI messages without their
// terminating "\r\n\r\n".
func splitFrames(data []byte, atEOF bool) (advance int, token []byte, err error) {
	if i := bytes.Index(data, terminator); i >= 0 {
		return i + len(terminator), data[:i], nil
	}
	if atEOF && len(bytes.TrimSpace(data)) > 0 {
		return 0, nil, io.ErrUnexpectedEOF
	}
	if atEOF {
		return len(data), nil, nil
	}
	return 0, nil, nil
}

// Encode renders an action in wire format.
func Encode(m *goami2.Message) []byte {
	var b bytes.Buffer
	for _, h := range m.Headers() {
		b.WriteString(h.Name)
		b.WriteString(": ")
		b.WriteString(strings.NewReplacer("\r", " ", "\n", " ").Replace(h.Value))
		b.WriteString("\r\n")
	}
	b.WriteString("\r\n")
	return b.Bytes()
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
