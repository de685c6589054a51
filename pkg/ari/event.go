package ari

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Event is one message of the event websocket.
type Event struct {
	// Seq is the message's position on its connection (1, 2, ...); frames
	// that could not be decoded have a number too, so a gap never hides one.
	Seq uint64
	// Type is ARI's "type", e.g. "ChannelCreated"; it may be a type this
	// package has no typed decoding for (see Known).
	Type string
	// Application is the Stasis application the event was sent for.
	Application string
	// Timestamp is when Asterisk created the event; zero when the event has
	// none or it cannot be parsed.
	Timestamp time.Time
	// AsteriskID is the entity id of the Asterisk that sent the event.
	AsteriskID string
	// Raw is the frame exactly as received. When Err is set it is the
	// offending bytes and not valid JSON.
	Raw json.RawMessage
	// Received is when the frame was read from the socket.
	Received time.Time
	// Err is set (a *FrameError) when the frame is not an ARI message; the
	// connection goes on with the next frame.
	Err error
}

// FrameError reports a websocket frame that is not an ARI message: not a
// JSON object, or one without a string "type". It never quotes the frame.
type FrameError struct {
	Len    int
	Reason string
	Err    error
}

func (e *FrameError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("ari: malformed frame (%d bytes): %s: %v", e.Len, e.Reason, e.Err)
	}
	return fmt.Sprintf("ari: malformed frame (%d bytes): %s", e.Len, e.Reason)
}

func (e *FrameError) Unwrap() error { return e.Err }

// Parse decodes the envelope of one frame (type, application, timestamp,
// asterisk_id). Only a JSON object with a string "type" is required: the
// other envelope fields are read when they are strings and left empty
// otherwise, so that an odd field never costs the event. A frame of an
// unknown type is not an error.
func Parse(frame []byte) (Event, error) {
	ev := Event{Raw: json.RawMessage(frame)}
	var env struct {
		Type        json.RawMessage `json:"type"`
		Application json.RawMessage `json:"application"`
		Timestamp   json.RawMessage `json:"timestamp"`
		AsteriskID  json.RawMessage `json:"asterisk_id"`
	}
	if err := json.Unmarshal(frame, &env); err != nil {
		return ev, &FrameError{Len: len(frame), Reason: "not an ARI JSON object", Err: err}
	}
	if json.Unmarshal(env.Type, &ev.Type) != nil || ev.Type == "" {
		return ev, &FrameError{Len: len(frame), Reason: `no "type" string`}
	}
	_ = json.Unmarshal(env.Application, &ev.Application)
	_ = json.Unmarshal(env.AsteriskID, &ev.AsteriskID)
	var ts string
	if json.Unmarshal(env.Timestamp, &ts) == nil {
		ev.Timestamp = ParseTime(ts)
	}
	return ev, nil
}

// Time is an ARI date ("2026-11-21T19:09:31.766+0000"). Decoding is lenient:
// a string that is not a date leaves the zero time rather than failing the
// whole event, because losing an event over a timestamp is worse.
type Time struct{ time.Time }

// UnmarshalJSON accepts ARI's format, RFC 3339 and null.
func (t *Time) UnmarshalJSON(b []byte) error {
	if bytes.Equal(b, []byte("null")) {
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	t.Time = ParseTime(s)
	return nil
}

// MarshalJSON writes ARI's format.
func (t Time) MarshalJSON() ([]byte, error) {
	if t.IsZero() {
		return []byte(`""`), nil
	}
	return json.Marshal(t.Format("2006-01-02T15:04:05.000-0700"))
}

// ParseTime reads an ARI date; it returns the zero time for anything else.
func ParseTime(s string) time.Time {
	// Go accepts a fractional second after the seconds field even when the
	// layout has none; Z0700 takes both "+0000" (Asterisk) and "Z".
	for _, layout := range []string{"2006-01-02T15:04:05Z0700", time.RFC3339Nano} {
		if t, err := time.Parse(layout, s); err == nil {
			return t
		}
	}
	return time.Time{}
}

// NumString is a number ARI sends as a JSON string (ContactInfo's
// roundtrip_usec); a bare JSON number is accepted too.
type NumString string

// UnmarshalJSON accepts a string or a number.
func (n *NumString) UnmarshalJSON(b []byte) error {
	if bytes.Equal(b, []byte("null")) {
		return nil
	}
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*n = NumString(s)
		return nil
	}
	var f json.Number
	if err := json.Unmarshal(b, &f); err != nil {
		return err
	}
	*n = NumString(f.String())
	return nil
}

