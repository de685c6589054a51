package gateway

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/pbxpulse/pbxpulse/pkg/bus"
	"github.com/pbxpulse/pbxpulse/pkg/config"
	pb "github.com/pbxpulse/pbxpulse/pkg/pbxpulsev1"
)

// actionSpec is what the gateway knows of one collector command
// (docs/commands.md): who may send it and which request message it takes.
type actionSpec struct {
	role   Role
	newReq func() proto.Message
}

// actions are the commands a principal may send through the gateway. The
// collector checks the values; the gateway checks who asks, and parses the
// body into the request message so that a typo in a field name is a 400
// here rather than a field the collector silently never sees.
var actions = map[string]actionSpec{
	"hangup":        {RoleSupervisor, func() proto.Message { return &pb.HangupRequest{} }},
	"redirect":      {RoleSupervisor, func() proto.Message { return &pb.RedirectRequest{} }},
	"atxfer":        {RoleSupervisor, func() proto.Message { return &pb.AttendedTransferRequest{} }},
	"originate":     {RoleSupervisor, func() proto.Message { return &pb.OriginateRequest{} }},
	"spy":           {RoleSupervisor, func() proto.Message { return &pb.SpyRequest{} }},
	"park":          {RoleSupervisor, func() proto.Message { return &pb.ParkRequest{} }},
	"bridge":        {RoleSupervisor, func() proto.Message { return &pb.BridgeRequest{} }},
	"record_start":  {RoleSupervisor, func() proto.Message { return &pb.RecordRequest{} }},
	"record_stop":   {RoleSupervisor, func() proto.Message { return &pb.RecordRequest{} }},
	"config_get":    {RoleAdmin, func() proto.Message { return &pb.ConfigGetRequest{} }},
	"config_update": {RoleAdmin, func() proto.Message { return &pb.ConfigUpdateRequest{} }},
}

func actionNames() []string {
	out := make([]string, 0, len(actions))
	for k := range actions {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// maxActionBody bounds a command's JSON; the largest real one (an originate
// with a few variables) is well under a kilobyte.
const maxActionBody = 64 << 10

// actionTimeout is longer than the collector's own 15 s per command, so that
// a slow PBX is reported by the collector (with its reason) rather than by a
// gateway timeout. A variable for the tests.
var actionTimeout = 20 * time.Second

// requestIDRe is what a client's X-Request-Id may be: it reaches logs and
// audit events, so it is held to a harmless alphabet.
var requestIDRe = regexp.MustCompile(`^[A-Za-z0-9._:\-]{1,128}$`)

// replyStatus maps a CommandReply error code to the HTTP status.
var replyStatus = map[string]int{
	"invalid":     http.StatusBadRequest,
	"not_found":   http.StatusNotFound,
	"pbx_error":   http.StatusBadGateway,
	"unavailable": http.StatusServiceUnavailable,
	"not_leader":  http.StatusServiceUnavailable,
}

// originAllowed reports whether a request's Origin, when it has one (a
// browser's), is the gateway's own host or matches ALLOW_ORIGIN, as the
// WebSocket handshake requires.
func (g *Gateway) originAllowed(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" {
		return r.Header.Get("Sec-Fetch-Site") != "cross-site"
	}
	u, err := url.Parse(o)
	if err != nil || u.Host == "" {
		return false
	}
	if strings.EqualFold(u.Host, r.Host) {
		return true
	}
	for _, pat := range g.cfg.origins() {
		if ok, _ := path.Match(strings.ToLower(pat), strings.ToLower(u.Host)); ok {
			return true
		}
	}
	return false
}

// handleAction sends a command to the collector that leads a PBX of the
// principal's tenant: POST api/v1/pbx/{pbx}/actions/{action}, the body being
// the action's request in JSON; the answer is the collector's CommandReply.
func (g *Gateway) handleAction(w http.ResponseWriter, r *http.Request) {
	p, ok := principalFrom(r.Context())
	if !ok {
		httpError(w, http.StatusUnauthorized, "unauthorized", "a valid token is required")
		return
	}
	pbx, name := r.PathValue("pbx"), r.PathValue("action")
	if !config.ValidToken(pbx) {
		badRequest(w, "pbx: want letters, digits, _ and -")
		return
	}
	spec, ok := actions[name]
	if !ok {
		httpError(w, http.StatusNotFound, "not_found", fmt.Sprintf("unknown action %q; known: %s", name, strings.Join(actionNames(), ", ")))
		return
	}
	// Checked before the body is read: a weaker role learns nothing and
	// nothing of its request reaches NATS.
	if !p.Can(spec.role) {
		httpError(w, http.StatusForbidden, "forbidden", "role "+p.Role.String()+" may not "+name+"; "+spec.role.String()+" required")
		return
	}
	// A browser page of another site can send a "simple" POST without
	// asking (no CORS preflight) as long as it is not JSON: requiring JSON
	// and a known Origin keeps such a page from commanding the PBX with a
	// signed-in (or open) gateway's authority.
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
		httpError(w, http.StatusUnsupportedMediaType, "invalid", "the body must be JSON (Content-Type: application/json)")
		return
	}
	if !g.originAllowed(r) {
		httpError(w, http.StatusForbidden, "forbidden", "requests from this origin are not allowed (ALLOW_ORIGIN)")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxActionBody))
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		httpError(w, http.StatusRequestEntityTooLarge, "invalid", fmt.Sprintf("request body over %d bytes", maxActionBody))
		return
	}
	if err != nil {
		badRequest(w, "request body: "+err.Error())
		return
	}
	if len(strings.TrimSpace(string(body))) == 0 {
		body = []byte("{}")
	}
	req := spec.newReq()
	if err := (protojson.UnmarshalOptions{}).Unmarshal(body, req); err != nil {
		badRequest(w, "request is not valid JSON for "+name+": "+err.Error())
		return
	}
	reqID := requestID(r, req)
	// The actor is who the token says, whatever the body claims: the
	// collector records it in the audit event.
	setMeta(req, &pb.CommandMeta{RequestId: reqID, Actor: p.Subject})
	data, err := protojson.Marshal(req)
	if err != nil {
		httpError(w, http.StatusInternalServerError, "internal", "encode request")
		return
	}
	w.Header().Set("X-Request-Id", reqID)
	log := g.log.With("tenant", p.Tenant, "pbx", pbx, "action", name, "actor", p.Subject, "request_id", reqID)

	ctx, cancel := context.WithTimeout(r.Context(), actionTimeout)
	defer cancel()
	msg, err := g.nc.RequestWithContext(ctx, bus.CommandSubject(p.Tenant, pbx, name), data)
	switch {
	case err == nil:
	case errors.Is(err, nats.ErrNoResponders):
		log.Info("action: no collector")
		httpError(w, http.StatusServiceUnavailable, "unavailable", "no collector is connected to PBX "+pbx)
		return
	case r.Context().Err() != nil:
		log.Info("action: client went away before the reply", "err", err)
		return
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout):
		log.Warn("action: timed out")
		httpError(w, http.StatusGatewayTimeout, "timeout", fmt.Sprintf("PBX %s did not answer within %s", pbx, actionTimeout))
		return
	default:
		log.Warn("action: request failed", "err", err)
		httpError(w, http.StatusServiceUnavailable, "unavailable", "the message bus is unavailable")
		return
	}
	status, out, err := actionReply(msg.Data)
	if err != nil {
		log.Warn("action: undecodable reply", "err", err)
		httpError(w, http.StatusBadGateway, "pbx_error", "the collector's reply could not be read")
		return
	}
	log.Info("action", "status", status)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(out)
}

