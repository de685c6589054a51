package collector

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/staskobzar/goami2"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/pbxpulse/pbxpulse/pkg/ami"
	"github.com/pbxpulse/pbxpulse/pkg/bus"
	pb "github.com/pbxpulse/pbxpulse/pkg/pbxpulsev1"
)

// Command error codes (CommandReply.error_code).
const (
	errInvalid     = "invalid"
	errNotFound    = "not_found"
	errPBX         = "pbx_error"
	errUnavailable = "unavailable"
)

// cmdError is a command failure with its reply code.
type cmdError struct {
	code string
	msg  string
}

func (e *cmdError) Error() string { return e.msg }

func invalid(format string, args ...any) error {
	return &cmdError{code: errInvalid, msg: fmt.Sprintf(format, args...)}
}

// What a command may name. Values reach AMI fields, so besides the line
// breaks pkg/ami refuses, they are held to what Asterisk names look like.
var (
	channelRe  = regexp.MustCompile(`^[A-Za-z0-9_]+/[A-Za-z0-9_.@:+*#;/=\-]{1,200}$`)
	extenRe    = regexp.MustCompile(`^[A-Za-z0-9_*#+.!\-]{1,80}$`)
	contextRe  = regexp.MustCompile(`^[A-Za-z0-9_\-.]{1,80}$`)
	sectionRe  = regexp.MustCompile(`^[A-Za-z0-9_\-.+@]{1,80}$`)
	optionRe   = regexp.MustCompile(`^[a-z0-9_]{1,64}$`)
	fileRe     = regexp.MustCompile(`^[A-Za-z0-9_\-.]{1,120}$`)
	varNameRe  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_()]{0,63}$`)
	printable  = regexp.MustCompile(`^[^\x00-\x1f\x7f]{0,256}$`)
	secretOpts = map[string]bool{"password": true, "md5_cred": true, "secret": true}
)

func checkRe(re *regexp.Regexp, field, v string, required bool) error {
	if v == "" && !required {
		return nil
	}
	if !re.MatchString(v) {
		return invalid("%s %q is not valid", field, v)
	}
	return nil
}

// commandHandler executes one kind of command against the PBX's AMI.
type commandHandler struct {
	newReq func() proto.Message
	target func(proto.Message) string
	run    func(ctx context.Context, conn *ami.Conn, req proto.Message) (*pb.CommandReply, error)
}

var commands = map[string]commandHandler{
	"hangup":        {func() proto.Message { return &pb.HangupRequest{} }, func(m proto.Message) string { return m.(*pb.HangupRequest).GetChannel() }, cmdHangup},
	"originate":     {func() proto.Message { return &pb.OriginateRequest{} }, func(m proto.Message) string { return m.(*pb.OriginateRequest).GetChannel() }, cmdOriginate},
	"redirect":      {func() proto.Message { return &pb.RedirectRequest{} }, func(m proto.Message) string { return m.(*pb.RedirectRequest).GetChannel() }, cmdRedirect},
	"atxfer":        {func() proto.Message { return &pb.AttendedTransferRequest{} }, func(m proto.Message) string { return m.(*pb.AttendedTransferRequest).GetChannel() }, cmdAtxfer},
	"park":          {func() proto.Message { return &pb.ParkRequest{} }, func(m proto.Message) string { return m.(*pb.ParkRequest).GetChannel() }, cmdPark},
	"bridge":        {func() proto.Message { return &pb.BridgeRequest{} }, func(m proto.Message) string { return m.(*pb.BridgeRequest).GetChannel1() }, cmdBridge},
	"record_start":  {func() proto.Message { return &pb.RecordRequest{} }, func(m proto.Message) string { return m.(*pb.RecordRequest).GetChannel() }, cmdRecordStart},
	"record_stop":   {func() proto.Message { return &pb.RecordRequest{} }, func(m proto.Message) string { return m.(*pb.RecordRequest).GetChannel() }, cmdRecordStop},
	"spy":           {func() proto.Message { return &pb.SpyRequest{} }, func(m proto.Message) string { return m.(*pb.SpyRequest).GetChannel() }, cmdSpy},
	"config_get":    {func() proto.Message { return &pb.ConfigGetRequest{} }, func(m proto.Message) string { return m.(*pb.ConfigGetRequest).GetSection() }, cmdConfigGet},
	"config_update": {func() proto.Message { return &pb.ConfigUpdateRequest{} }, func(m proto.Message) string { return m.(*pb.ConfigUpdateRequest).GetSection() }, cmdConfigUpdate},
}

// CommandNames lists the supported command actions.
func CommandNames() []string {
	out := make([]string, 0, len(commands))
	for k := range commands {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// serveCommands answers this PBX's command subject while the connection
// lives. Each request runs on its own goroutine (at most 16 at once) so a
// slow PBX answer never holds the event loop or other commands.
func (s *session) serveCommands(ctx context.Context, conn *ami.Conn) (*nats.Subscription, error) {
	sem := make(chan struct{}, 16)
	subj := bus.CommandSubject(s.tenant, s.pbx.ID, "*")
	sub, err := s.nc.Subscribe(subj, func(msg *nats.Msg) {
		select {
		case sem <- struct{}{}:
		default:
			s.reply(msg, &pb.CommandReply{ErrorCode: errUnavailable, Message: "too many commands in progress"})
			return
		}
		go func() {
			defer func() { <-sem }()
			s.handleCommand(ctx, conn, msg)
		}()
	})
	if err != nil {
		return nil, fmt.Errorf("subscribe %s: %w", subj, err)
	}
	return sub, nil
}

func (s *session) handleCommand(ctx context.Context, conn *ami.Conn, msg *nats.Msg) {
	action := msg.Subject[strings.LastIndexByte(msg.Subject, '.')+1:]
	h, ok := commands[action]
	if !ok {
		s.reply(msg, &pb.CommandReply{ErrorCode: errInvalid, Message: fmt.Sprintf("unknown command %q; known: %s", action, strings.Join(CommandNames(), ", "))})
		return
	}
	req := h.newReq()
	if err := (protojson.UnmarshalOptions{}).Unmarshal(msg.Data, req); err != nil {
		s.reply(msg, &pb.CommandReply{ErrorCode: errInvalid, Message: "request is not valid JSON for " + action + ": " + err.Error()})
		return
	}
	meta := req.ProtoReflect().Get(req.ProtoReflect().Descriptor().Fields().ByName("meta")).Message().Interface().(*pb.CommandMeta)
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	rep, err := h.run(cctx, conn, req)
	if err != nil {
		rep = &pb.CommandReply{ErrorCode: errPBX, Message: err.Error()}
		var ce *cmdError
		if errors.As(err, &ce) {
			rep.ErrorCode, rep.Message = ce.code, ce.msg
		} else if errors.Is(err, ami.ErrBadField) {
			rep.ErrorCode = errInvalid
		} else if cctx.Err() != nil || errors.Is(err, net.ErrClosed) {
			rep.ErrorCode = errUnavailable
		}
	} else {
		rep.Ok = true
	}
	rep.RequestId = meta.GetRequestId()
	result := "ok"
	if !rep.Ok {
		result = rep.ErrorCode
	}
	s.metrics.commands.WithLabelValues(s.pbx.ID, action, result).Inc()
	s.log.Info("command", "action", action, "actor", meta.GetActor(), "target", h.target(req), "ok", rep.Ok, "error", rep.Message)
	s.reply(msg, rep)
	audit := &pb.Audit{
		Action: action, Actor: meta.GetActor(), Target: h.target(req), Ok: rep.Ok,
		Detail: rep.Message, RequestId: meta.GetRequestId(),
	}
	// The event loop publishes it, so that it takes its place in the
	// session's sequence like every other event.
	select {
	case s.audits <- &pb.Event{Payload: &pb.Event_Audit{Audit: audit}}:
	case <-ctx.Done():
		s.log.Warn("audit event not published: connection closed", "action", action)
	}
}

func (s *session) reply(msg *nats.Msg, rep *pb.CommandReply) {
	data, err := protojson.Marshal(rep)
	if err == nil {
		err = msg.Respond(data)
	}
	if err != nil && !errors.Is(err, nats.ErrMsgNoReply) {
		s.log.Warn("command reply failed", "err", err)
	}
}

// pbxResult turns an AMI Error response into a pbx_error with Asterisk's
// own message, and "No such channel" into not_found.
func pbxResult(res *ami.Result, err error) (*pb.CommandReply, error) {
	if err != nil {
		return nil, err
	}
	if res.Response != nil && !res.Response.IsSuccess() {
		text := strings.TrimSpace(res.Response.Field("Message"))
		code := errPBX
		if strings.Contains(strings.ToLower(text), "no such channel") || strings.Contains(text, "does not exist") {
			code = errNotFound
		}
		return nil, &cmdError{code: code, msg: text}
	}
	return &pb.CommandReply{Message: strings.TrimSpace(res.Response.Field("Message"))}, nil
}

func action(name string, fields ...string) *goami2.Message {
	a := goami2.NewAction(name)
	for i := 0; i+1 < len(fields); i += 2 {
		if fields[i+1] != "" {
			a.AddField(fields[i], fields[i+1])
		}
	}
	return a
}

func cmdHangup(ctx context.Context, conn *ami.Conn, m proto.Message) (*pb.CommandReply, error) {
	r := m.(*pb.HangupRequest)
	if err := checkRe(channelRe, "channel", r.Channel, true); err != nil {
		return nil, err
	}
	if r.Cause < 0 || r.Cause > 127 {
		return nil, invalid("cause %d is not a Q.850 cause", r.Cause)
	}
	cause := ""
	if r.Cause > 0 {
		cause = strconv.Itoa(int(r.Cause))
	}
	return pbxResult(conn.Action(ctx, action("Hangup", "Channel", r.Channel, "Cause", cause)))
}

func originateAction(channel, callerID string, timeout uint32, vars map[string]string, fields ...string) (*goami2.Message, error) {
	if err := checkRe(channelRe, "channel", channel, true); err != nil {
		return nil, err
	}
	if !printable.MatchString(callerID) {
		return nil, invalid("caller_id is not printable text")
	}
	if timeout == 0 {
		timeout = 30
	}
	if timeout > 600 {
		return nil, invalid("timeout_seconds %d is over 600", timeout)
	}
	a := action("Originate", append([]string{"Channel", channel}, fields...)...)
	a.AddField("Timeout", strconv.Itoa(int(timeout)*1000))
	if callerID != "" {
		a.AddField("CallerID", callerID)
	}
	// Async: Asterisk answers at once and reports the outcome in an
	// OriginateResponse event, so a ringing phone never holds the command.
	a.AddField("Async", "true")
	keys := make([]string, 0, len(vars))
	for k := range vars {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !varNameRe.MatchString(k) || !printable.MatchString(vars[k]) {
			return nil, invalid("variable %q is not valid", k)
		}
		a.AddField("Variable", k+"="+vars[k])
	}
	return a, nil
}

func runOriginate(ctx context.Context, conn *ami.Conn, a *goami2.Message) (*pb.CommandReply, error) {
	rep, err := pbxResult(conn.Action(ctx, a))
	if err != nil {
		return nil, err
	}
	rep.ActionId = a.Field("ActionID")
	return rep, nil
}

func cmdOriginate(ctx context.Context, conn *ami.Conn, m proto.Message) (*pb.CommandReply, error) {
	r := m.(*pb.OriginateRequest)
	if err := checkRe(extenRe, "exten", r.Exten, true); err != nil {
		return nil, err
	}
	if r.Context == "" {
		r.Context = "default"
	}
	if err := checkRe(contextRe, "context", r.Context, true); err != nil {
		return nil, err
	}
	a, err := originateAction(r.Channel, r.CallerId, r.TimeoutSeconds, r.Variables, "Exten", r.Exten, "Context", r.Context, "Priority", "1")
	if err != nil {
		return nil, err
	}
	return runOriginate(ctx, conn, a)
}

func cmdSpy(ctx context.Context, conn *ami.Conn, m proto.Message) (*pb.CommandReply, error) {
	r := m.(*pb.SpyRequest)
	if err := checkRe(channelRe, "channel", r.Channel, true); err != nil {
		return nil, err
	}
	// ChanSpy options: q quiet, E exit when the spied channel hangs up,
	// w whisper, B barge.
	opts := map[string]string{"": "qE", "listen": "qE", "whisper": "qEw", "barge": "qEB"}[r.Mode]
	if opts == "" {
		return nil, invalid("mode %q: want listen, whisper or barge", r.Mode)
	}
	a, err := originateAction(r.SupervisorChannel, "", 30, nil, "Application", "ChanSpy", "Data", r.Channel+","+opts)
	if err != nil {
		return nil, err
	}
	return runOriginate(ctx, conn, a)
}

func cmdRedirect(ctx context.Context, conn *ami.Conn, m proto.Message) (*pb.CommandReply, error) {
	r := m.(*pb.RedirectRequest)
	if err := errors.Join(checkRe(channelRe, "channel", r.Channel, true), checkRe(extenRe, "exten", r.Exten, true),
		checkRe(contextRe, "context", r.Context, true), checkRe(channelRe, "extra_channel", r.ExtraChannel, false)); err != nil {
		return nil, err
	}
	f := []string{"Channel", r.Channel, "Exten", r.Exten, "Context", r.Context, "Priority", "1"}
	if r.ExtraChannel != "" {
		f = append(f, "ExtraChannel", r.ExtraChannel, "ExtraExten", r.Exten, "ExtraContext", r.Context, "ExtraPriority", "1")
	}
	return pbxResult(conn.Action(ctx, action("Redirect", f...)))
}

func cmdAtxfer(ctx context.Context, conn *ami.Conn, m proto.Message) (*pb.CommandReply, error) {
	r := m.(*pb.AttendedTransferRequest)
	if err := errors.Join(checkRe(channelRe, "channel", r.Channel, true), checkRe(extenRe, "exten", r.Exten, true),
		checkRe(contextRe, "context", r.Context, false)); err != nil {
		return nil, err
	}
	return pbxResult(conn.Action(ctx, action("Atxfer", "Channel", r.Channel, "Exten", r.Exten, "Context", r.Context)))
}

func cmdPark(ctx context.Context, conn *ami.Conn, m proto.Message) (*pb.CommandReply, error) {
	r := m.(*pb.ParkRequest)
	if err := errors.Join(checkRe(channelRe, "channel", r.Channel, true), checkRe(channelRe, "announce_channel", r.AnnounceChannel, false),
		checkRe(contextRe, "parking_lot", r.ParkingLot, false)); err != nil {
		return nil, err
	}
	timeout := ""
	if r.TimeoutSeconds > 0 {
		timeout = strconv.Itoa(int(r.TimeoutSeconds) * 1000)
	}
	return pbxResult(conn.Action(ctx, action("Park", "Channel", r.Channel, "TimeoutChannel", r.AnnounceChannel,
		"AnnounceChannel", r.AnnounceChannel, "Timeout", timeout, "Parkinglot", r.ParkingLot)))
}

func cmdBridge(ctx context.Context, conn *ami.Conn, m proto.Message) (*pb.CommandReply, error) {
	r := m.(*pb.BridgeRequest)
	if err := errors.Join(checkRe(channelRe, "channel1", r.Channel1, true), checkRe(channelRe, "channel2", r.Channel2, true)); err != nil {
		return nil, err
	}
	tone := "no"
	if r.Tone {
		tone = "yes"
	}
	return pbxResult(conn.Action(ctx, action("Bridge", "Channel1", r.Channel1, "Channel2", r.Channel2, "Tone", tone)))
}

func cmdRecordStart(ctx context.Context, conn *ami.Conn, m proto.Message) (*pb.CommandReply, error) {
	r := m.(*pb.RecordRequest)
	if err := errors.Join(checkRe(channelRe, "channel", r.Channel, true), checkRe(fileRe, "file", r.File, false)); err != nil {
		return nil, err
	}
	if strings.Contains(r.File, "..") {
		return nil, invalid("file %q is not valid", r.File)
	}
	// Without a file name MixMonitor names the recording after the channel.
	return pbxResult(conn.Action(ctx, action("MixMonitor", "Channel", r.Channel, "File", r.File)))
}

func cmdRecordStop(ctx context.Context, conn *ami.Conn, m proto.Message) (*pb.CommandReply, error) {
	r := m.(*pb.RecordRequest)
	if err := checkRe(channelRe, "channel", r.Channel, true); err != nil {
		return nil, err
	}
	return pbxResult(conn.Action(ctx, action("StopMixMonitor", "Channel", r.Channel)))
}

// configSection is one section of pjsip.conf, options in file order.
type configSection struct {
	name string
	opts []*pb.ConfigOption
}

func (c configSection) get(name string) (string, bool) {
	for _, o := range c.opts {
		if o.Name == name {
			return o.Value, true
		}
	}
	return "", false
}

// readSections reads every section of pjsip.conf named section.
func readSections(ctx context.Context, conn *ami.Conn, section string) ([]configSection, error) {
	res, err := conn.Action(ctx, action("GetConfigJSON", "Filename", "pjsip.conf", "Category", section))
	if _, err := pbxResult(res, err); err != nil {
		return nil, err
	}
	all, err := parseConfigJSON(res.Response.Field("JSON"))
	if err != nil {
		return nil, &cmdError{code: errPBX, msg: err.Error()}
	}
	var out []configSection
	for _, c := range all {
		if c.name == section {
			out = append(out, c)
		}
	}
	return out, nil
}

// pick returns the index of the section of the wanted type (default endpoint).
func pick(sections []configSection, name, typ string) (int, error) {
	if typ == "" {
		typ = "endpoint"
	}
	if err := checkRe(sectionRe, "type", typ, true); err != nil {
		return 0, err
	}
	for i, c := range sections {
		if t, _ := c.get("type"); t == typ {
			return i, nil
		}
	}
	return 0, &cmdError{code: errNotFound, msg: fmt.Sprintf("pjsip.conf has no %s section %q", typ, name)}
}

func cmdConfigGet(ctx context.Context, conn *ami.Conn, m proto.Message) (*pb.CommandReply, error) {
	r := m.(*pb.ConfigGetRequest)
	if err := checkRe(sectionRe, "section", r.Section, true); err != nil {
		return nil, err
	}
	sections, err := readSections(ctx, conn, r.Section)
	if err != nil {
		return nil, err
	}
	i, err := pick(sections, r.Section, r.Type)
	if err != nil {
		return nil, err
	}
	sec := sections[i]
	for _, o := range sec.opts {
		if secretOpts[o.Name] {
			o.Value = "" // secrets never leave the collector
		}
	}
	return &pb.CommandReply{Options: sec.opts}, nil
}

func cmdConfigUpdate(ctx context.Context, conn *ami.Conn, m proto.Message) (*pb.CommandReply, error) {
	r := m.(*pb.ConfigUpdateRequest)
	if err := checkRe(sectionRe, "section", r.Section, true); err != nil {
		return nil, err
	}
	if len(r.Set) == 0 {
		return nil, invalid("set: nothing to change")
	}
	names := make([]string, 0, len(r.Set))
	for k, v := range r.Set {
		if !optionRe.MatchString(k) {
			return nil, invalid("option name %q is not valid", k)
		}
		if k == "type" {
			return nil, invalid("the type of a section cannot be changed")
		}
		if !printable.MatchString(v) {
			return nil, invalid("value of %s is not printable text of at most 256 characters", k)
		}
		names = append(names, k)
	}
	sort.Strings(names)
	sections, err := readSections(ctx, conn, r.Section)
	if err != nil {
		return nil, err
	}
	ti, err := pick(sections, r.Section, r.Type)
	if err != nil {
		return nil, err
	}
	target := sections[ti]
	a := action("UpdateConfig", "SrcFilename", "pjsip.conf", "DstFilename", "pjsip.conf", "Reload", "res_pjsip.so")
	for i, k := range names {
		if _, ok := target.get(k); !ok {
			return nil, invalid("section %q has no option %s; only existing options can be changed", r.Section, k)
		}
		for j, other := range sections {
			if _, ok := other.get(k); ok && j != ti {
				return nil, invalid("option %s is also in another section named %q; changing it over AMI would change both", k, r.Section)
			}
		}
		n := fmt.Sprintf("%06d", i)
		a.AddField("Action-"+n, "update")
		a.AddField("Cat-"+n, r.Section)
		a.AddField("Var-"+n, k)
		a.AddField("Value-"+n, r.Set[k])
	}
	rep, err := pbxResult(conn.Action(ctx, a))
	if err != nil {
		return nil, err
	}
	rep.Message = "updated " + strings.Join(names, ", ") + " and reloaded res_pjsip"
	return rep, nil
}

// parseConfigJSON reads GetConfigJSON's answer: {"section":{"name":"value",
// ...}}, keeping option order and repeated names (allow=ulaw, allow=alaw),
// which a map would lose. Asterisk escapes only '\' and '"', so raw control
// characters are escaped first.
func parseConfigJSON(s string) ([]configSection, error) {
	var b strings.Builder
	for _, r := range s {
		if r < 0x20 {
			fmt.Fprintf(&b, `\u%04x`, r)
			continue
		}
		b.WriteRune(r)
	}
	dec := json.NewDecoder(bytes.NewReader([]byte(b.String())))
	var out []configSection
	expect := func(want json.Delim) error {
		t, err := dec.Token()
		if err != nil {
			return fmt.Errorf("GetConfigJSON: %w", err)
		}
		if d, ok := t.(json.Delim); !ok || d != want {
			return fmt.Errorf("GetConfigJSON: unexpected %v", t)
		}
		return nil
	}
	if err := expect('{'); err != nil {
		return nil, err
	}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("GetConfigJSON: %w", err)
		}
		section, _ := t.(string)
		if err := expect('{'); err != nil {
			return nil, err
		}
		opts := []*pb.ConfigOption{}
		for dec.More() {
			kt, err := dec.Token()
			if err != nil {
				return nil, fmt.Errorf("GetConfigJSON: %w", err)
			}
			vt, err := dec.Token()
			if err != nil {
				return nil, fmt.Errorf("GetConfigJSON: %w", err)
			}
			k, _ := kt.(string)
			switch v := vt.(type) {
			case string:
				opts = append(opts, &pb.ConfigOption{Name: k, Value: v})
			case json.Number, float64, bool:
				// "istemplate":1 is metadata, not an option.
			default:
				return nil, fmt.Errorf("GetConfigJSON: option %s has a %T value", k, vt)
			}
		}
		if err := expect('}'); err != nil {
			return nil, err
		}
		out = append(out, configSection{name: section, opts: opts})
	}
	if err := expect('}'); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("GetConfigJSON: trailing data")
	}
	return out, nil
}