// Int returns the value as an integer and whether it is one.
func (n NumString) Int() (int64, bool) {
	v, err := strconv.ParseInt(strings.TrimSpace(string(n)), 10, 64)
	return v, err == nil
}

// CallerID is a caller or connected-line identity. ARI sends "" where AMI
// says "<unknown>".
type CallerID struct {
	Name   string `json:"name"`
	Number string `json:"number"`
}

// DialplanCEP is a channel's dialplan location.
type DialplanCEP struct {
	Context  string `json:"context"`
	Exten    string `json:"exten"`
	Priority int64  `json:"priority"`
	AppName  string `json:"app_name"`
	AppData  string `json:"app_data"`
}

// Channel is ARI's channel snapshot. It has no linkedid (AMI's Linkedid);
// the normalizer infers it.
type Channel struct {
	// ID is AMI's Uniqueid.
	ID         string `json:"id"`
	ProtocolID string `json:"protocol_id"`
	Name       string `json:"name"`
	// State is ast_state2str's text: "Down", "Ring", "Ringing", "Up", ...
	State        string            `json:"state"`
	Caller       CallerID          `json:"caller"`
	Connected    CallerID          `json:"connected"`
	AccountCode  string            `json:"accountcode"`
	Dialplan     DialplanCEP       `json:"dialplan"`
	CreationTime Time              `json:"creationtime"`
	Language     string            `json:"language"`
	ChannelVars  map[string]string `json:"channelvars,omitempty"`
	CallerRDNIS  string            `json:"caller_rdnis,omitempty"`
	TenantID     string            `json:"tenantid,omitempty"`
}

// Bridge is ARI's bridge snapshot. BridgeClass ("basic") is what AMI calls
// BridgeType; ARI's BridgeType is "mixing" or "holding".
type Bridge struct {
	ID            string   `json:"id"`
	Technology    string   `json:"technology"`
	BridgeType    string   `json:"bridge_type"`
	BridgeClass   string   `json:"bridge_class"`
	Creator       string   `json:"creator"`
	Name          string   `json:"name"`
	Channels      []string `json:"channels"`
	CreationTime  Time     `json:"creationtime"`
	VideoMode     string   `json:"video_mode,omitempty"`
	VideoSourceID string   `json:"video_source_id,omitempty"`
}

// Endpoint is ARI's endpoint: technology/resource, "online", "offline" or
// "unknown", and the ids of its channels.
type Endpoint struct {
	Technology string   `json:"technology"`
	Resource   string   `json:"resource"`
	State      string   `json:"state,omitempty"`
	ChannelIDs []string `json:"channel_ids"`
}

// ContactInfo is one contact of a ContactStatusChange.
type ContactInfo struct {
	URI           string    `json:"uri"`
	ContactStatus string    `json:"contact_status"`
	AOR           string    `json:"aor"`
	RoundtripUsec NumString `json:"roundtrip_usec"`
}

// Peer is the peer of a PeerStatusChange.
type Peer struct {
	PeerStatus string `json:"peer_status"`
	Cause      string `json:"cause,omitempty"`
	Address    string `json:"address,omitempty"`
	Port       string `json:"port,omitempty"`
	Time       string `json:"time,omitempty"`
}

// DeviceState is the device of a DeviceStateChanged.
type DeviceState struct {
	Name  string `json:"name"`
	State string `json:"state"`
}

// StasisStart is a channel entering a Stasis application.
type StasisStart struct {
	Args           []string `json:"args"`
	Channel        Channel  `json:"channel"`
	ReplaceChannel *Channel `json:"replace_channel,omitempty"`
}

// StasisEnd is a channel leaving a Stasis application.
type StasisEnd struct {
	Channel Channel `json:"channel"`
}

// ChannelCreated is a new channel.
type ChannelCreated struct {
	Channel Channel `json:"channel"`
}

// ChannelStateChange is a channel's state change.
type ChannelStateChange struct {
	Channel Channel `json:"channel"`
}

// ChannelDestroyed is a channel's end, with the hangup cause.
type ChannelDestroyed struct {
	Cause    int     `json:"cause"`
	CauseTxt string  `json:"cause_txt"`
	Channel  Channel `json:"channel"`
}

