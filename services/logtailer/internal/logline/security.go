package logline

import (
	"strconv"
	"strings"
	"time"
)

// Security is an Asterisk security event as res_security_log.so writes it at
// the SECURITY level:
//
//	SecurityEvent="InvalidPassword",EventTV="2026-11-21T19:09:27.749+0000",Severity="Error",Service="AMI",...
//
// i.e. the event's name, then its required and optional fields in the order
// of main/security_events.c, each as Key="value". Asterisk does not escape
// the values (a quote inside one is written as is), so a value ends only at a
// quote followed by the end of the message or by the next `,Key="`.
type Security struct {
	// Event is the value of SecurityEvent, e.g. "InvalidPassword".
	Event string
	// Fields are the pairs after SecurityEvent, in the order written.
	Fields []Field
}

// Field is one Key="value" pair of a security event.
type Field struct {
	Key, Value string
}

const securityPrefix = `SecurityEvent="`

// IsSecurity reports whether an entry of level with message msg is a
// security event (ParseSecurity will read it).
func IsSecurity(level, msg string) bool {
	return level == "SECURITY" && strings.HasPrefix(msg, securityPrefix)
}

// ParseSecurity reads the message of a SECURITY entry; ok is false when it is
// not a security event. A value whose closing quote is missing runs to the
// end of the message.
func ParseSecurity(msg string) (s Security, ok bool) {
	if !strings.HasPrefix(msg, securityPrefix) {
		return Security{}, false
	}
	rest := msg[len(securityPrefix):]
	var v string
	v, rest = securityValue(rest)
	s.Event = v
	for rest != "" {
		// rest starts with `,Key="` (securityValue stopped there)
		eq := strings.Index(rest, `="`)
		key := rest[1:eq]
		v, rest = securityValue(rest[eq+2:])
		s.Fields = append(s.Fields, Field{Key: key, Value: v})
	}
	return s, true
}

// securityValue returns the value at the start of s (just after its opening
// quote) and what follows its closing quote: "" or `,Key="...`.
func securityValue(s string) (value, rest string) {
	for i := 0; i < len(s); i++ {
		if s[i] != '"' {
			continue
		}
		if i == len(s)-1 {
			return s[:i], ""
		}
		if s[i+1] == ',' && isKeyStart(s[i+2:]) {
			return s[:i], s[i+1:]
		}
	}
	return s, "" // no closing quote: the rest of the message
}

// isKeyStart reports whether s starts with `Key="`, Key being a letter then
// letters and digits (as every field name of security_events.c).
func isKeyStart(s string) bool {
	i := 0
	for i < len(s) && (s[i] >= 'A' && s[i] <= 'Z' || s[i] >= 'a' && s[i] <= 'z' || i > 0 && s[i] >= '0' && s[i] <= '9') {
		i++
	}
	return i > 0 && strings.HasPrefix(s[i:], `="`)
}

// Get returns the value of the first field named key, or "".
func (s Security) Get(key string) string {
	for _, f := range s.Fields {
		if f.Key == key {
			return f.Value
		}
	}
	return ""
}

// Address is a security event address, which Asterisk writes (ast_json_ipaddr)
// as <IPV4|IPV6>/[<transport>/]<address>/<port>, e.g. IPV4/UDP/127.0.0.1/5061.
type Address struct {
	Family    string // IPV4 or IPV6
	Transport string // UDP, TCP, TLS, WS, WSS, or empty when none was written
	IP        string
	Port      uint32
}

// ParseAddress reads an address field; ok is false when s does not have that
// form (the raw value is then all there is).
func ParseAddress(s string) (a Address, ok bool) {
	parts := strings.Split(s, "/")
	if len(parts) < 3 || len(parts) > 4 || parts[0] != "IPV4" && parts[0] != "IPV6" {
		return Address{}, false
	}
	port, err := strconv.ParseUint(parts[len(parts)-1], 10, 16)
	if err != nil {
		return Address{}, false
	}
	a = Address{Family: parts[0], Port: uint32(port), IP: parts[len(parts)-2]}
	if len(parts) == 4 {
		a.Transport = parts[1]
	}
	a.IP = strings.TrimSuffix(strings.TrimPrefix(a.IP, "["), "]")
	if a.IP == "" {
		return Address{}, false
	}
	return a, true
}

// ParseEventTV reads an EventTV or SessionTV value: ISO 8601 with
// milliseconds and zone as Asterisk 12 and later write it
// ("2026-11-21T19:09:13.303+0000"), or <seconds>-<microseconds> as earlier
// versions did ("1375107804-233232"). ok is false for anything else.
func ParseEventTV(s string) (time.Time, bool) {
	if t, err := time.Parse("2006-01-02T15:04:05.000-0700", s); err == nil {
		return t, true
	}
	if sec, usec, found := strings.Cut(s, "-"); found && len(sec) > 0 && len(usec) == 6 {
		secs, err1 := strconv.ParseInt(sec, 10, 64)
		us, err2 := strconv.ParseInt(usec, 10, 64)
		if err1 == nil && err2 == nil {
			return time.Unix(secs, us*1000), true
		}
	}
	return time.Time{}, false
}
