package ami

import "strings"

// EndpointOfChannel returns the endpoint a channel belongs to:
// "PJSIP/1001-00000000" -> "1001", "IAX2/iaxtrunk-123" -> "iaxtrunk"; ""
// for Local and other channels that have no endpoint.
func EndpointOfChannel(name string) string {
	tech, rest, ok := strings.Cut(name, "/")
	if !ok || (tech != "PJSIP" && tech != "SIP" && tech != "IAX2") {
		return ""
	}
	if i := strings.LastIndexByte(rest, '-'); i > 0 {
		rest = rest[:i]
	}
	return rest
}

// EndpointOfDevice returns the endpoint of a device name: "PJSIP/1001" ->
// "1001"; "" for devices that are not endpoints ("Queue:support_avail").
func EndpointOfDevice(dev string) string {
	tech, rest, ok := strings.Cut(dev, "/")
	if !ok || (tech != "PJSIP" && tech != "SIP" && tech != "IAX2") {
		return ""
	}
	return rest
}
