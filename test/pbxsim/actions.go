package pbxsim

import (
	"fmt"
	"sort"
	"time"
)

// actionFunc answers one action with srv.mu held. The returned messages get
// the request's ActionID inserted as their second line.
type actionFunc func(s *Server, m msg) []msg

var actions map[string]actionFunc

func init() {
	actions = map[string]actionFunc{
		"ping":                           actPing,
		"coresettings":                   actCoreSettings,
		"corestatus":                     actCoreStatus,
		"pjsipshowendpoints":             actShowEndpoints,
		"pjsipshowcontacts":              actShowContacts,
		"pjsipshowregistrationsoutbound": actShowRegistrationsOutbound,
		"pjsipregister":                  actPJSIPRegister,
		"pjsipunregister":                actPJSIPUnregister,
		"coreshowchannels":               actCoreShowChannels,
		"hangup":                         actHangup,
		"originate":                      actOriginate,
		"redirect":                       actRedirect,
		"blindtransfer":                  actBlindTransfer,
		"atxfer":                         actAtxfer,
		"park":                           actPark,
		"bridge":                         actBridge,
		"mixmonitor":                     actMixMonitor,
		"stopmixmonitor":                 actStopMixMonitor,
		"getconfigjson":                  actGetConfigJSON,
		"updateconfig":                   actUpdateConfig,
		"reload":                         actReload,
		"queuestatus":                    actQueueStatus,
		"queuesummary":                   actQueueSummary,
		"queuepause":                     actQueuePause,
		"devicestatelist":                actDeviceStateList,
	}
}

// list wraps items the way every Asterisk list action does.
func list(startMsg, completeEvent string, items []msg, extra ...field) []msg {
	out := []msg{{{"Response", "Success"}, {"EventList", "start"}, {"Message", startMsg}}}
	out = append(out, items...)
	done := msg{{"Event", completeEvent}, {"EventList", "Complete"}, {"ListItems", itoa(len(items))}}
	return append(out, append(done, extra...))
}

func actPing(s *Server, m msg) []msg {
	now := time.Now()
	ts := fmt.Sprintf("%d.%06d", now.Unix(), now.Nanosecond()/1000)
	return []msg{{{"Response", "Success"}, {"Ping", "Pong"}, {"Timestamp", ts}}}
}

func actCoreSettings(s *Server, m msg) []msg {
	return []msg{{{"Response", "Success"}, {"AMIversion", "11.0.0"}, {"AsteriskVersion", "22.10.1"},
		{"SystemName", ""}, {"CoreMaxCalls", "0"}, {"CoreMaxLoadAvg", "0.000000"}, {"CoreRunUser", ""},
		{"CoreRunGroup", ""}, {"CoreMaxFilehandles", "0"}, {"CoreRealTimeEnabled", "No"},
		{"CoreCDRenabled", "Yes"}, {"CoreHTTPenabled", "No"}, {"SoundsSearchCustomDir", "No"}}}
}

func actCoreStatus(s *Server, m msg) []msg {
	st := s.started.UTC()
	calls := 0
	for _, c := range s.chans {
		if c.linkedid == c.uniqueid {
			calls++
		}
	}
	return []msg{{{"Response", "Success"},
		{"CoreStartupDate", st.Format("2006-01-02")}, {"CoreStartupTime", st.Format("15:04:05")},
		{"CoreReloadDate", st.Format("2006-01-02")}, {"CoreReloadTime", st.Format("15:04:05")},
		{"CoreCurrentCalls", itoa(calls)}, {"CoreProcessedCalls", itoa(s.processed)}}}
}

func actShowEndpoints(s *Server, m msg) []msg {
	items := make([]msg, 0, len(s.order)+1)
	for _, e := range s.order {
		contacts := ""
		if e.registered {
			contacts = e.name + "/" + e.uri() + ","
		}
		items = append(items, msg{{"Event", "EndpointList"}, {"ObjectType", "endpoint"}, {"ObjectName", e.name},
			{"Transport", ""}, {"Aor", e.name}, {"Auths", e.name}, {"OutboundAuths", ""}, {"Contacts", contacts},
			{"DeviceState", devStateDesc(e.computeDev())}, {"ActiveChannels", itoa(e.channels)}})
	}
	t := s.cfg.Trunk
	items = append(items, msg{{"Event", "EndpointList"}, {"ObjectType", "endpoint"}, {"ObjectName", t},
		{"Transport", "transport-udp"}, {"Aor", t}, {"Auths", ""}, {"OutboundAuths", ""},
		{"Contacts", t + "/sip:127.0.0.1:5070,"}, {"DeviceState", "Not in use"}, {"ActiveChannels", "0"}})
	return list("A listing of Endpoints follows, presented as EndpointList events", "EndpointListComplete", items)
}