// ChannelHangupRequest is a (soft) hangup request; AMI's HangupRequest and
// SoftHangupRequest both become this.
type ChannelHangupRequest struct {
	Cause   int     `json:"cause"`
	Soft    bool    `json:"soft"`
	Channel Channel `json:"channel"`
}

// ChannelDialplan is a channel moving in the dialplan (AMI Newexten).
type ChannelDialplan struct {
	Channel         Channel `json:"channel"`
	DialplanApp     string  `json:"dialplan_app"`
	DialplanAppData string  `json:"dialplan_app_data"`
}

// ChannelDtmfReceived is a received DTMF digit (sent at its end).
type ChannelDtmfReceived struct {
	Digit      string  `json:"digit"`
	DurationMs int     `json:"duration_ms"`
	Channel    Channel `json:"channel"`
}

// ChannelVarset is a variable being set; Channel is nil for a global one.
type ChannelVarset struct {
	Variable string   `json:"variable"`
	Value    string   `json:"value"`
	Channel  *Channel `json:"channel,omitempty"`
}

// ChannelCallerID is a channel's caller id change (ARI "ChannelCallerId").
type ChannelCallerID struct {
	CallerPresentation    int     `json:"caller_presentation"`
	CallerPresentationTxt string  `json:"caller_presentation_txt"`
	Channel               Channel `json:"channel"`
}

// ChannelConnectedLine is a channel's connected line change.
type ChannelConnectedLine struct {
	Channel Channel `json:"channel"`
}

// ChannelHold is a channel putting its peer on hold.
type ChannelHold struct {
	Channel    Channel `json:"channel"`
	MusicClass string  `json:"musicclass,omitempty"`
}

// ChannelUnhold is a channel taking its peer off hold.
type ChannelUnhold struct {
	Channel Channel `json:"channel"`
}

// DialEvent is ARI's "Dial" event (named so beside the Dial function): a
// dial attempt changing state: DialStatus "" when it begins,
// "RINGING"/"PROCEEDING"/"PROGRESS" while it goes on, then the final status
// (ANSWER, BUSY, NOANSWER, CANCEL, ...). Caller is nil when nobody dials
// (an originate).
type DialEvent struct {
	Caller     *Channel `json:"caller,omitempty"`
	Peer       Channel  `json:"peer"`
	Forward    string   `json:"forward,omitempty"`
	Forwarded  *Channel `json:"forwarded,omitempty"`
	DialString string   `json:"dialstring,omitempty"`
	DialStatus string   `json:"dialstatus"`
}

// BridgeCreated is a new bridge.
type BridgeCreated struct {
	Bridge Bridge `json:"bridge"`
}

// BridgeDestroyed is a bridge's end.
type BridgeDestroyed struct {
	Bridge Bridge `json:"bridge"`
}

// ChannelEnteredBridge is a channel joining a bridge; Bridge.Channels
// already includes it.
type ChannelEnteredBridge struct {
	Bridge  Bridge   `json:"bridge"`
	Channel *Channel `json:"channel,omitempty"`
}

// ChannelLeftBridge is a channel leaving a bridge; Bridge.Channels no longer
// includes it.
type ChannelLeftBridge struct {
	Bridge  Bridge  `json:"bridge"`
	Channel Channel `json:"channel"`
}

// BridgeBlindTransfer is a blind transfer.
type BridgeBlindTransfer struct {
	Channel        Channel  `json:"channel"`
	ReplaceChannel *Channel `json:"replace_channel,omitempty"`
	Transferee     *Channel `json:"transferee,omitempty"`
	Exten          string   `json:"exten"`
	Context        string   `json:"context"`
	Result         string   `json:"result"`
	IsExternal     bool     `json:"is_external"`
	Bridge         *Bridge  `json:"bridge,omitempty"`
}

