package logtailer

import (
	pb "github.com/pbxpulse/pbxpulse/pkg/pbxpulsev1"
	"github.com/pbxpulse/pbxpulse/services/logtailer/internal/logline"
)

// securityEvent converts a parsed security line into its payload: the
// fields Asterisk names (main/event.c's IE names) go to their own members,
// and every pair is kept in Fields as written.
func securityEvent(s logline.Security, file string) *pb.SecurityEvent {
	out := &pb.SecurityEvent{Event: s.Event, File: file, Fields: make([]*pb.SecurityField, 0, len(s.Fields))}
	for _, f := range s.Fields {
		out.Fields = append(out.Fields, &pb.SecurityField{Key: f.Key, Value: f.Value})
		switch f.Key {
		case "Severity":
			out.Severity = f.Value
		case "Service":
			out.Service = f.Value
		case "EventVersion":
			out.EventVersion = f.Value
		case "AccountID":
			out.AccountId = f.Value
		case "SessionID":
			out.SessionId = f.Value
		case "LocalAddress":
			out.LocalAddress = securityAddress(f.Value)
		case "RemoteAddress":
			out.RemoteAddress = securityAddress(f.Value)
		case "ExpectedAddress":
			out.ExpectedAddress = securityAddress(f.Value)
		case "EventTV":
			out.EventTv = f.Value
		case "SessionTV":
			out.SessionTv = f.Value
		case "Module":
			out.Module = f.Value
		case "ACLName":
			out.AclName = f.Value
		case "RequestType":
			out.RequestType = f.Value
		case "RequestParams":
			out.RequestParams = f.Value
		case "AuthMethod":
			out.AuthMethod = f.Value
		case "Challenge":
			out.Challenge = f.Value
		case "Response":
			out.Response = f.Value
		case "ExpectedResponse":
			out.ExpectedResponse = f.Value
		case "ReceivedChallenge":
			out.ReceivedChallenge = f.Value
		case "ReceivedHash":
			out.ReceivedHash = f.Value
		case "UsingPassword":
			out.UsingPassword = f.Value
		case "AttemptedTransport":
			out.AttemptedTransport = f.Value
		}
	}
	return out
}

func securityAddress(raw string) *pb.SecurityAddress {
	a := &pb.SecurityAddress{Raw: raw}
	if p, ok := logline.ParseAddress(raw); ok {
		a.Family, a.Transport, a.Ip, a.Port = p.Family, p.Transport, p.IP, p.Port
	}
	return a
}

// securityEndpoint is the endpoint a security event concerns: its account
// for the SIP and IAX services, whose accounts are endpoint names (the
// manager's or ARI's users are not).
func securityEndpoint(s *pb.SecurityEvent) string {
	switch s.GetService() {
	case "PJSIP", "SIP", "IAX2":
		return s.GetAccountId()
	}
	return ""
}
