package logline

import "regexp"

// channelRe matches Asterisk channel names: PJSIP/1001-00000000,
// IAX2/iaxtrunk-123, Local/600@internal-00000001;1, ...
var channelRe = regexp.MustCompile(`\b(?:PJSIP|SIP|IAX2|Local|DAHDI|Motif|UnicastRTP|WebSocket|AudioSocket|Console|Snoop|Announcer|Recorder|CBAnn|CBRec)/[^\s"',:()<>\[\]{}]+-[0-9a-f]+(?:;[12])?\b`)

// Channel returns the first channel name the message mentions, or "".
func Channel(msg string) string {
	if len(msg) > 4096 {
		msg = msg[:4096]
	}
	return channelRe.FindString(msg)
}