// actionReply turns the collector's CommandReply into the HTTP status and
// body: the reply's own JSON (lowerCamelCase, as docs/commands.md shows it)
// with "ok" always present and, on failure, the API's "error" code beside
// errorCode, so that clients handle it like any other error body.
func actionReply(data []byte) (int, []byte, error) {
	var rep pb.CommandReply
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(data, &rep); err != nil {
		return 0, nil, err
	}
	enc, err := protojson.Marshal(&rep)
	if err != nil {
		return 0, nil, err
	}
	fields := map[string]json.RawMessage{}
	if err := json.Unmarshal(enc, &fields); err != nil {
		return 0, nil, err
	}
	fields["ok"] = json.RawMessage(fmt.Sprint(rep.GetOk()))
	if _, ok := fields["message"]; !ok {
		fields["message"] = json.RawMessage(`""`)
	}
	status := http.StatusOK
	if !rep.GetOk() {
		code := rep.GetErrorCode()
		if code == "" {
			code = "pbx_error"
		}
		var known bool
		if status, known = replyStatus[code]; !known {
			status = http.StatusBadGateway
		}
		fields["error"], _ = json.Marshal(code)
	}
	out, err := json.Marshal(fields)
	return status, out, err
}

// requestID is the client's X-Request-Id, else the body's meta.requestId,
// else a new random one; ids outside a harmless alphabet are replaced.
func requestID(r *http.Request, req proto.Message) string {
	if id := r.Header.Get("X-Request-Id"); requestIDRe.MatchString(id) {
		return id
	}
	if id := getMeta(req).GetRequestId(); requestIDRe.MatchString(id) {
		return id
	}
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// metaField is the CommandMeta field every request message has.
func metaField(req proto.Message) protoreflect.FieldDescriptor {
	return req.ProtoReflect().Descriptor().Fields().ByName("meta")
}

func getMeta(req proto.Message) *pb.CommandMeta {
	m, _ := req.ProtoReflect().Get(metaField(req)).Message().Interface().(*pb.CommandMeta)
	return m
}

func setMeta(req proto.Message, meta *pb.CommandMeta) {
	req.ProtoReflect().Set(metaField(req), protoreflect.ValueOfMessage(meta.ProtoReflect()))
}
