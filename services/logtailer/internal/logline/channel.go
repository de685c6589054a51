package logline

// channelTechs are the channel technologies whose channel names are looked
// for: PJSIP/1001-00000000, IAX2/iaxtrunk-123, Local/600@internal-00000001;1.
var channelTechs = map[string]bool{
	"PJSIP": true, "SIP": true, "IAX2": true, "Local": true, "DAHDI": true, "Motif": true,
	"UnicastRTP": true, "WebSocket": true, "AudioSocket": true, "Console": true, "Snoop": true,
	"Announcer": true, "Recorder": true, "CBAnn": true, "CBRec": true,
}

// Channel returns the first channel name the message mentions, or "". It
// finds what this regular expression (leftmost-first) would, without its
// cost on every log entry (channel_test.go checks that they agree):
//
//	\b(?:PJSIP|SIP|IAX2|Local|...)/[^\s"',:()<>\[\]{}]+-[0-9a-f]+(?:;[12])?\b
//
// i.e. a technology, a slash, a name, and the last "-<hex>" of the name
// (optionally followed by ";1" or ";2") that ends at a word boundary.
func Channel(msg string) string {
	if len(msg) > 4096 {
		msg = msg[:4096]
	}
	for slash := 0; ; slash++ {
		i := indexByteFrom(msg, '/', slash)
		if i < 0 {
			return ""
		}
		slash = i
		start := slash
		for start > 0 && isWordChar(msg[start-1]) {
			start--
		}
		if start == slash || !channelTechs[msg[start:slash]] {
			continue
		}
		// the name: the longest run of allowed characters after the slash
		end := slash + 1
		for end < len(msg) && isNameChar(msg[end]) {
			end++
		}
		// the rightmost '-' (at least one name character before it) whose
		// hex digits end the match at a word boundary
		for d := end - 1; d > slash+1; d-- {
			if msg[d] != '-' {
				continue
			}
			p := d + 1
			for p < len(msg) && isLowerHex(msg[p]) {
				p++
			}
			if p == d+1 {
				continue
			}
			if p+1 < len(msg) && msg[p] == ';' && (msg[p+1] == '1' || msg[p+1] == '2') && (p+2 == len(msg) || !isWordChar(msg[p+2])) {
				return msg[start : p+2]
			}
			if p == len(msg) || !isWordChar(msg[p]) {
				return msg[start:p]
			}
		}
	}
}

func indexByteFrom(s string, c byte, from int) int {
	for i := from; i < len(s); i++ {
		if s[i] == c {
			return i
		}
	}
	return -1
}

func isWordChar(c byte) bool {
	return c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

func isLowerHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' }

// isNameChar: not white space (as \s: \t \n \f \r and space) nor one of "',:()<>[]{}
func isNameChar(c byte) bool {
	switch c {
	case ' ', '\t', '\n', '\f', '\r', '"', '\'', ',', ':', '(', ')', '<', '>', '[', ']', '{', '}':
		return false
	}
	return true
}
