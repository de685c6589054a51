// Package bus is pbxpulse's one way to use NATS: the subject scheme (see
// docs/subjects.md), the stream definitions, connecting, and publishing
// events with deduplication.
package bus

import (
	"fmt"
	"strings"

	pb "github.com/pbxpulse/pbxpulse/pkg/pbxpulsev1"
)

// Stream names. Their subjects are part of the public API.
const (
	// StreamEvents is the name of the single event stream of earlier
	// versions, and the prefix of the per-tenant event streams (see
	// EventStream).
	StreamEvents = "PBX_EVENTS"
	// StreamLogs is the name of the single log stream of earlier versions,
	// and the prefix of the per-tenant log streams (see LogStream).
	StreamLogs = "PBX_LOGS"
)

// EventsFilter matches the events of every tenant (the subject filter of
// the single event stream of earlier versions).
const EventsFilter = "pbx.*.*.evt.>"

// EventStream is the name of a tenant's event stream, which holds every
// event of its PBXs except log lines, on TenantEvents(tenant). One stream
// per tenant: a tenant's projector reads its stream without a filter (a
// filtered read of a shared stream costs the server a subject match per
// message, and reads past every other tenant's), and its limits and
// permissions are the tenant's own.
func EventStream(tenant string) string { return StreamEvents + "_" + tenant }

// LogsFilter matches the log lines of every tenant (the subject filter of
// the single log stream of earlier versions).
const LogsFilter = "pbx.*.*.log.>"

// LogStream is the name of a tenant's log stream: log lines are high volume,
// so each tenant gets its own size and age limits.
func LogStream(tenant string) string { return StreamLogs + "_" + tenant }

// LogStreamSubjects are the subjects of a tenant's log stream: its log lines
// and its per-minute log statistics.
func LogStreamSubjects(tenant string) []string {
	return []string{"pbx." + tenant + ".*.log.>", "pbx." + tenant + ".*." + DomainLogStats}
}

// LogSubject is where a PBX's log entries of an Asterisk level are
// published: pbx.<tenant>.<pbx>.log.<level token>.
func LogSubject(tenant, pbx, level string) string {
	return "pbx." + tenant + "." + pbx + ".log." + token(level)
}

// LogStatsSubject is where the per-minute log counts of a PBX are published
// (pbx may be "*" to match every PBX of the tenant).
func LogStatsSubject(tenant, pbx string) string {
	return "pbx." + tenant + "." + pbx + "." + DomainLogStats
}

// Domain and type tokens of event subjects.
const (
	DomainPBX      = "pbx"
	DomainEndpoint = "endpoint"
	DomainTrunk    = "trunk"
	DomainCall     = "call"
	DomainQueue    = "queue"
	DomainARI      = "ari"
	DomainAudit    = "audit"
	// DomainSecurity: Asterisk security events (failed authentications,
	// ACL denials, ...) read from its log, kept with the events.
	DomainSecurity = "security"
	// DomainLog is the token of log subjects, pbx.<tenant>.<pbx>.log.<level>.
	DomainLog = "log"
	// DomainLogStats is the last token of the per-minute log counts,
	// pbx.<tenant>.<pbx>.logstats (log stream, not an event subject).
	DomainLogStats = "logstats"
)

// EventSubject returns the subject an event is published on:
// pbx.<tenant>.<pbx>.evt.<domain>.<type>; pbx.<tenant>.<pbx>.log.<level> for
// log lines and pbx.<tenant>.<pbx>.logstats for log counts.
func EventSubject(ev *pb.Event) (string, error) {
	d, t := Kind(ev)
	// Concatenation, not Sprintf: this runs for every event published.
	switch d {
	case "":
		return "", fmt.Errorf("bus: event %s has no payload", ev.GetId())
	case DomainLog:
		return "pbx." + ev.GetTenant() + "." + ev.GetPbxId() + ".log." + t, nil // = LogSubject
	case DomainLogStats:
		return LogStatsSubject(ev.GetTenant(), ev.GetPbxId()), nil
	}
	return "pbx." + ev.GetTenant() + "." + ev.GetPbxId() + ".evt." + d + "." + t, nil
}