func actShowContacts(s *Server, m msg) []msg {
	var items []msg
	for _, e := range s.order {
		if !e.registered {
			continue
		}
		items = append(items, msg{{"Event", "ContactList"}, {"ObjectType", "contact"}, {"ObjectName", e.contactID()},
			{"ViaAddr", "127.0.0.1"}, {"QualifyTimeout", "3.000000"}, {"Qualify2xxOnly", "false"},
			{"CallId", e.callID}, {"RegServer", ""}, {"PruneOnBoot", "no"}, {"Path", ""}, {"Endpoint", e.name},
			{"ViaPort", itoa(e.viaPort())}, {"AuthenticateQualify", "no"}, {"Uri", e.uri()},
			{"QualifyFrequency", "0"}, {"UserAgent", "sipp-heldout"}, {"ExpirationTime", itoa(int(e.expires.Unix()))},
			{"OutboundProxy", ""}, {"Status", "NonQualified"}, {"RoundtripUsec", "N/A"}})
	}
	return list("A listing of Contacts follows, presented as ContactList events", "ContactListComplete", items)
}

func actShowRegistrationsOutbound(s *Server, m msg) []msg {
	status, next, reg, notReg := "Unregistered", "0", "0", "1"
	if s.trunkUp {
		status, next, reg, notReg = "Registered", "105", "1", "0"
	}
	item := msg{{"Event", "OutboundRegistrationDetail"}, {"ObjectType", "registration"}, {"ObjectName", s.cfg.Trunk + "-reg"},
		{"MaxRetries", "100000"}, {"ClientUri", "sip:heldout@127.0.0.1:5070"}, {"SecurityNegotiation", "no"},
		{"AuthRejectionPermanent", "true"}, {"ServerUri", "sip:127.0.0.1:5070"}, {"MaxRandomInitialDelay", "10"},
		{"SupportPath", "false"}, {"RetryInterval", "15"}, {"ContactHeaderParams", ""}, {"Expiration", "120"},
		{"Transport", "transport-udp"}, {"Line", "false"}, {"ContactUser", s.cfg.Trunk + "-in"}, {"Endpoint", ""},
		{"UserAgent", ""}, {"ForbiddenRetryInterval", "15"}, {"OutboundAuth", ""}, {"OutboundProxy", ""},
		{"FatalRetryInterval", "15"}, {"SupportOutbound", "no"}, {"Status", status}, {"NextReg", next}}
	return list("Following are Events for each Outbound registration", "OutboundRegistrationDetailComplete",
		[]msg{item}, field{"Registered", reg}, field{"NotRegistered", notReg})
}

// afterReply defers an event until the current action's reply is queued.
func (s *Server) afterReply(f func()) { s.post = append(s.post, f) }

func (s *Server) regAction(m msg) (msg, bool) {
	if name := m.get("Registration"); name != s.cfg.Trunk+"-reg" {
		return msg{{"Response", "Error"}, {"Message", "Unable to retrieve registration entry " + name}}, false
	}
	return nil, true
}

func actPJSIPUnregister(s *Server, m msg) []msg {
	if e, ok := s.regAction(m); !ok {
		return []msg{e}
	}
	// The response is queued before the event: the capture shows it first.
	s.trunkUp = false
	s.afterReply(func() { s.registry("Unregistered") })
	return []msg{{{"Response", "Success"}, {"Message", "Unregistration sent"}}}
}

func actPJSIPRegister(s *Server, m msg) []msg {
	if e, ok := s.regAction(m); !ok {
		return []msg{e}
	}
	// Asterisk unregisters first and only reports Registered several
	// seconds later (see the trunk_register capture).
	s.trunkUp = false
	s.afterReply(func() { s.registry("Unregistered") })
	time.AfterFunc(2*time.Second, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if !s.closed && !s.trunkUp {
			s.trunkUp = true
			s.registry("Registered")
		}
	})
	return []msg{{{"Response", "Success"}, {"Message", "Reregistration sent"}}}
}

func actCoreShowChannels(s *Server, m msg) []msg {
	var items []msg
	// Newest first, matching the order of the in-call capture.
	for i := len(s.chans) - 1; i >= 0; i-- {
		c := s.chans[i]
		ev := msg{{"Event", "CoreShowChannel"}}
		ev = append(ev, c.block("")...)
		bridge := ""
		if c.br != nil {
			bridge = c.br.id
		}
		d := int(time.Since(c.created).Seconds())
		ev = append(ev, field{"Application", c.app}, field{"ApplicationData", c.appData},
			field{"Duration", fmt.Sprintf("%02d:%02d:%02d", d/3600, d/60%60, d%60)}, field{"BridgeId", bridge})
		items = append(items, ev)
	}
	return list("Channels will follow", "CoreShowChannelsComplete", items)
}

// actDeviceStateList lists every device's state as DeviceStateChange items
// (ami-actions-idle.* ActionID -21). Asterisk's order is its container's;
// here it is by name.
func actDeviceStateList(s *Server, m msg) []msg {
	names := make([]string, 0, len(s.devs))
	for n, d := range s.devs {
		if d.ami != "" {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	items := make([]msg, 0, len(names))
	for _, n := range names {
		items = append(items, msg{{"Event", "DeviceStateChange"}, {"Device", n}, {"State", s.devs[n].ami}})
	}
	return list("Device State Changes will follow", "DeviceStateListComplete", items)
}