// BridgeAttendedTransfer is an attended transfer.
type BridgeAttendedTransfer struct {
	TransfererFirstLeg         Channel  `json:"transferer_first_leg"`
	TransfererSecondLeg        Channel  `json:"transferer_second_leg"`
	ReplaceChannel             *Channel `json:"replace_channel,omitempty"`
	Transferee                 *Channel `json:"transferee,omitempty"`
	TransferTarget             *Channel `json:"transfer_target,omitempty"`
	Result                     string   `json:"result"`
	IsExternal                 bool     `json:"is_external"`
	TransfererFirstLegBridge   *Bridge  `json:"transferer_first_leg_bridge,omitempty"`
	TransfererSecondLegBridge  *Bridge  `json:"transferer_second_leg_bridge,omitempty"`
	DestinationType            string   `json:"destination_type"`
	DestinationBridge          string   `json:"destination_bridge,omitempty"`
	DestinationApplication     string   `json:"destination_application,omitempty"`
	DestinationLinkFirstLeg    *Channel `json:"destination_link_first_leg,omitempty"`
	DestinationLinkSecondLeg   *Channel `json:"destination_link_second_leg,omitempty"`
	DestinationThreewayChannel *Channel `json:"destination_threeway_channel,omitempty"`
	DestinationThreewayBridge  *Bridge  `json:"destination_threeway_bridge,omitempty"`
}

// EndpointStateChange is an endpoint's state change.
type EndpointStateChange struct {
	Endpoint Endpoint `json:"endpoint"`
}

// DeviceStateChanged is a device state change (AMI DeviceStateChange).
type DeviceStateChanged struct {
	DeviceState DeviceState `json:"device_state"`
}

// ContactStatusChange is a contact's status change (AMI ContactStatus).
type ContactStatusChange struct {
	Endpoint    Endpoint    `json:"endpoint"`
	ContactInfo ContactInfo `json:"contact_info"`
}

// PeerStatusChange is a peer's status change (AMI PeerStatus).
type PeerStatusChange struct {
	Endpoint Endpoint `json:"endpoint"`
	Peer     Peer     `json:"peer"`
}

// typed maps each event type with a typed decoding to a constructor.
var typed = map[string]func() any{
	"StasisStart":            func() any { return new(StasisStart) },
	"StasisEnd":              func() any { return new(StasisEnd) },
	"ChannelCreated":         func() any { return new(ChannelCreated) },
	"ChannelStateChange":     func() any { return new(ChannelStateChange) },
	"ChannelDestroyed":       func() any { return new(ChannelDestroyed) },
	"ChannelHangupRequest":   func() any { return new(ChannelHangupRequest) },
	"ChannelDialplan":        func() any { return new(ChannelDialplan) },
	"ChannelDtmfReceived":    func() any { return new(ChannelDtmfReceived) },
	"ChannelVarset":          func() any { return new(ChannelVarset) },
	"ChannelCallerId":        func() any { return new(ChannelCallerID) },
	"ChannelConnectedLine":   func() any { return new(ChannelConnectedLine) },
	"ChannelHold":            func() any { return new(ChannelHold) },
	"ChannelUnhold":          func() any { return new(ChannelUnhold) },
	"Dial":                   func() any { return new(DialEvent) },
	"BridgeCreated":          func() any { return new(BridgeCreated) },
	"BridgeDestroyed":        func() any { return new(BridgeDestroyed) },
	"ChannelEnteredBridge":   func() any { return new(ChannelEnteredBridge) },
	"ChannelLeftBridge":      func() any { return new(ChannelLeftBridge) },
	"BridgeBlindTransfer":    func() any { return new(BridgeBlindTransfer) },
	"BridgeAttendedTransfer": func() any { return new(BridgeAttendedTransfer) },
	"EndpointStateChange":    func() any { return new(EndpointStateChange) },
	"DeviceStateChanged":     func() any { return new(DeviceStateChanged) },
	"ContactStatusChange":    func() any { return new(ContactStatusChange) },
	"PeerStatusChange":       func() any { return new(PeerStatusChange) },
}

// Known reports whether the event type has a typed decoding in this package.
func Known(eventType string) bool {
	_, ok := typed[eventType]
	return ok
}

// ErrNoFrame is returned by Decode for an event that carries a FrameError.
var ErrNoFrame = errors.New("ari: event has no valid frame")

// Decode returns the typed event (*ChannelCreated, *DialEvent, ...) for a known
// type, and (nil, nil) for a type this package does not know: such an event
// is still a valid event, kept as Raw. An error means the frame's JSON does
// not fit the type's documented shape.
func (e Event) Decode() (any, error) {
	if e.Err != nil {
		return nil, ErrNoFrame
	}
	mk, ok := typed[e.Type]
	if !ok {
		return nil, nil
	}
	v := mk()
	if err := json.Unmarshal(e.Raw, v); err != nil {
		return nil, fmt.Errorf("ari: decode %s: %w", e.Type, err)
	}
	return v, nil
}