// Kind returns the domain and type tokens of an event's subject.
func Kind(ev *pb.Event) (domain, typ string) {
	switch p := ev.GetPayload().(type) {
	case *pb.Event_PbxConnection:
		return DomainPBX, "connection"
	case *pb.Event_EndpointState:
		return DomainEndpoint, "state"
	case *pb.Event_ContactStatus:
		return DomainEndpoint, "contact"
	case *pb.Event_DeviceState:
		return DomainEndpoint, "device"
	case *pb.Event_TrunkRegistration:
		return DomainTrunk, "registration"
	case *pb.Event_ChannelCreated:
		return DomainCall, "channel_created"
	case *pb.Event_ChannelStateChanged:
		return DomainCall, "channel_state"
	case *pb.Event_ChannelHungUp:
		return DomainCall, "channel_hangup"
	case *pb.Event_CallerIdChanged:
		return DomainCall, "callerid"
	case *pb.Event_DialBegin:
		return DomainCall, "dial_begin"
	case *pb.Event_DialEnd:
		return DomainCall, "dial_end"
	case *pb.Event_BridgeEnter:
		return DomainCall, "bridge_enter"
	case *pb.Event_BridgeLeave:
		return DomainCall, "bridge_leave"
	case *pb.Event_ChannelsSnapshot:
		return DomainCall, "snapshot"
	case *pb.Event_PeerStatus:
		return DomainEndpoint, "peer"
	case *pb.Event_ExtensionStatus:
		return DomainEndpoint, "extension"
	case *pb.Event_ChannelHangupRequest:
		return DomainCall, "hangup_request"
	case *pb.Event_ChannelHold:
		return DomainCall, "hold"
	case *pb.Event_Dtmf:
		return DomainCall, "dtmf"
	case *pb.Event_Transfer:
		return DomainCall, "transfer"
	case *pb.Event_LocalBridge:
		return DomainCall, "local_bridge"
	case *pb.Event_ChannelRenamed:
		return DomainCall, "rename"
	case *pb.Event_BridgeLifecycle:
		return DomainCall, "bridge"
	case *pb.Event_ChannelVarSet:
		return DomainCall, "varset"
	case *pb.Event_StasisApp:
		return DomainCall, "stasis"
	case *pb.Event_QueueSummary:
		return DomainQueue, "summary"
	case *pb.Event_QueueMember:
		return DomainQueue, "member"
	case *pb.Event_QueueCaller:
		return DomainQueue, "caller"
	case *pb.Event_QueueAgent:
		return DomainQueue, "agent"
	case *pb.Event_QueuesSnapshot:
		return DomainQueue, "snapshot"
	case *pb.Event_Reconciliation:
		return DomainPBX, "reconciliation"
	case *pb.Event_AriEvent:
		return DomainARI, token(p.AriEvent.GetType())
	case *pb.Event_Audit:
		return DomainAudit, "command"
	case *pb.Event_LogLine:
		return DomainLog, token(p.LogLine.GetLevel())
	case *pb.Event_LogBatch:
		return DomainLog, token(p.LogBatch.GetLevel())
	case *pb.Event_LogStats:
		return DomainLogStats, ""
	case *pb.Event_SecurityEvent:
		return DomainSecurity, token(p.SecurityEvent.GetEvent())
	}
	return "", ""
}

// LevelToken is the subject token of an Asterisk log level: lower case,
// "unknown" for an empty level.
func LevelToken(level string) string { return token(level) }

// token makes PBX-supplied text safe as one subject token: lower case, and
// "unknown" when it is empty or holds a NATS separator or wildcard.
func token(s string) string {
	switch s { // the common levels, without allocating
	case "VERBOSE":
		return "verbose"
	case "DEBUG":
		return "debug"
	case "NOTICE":
		return "notice"
	case "WARNING":
		return "warning"
	case "ERROR":
		return "error"
	case "SECURITY":
		return "security"
	case "DTMF":
		return "dtmf"
	}
	s = strings.ToLower(s)
	if s == "" || strings.ContainsAny(s, ".*> \t\r\n") {
		return "unknown"
	}
	return s
}

// CommandSubject is the request subject of a call-control action on one PBX.
func CommandSubject(tenant, pbx, action string) string {
	return "pbx." + tenant + "." + pbx + ".cmd." + action
}

// CommandFilter matches every command for one tenant's PBXs.
func CommandFilter(tenant string) string { return "pbx." + tenant + ".*.cmd.*" }

// TenantEvents is the filter of one tenant's events on every PBX.
func TenantEvents(tenant string) string { return "pbx." + tenant + ".*.evt.>" }

// DeltaSubject is where the projector announces each committed version of a
// tenant's views (core NATS; the deltas themselves are kept in Postgres).
func DeltaSubject(tenant string) string { return "view." + tenant + ".delta" }
