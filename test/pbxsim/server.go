// Package pbxsim is a PBX simulator for tests and demos: a TCP server that
// speaks the Asterisk Manager Interface byte for byte like Asterisk 22.10.1
// (see testdata/asterisk/22.10.1), and optionally Asterisk's ARI (REST and
// the /ari/events websocket, ListenARI), both fed by one consistent PBX
// model: PJSIP endpoints and contacts, an outbound trunk registration,
// channels, bridges, the queue "support", parking and a pjsip.conf.
//
// Every message is written as an ordered field list modelled on the
// captures, or, for messages the captures lack, on Asterisk's source
// (docs/asterisk-fields.md); the fidelity tests check each emitted message
// type against them so that code tested against the simulator also works
// against a real Asterisk. Scenario methods (Dial, CallQueue, Hold,
// BlindTransfer, ...) drive calls; fault injection (Freeze, DropNext,
// SwapNext, DropSessions, DropARI) and Truth support collector tests.
package pbxsim

import (
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"
)

// Config configures a simulated PBX. Zero values take the defaults of the
// reference PBX the captures were recorded on.
type Config struct {
	User, Secret string   // AMI credentials; default "monitor" / "monitor-secret"
	Endpoints    []string // extensions; default 1001..1005 (none if GenerateEndpoints is set)
	Trunk        string   // trunk endpoint; default "provider"
	Logger       *slog.Logger

	// GenerateEndpoints adds that many endpoints named 10001, 10002, ...
	// after Endpoints, for scale tests.
	GenerateEndpoints int
	// QueueMembers are the static members of queue "support" (extension
	// 800); default 1004 and 1005 as on the reference PBX.
	QueueMembers []string
	// OriginateAnswerAfter is how long an originated call's first leg
	// rings before the simulated phone answers: 0 means 500 ms, a
	// negative value never (answer it with Call.Answer).
	OriginateAnswerAfter time.Duration
	// AtxferCode is features.conf's atxfer DTMF code that the Atxfer
	// action plays to the channel; default "*2".
	AtxferCode string
	// ARIUser, ARISecret are the ARI credentials; default "ari" / "ari-secret".
	ARIUser, ARISecret string
}

type endpoint struct {
	name       string
	idx        int
	registered bool
	callID     string // Call-ID of the REGISTER that created the contact
	expires    time.Time
	channels   int
	cidName    string // callerid name from pjsip.conf, "Ext <name>" by default
}

func (e *endpoint) uri() string   { return fmt.Sprintf("sip:%s@127.0.0.1:%d", e.name, e.viaPort()) }
func (e *endpoint) viaPort() int  { return 5061 + e.idx%60000 }
func (e *endpoint) callPort() int { return 5161 + e.idx%60000 }
func (e *endpoint) contactID() string {
	h := md5.Sum([]byte(e.name + "|" + e.uri()))
	return e.name + ";@" + hex.EncodeToString(h[:])
}

// Server is a simulated Asterisk. All methods are safe for concurrent use.
type Server struct {
	cfg     Config
	log     *slog.Logger
	started time.Time

	// mu guards all PBX state and serialises event emission, so every
	// session (AMI and ARI) sees the same global event order.
	mu          sync.Mutex
	closed      bool
	done        chan struct{}
	listeners   []net.Listener
	httpServers []*http.Server
	sessions    map[*session]struct{}
	sessSeq     int
	eps         map[string]*endpoint
	order       []*endpoint
	trunkUp     bool
	chanSeq     int // PBX-wide channel counter: names and Uniqueid suffixes
	sipSeq      int // SIP Call-ID counter for generated transactions
	localSeq    int // Local channel name counter
	playbackSeq int
	chans       []*channel
	bridges     []*bridge
	devs        map[string]*device
	queue       *queue
	parked      map[int]*Call
	parkBridge  *bridge
	transfers   []*Transfer // attended transfers started by Atxfer
	pjsip       *pjsipConf  // simulated pjsip.conf, built on first use
	hub         ariHub
	processed   int
	post        []func() // events to emit once the current action reply is queued
	wg          sync.WaitGroup
}

// New returns a Server that is not yet listening.
func New(cfg Config) *Server {
	if cfg.User == "" {
		cfg.User = "monitor"
	}
	if cfg.Secret == "" {
		cfg.Secret = "monitor-secret"
	}
	if len(cfg.Endpoints) == 0 && cfg.GenerateEndpoints == 0 {
		cfg.Endpoints = []string{"1001", "1002", "1003", "1004", "1005"}
	}
	if cfg.Trunk == "" {
		cfg.Trunk = "provider"
	}
	if cfg.QueueMembers == nil {
		cfg.QueueMembers = []string{"1004", "1005"}
	}
	if cfg.OriginateAnswerAfter == 0 {
		cfg.OriginateAnswerAfter = 500 * time.Millisecond
	}
	if cfg.AtxferCode == "" {
		cfg.AtxferCode = "*2"
	}
	if cfg.ARIUser == "" {
		cfg.ARIUser = "ari"
	}
	if cfg.ARISecret == "" {
		cfg.ARISecret = "ari-secret"
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		cfg:      cfg,
		log:      log,
		started:  time.Now(),
		done:     make(chan struct{}),
		sessions: map[*session]struct{}{},
		eps:      map[string]*endpoint{},
		devs:     map[string]*device{},
		parked:   map[int]*Call{},
		sipSeq:   5880,
	}
	s.hub.init()
	names := slices.Clone(cfg.Endpoints)
	for i := range cfg.GenerateEndpoints {
		names = append(names, strconv.Itoa(10001+i))
	}
	for _, name := range names {
		s.addEndpoint(name)
	}
	s.queue = s.newQueue(cfg.QueueMembers)
	return s
}

func (s *Server) addEndpoint(name string) *endpoint {
	if e := s.eps[name]; e != nil {
		return e
	}
	e := &endpoint{name: name, idx: len(s.order), cidName: "Ext " + name}
	s.eps[name] = e
	s.order = append(s.order, e)
	s.devs[endpointDevice(name)] = &device{ami: "UNAVAILABLE", ari: "UNAVAILABLE"}
	return e
}

// Listen starts accepting AMI connections on addr and serves them in
// background goroutines. It returns the bound address.
func (s *Server) Listen(addr string) (net.Addr, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ln.Close()
		return nil, net.ErrClosed
	}
	s.listeners = append(s.listeners, ln)
	s.wg.Add(1)
	s.mu.Unlock()
	s.log.Info("pbxsim listening", "addr", ln.Addr().String())
	go s.accept(ln)
	return ln.Addr(), nil
}

func (s *Server) accept(ln net.Listener) {
	defer s.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.sessSeq++
		ss := newSession(s, c, s.sessSeq)
		s.sessions[ss] = struct{}{}
		s.wg.Add(2)
		s.mu.Unlock()
		s.log.Debug("ami session opened", "remote", c.RemoteAddr().String(), "session", ss.id)
		go ss.writeLoop()
		go ss.readLoop()
	}
}

// Close stops listening, sends "Event: Shutdown" to event sessions (as a
// clean "core stop" does), closes every session and waits for all goroutines.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.done)
	for _, ln := range s.listeners {
		ln.Close()
	}
	for _, hs := range s.httpServers {
		hs.Close()
	}
	s.hub.closeAll()
	s.emit(msg{{"Event", "Shutdown"}, {"Privilege", "system,all"}, {"Shutdown", "Cleanly"}, {"Restart", "False"}})
	for ss := range s.sessions {
		// A client that stopped reading must not hang Close.
		ss.conn.SetWriteDeadline(time.Now().Add(2 * time.Second))
		ss.q.finish()
		delete(s.sessions, ss)
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

// DropSessions abruptly closes every AMI session without a goodbye, like a
// PBX crash or a network cut. The listener keeps accepting.
func (s *Server) DropSessions() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for ss := range s.sessions {
		delete(s.sessions, ss)
		ss.q.kill()
		ss.conn.Close()
	}
}

// emit broadcasts an event to every logged-in session that wants it.
// Callers hold s.mu.
func (s *Server) emit(m msg) {
	var b []byte
	for ss := range s.sessions {
		if ss.wants(m) {
			if b == nil {
				b = m.encode()
			}
			ss.pushEvent(b)
		}
	}
}

func eventTV(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000-0700") }

func (s *Server) nextCallID() string {
	s.sipSeq++
	return fmt.Sprintf("1-%d@127.0.0.1", s.sipSeq)
}

// sipAuth emits the security events of a digest-authenticated SIP request
// (the 401 challenge, then the accepted retry).
func (s *Server) sipAuth(account, callID string, port int) {
	now := time.Now()
	head := func(ev string) msg {
		return msg{{"Event", ev}, {"Privilege", "security,all"}, {"EventTV", eventTV(now)},
			{"Severity", "Informational"}, {"Service", "PJSIP"}, {"EventVersion", "1"},
			{"AccountID", account}, {"SessionID", callID},
			{"LocalAddress", "IPV4/UDP/127.0.0.1/5060"},
			{"RemoteAddress", fmt.Sprintf("IPV4/UDP/127.0.0.1/%d", port)}}
	}
	s.emit(append(head("ChallengeSent"), field{"Challenge", ""}))
	s.emit(append(head("SuccessfulAuth"), field{"UsingPassword", "1"}))
}

func devStateDesc(st string) string {
	switch st {
	case "NOT_INUSE":
		return "Not in use"
	case "BUSY":
		return "Busy"
	case "INUSE":
		return "In use"
	case "RINGING":
		return "Ringing"
	}
	return "Unavailable"
}

// computeDev mirrors device_state_busy_at=1 on the reference PBX: any
// channel makes the device BUSY.
func (e *endpoint) computeDev() string {
	switch {
	case e.channels > 0:
		return "BUSY"
	case e.registered:
		return "NOT_INUSE"
	}
	return "UNAVAILABLE"
}

// ariState is the ARI endpoint state: online while a contact is registered.
func (e *endpoint) ariState() string {
	if e.registered {
		return "online"
	}
	return "offline"
}

// endpointJSON is ast_endpoint_snapshot_to_json; ids are the endpoint's
// channels.
func endpointJSON(e *endpoint, ids []string) obj {
	if ids == nil {
		ids = []string{}
	}
	return obj{{"technology", "PJSIP"}, {"resource", e.name}, {"state", e.ariState()}, {"channel_ids", ids}}
}

func (s *Server) endpointJSON(e *endpoint) obj { return endpointJSON(e, s.channelsOf(e.name)) }

func (s *Server) peerStatus(e *endpoint, st string) {
	s.emit(msg{{"Event", "PeerStatus"}, {"Privilege", "system,all"}, {"ChannelType", "PJSIP"}, {"Peer", "PJSIP/" + e.name}, {"PeerStatus", st}})
}

func (s *Server) ariPeerStatus(e *endpoint, st string) {
	s.ari(ariEv("PeerStatusChange", obj{{"endpoint", s.endpointJSON(e)}, {"peer", obj{{"peer_status", st}}}}))
}

func (s *Server) contactStatus(e *endpoint, st string) {
	s.emit(msg{{"Event", "ContactStatus"}, {"Privilege", "system,all"}, {"URI", e.uri()}, {"ContactStatus", st},
		{"AOR", e.name}, {"EndpointName", e.name}, {"RoundtripUsec", "0"}})
}

func (s *Server) ariContactStatus(e *endpoint, st string) {
	s.ari(ariEv("ContactStatusChange", obj{{"endpoint", s.endpointJSON(e)},
		{"contact_info", obj{{"uri", e.uri()}, {"contact_status", st}, {"aor", e.name}, {"roundtrip_usec", "0"}}}}))
}

// Register simulates a successful REGISTER (Expires 300) of extension ext.
// Re-registering an already registered extension only refreshes the contact.
func (s *Server) Register(ext string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.eps[ext]
	if e == nil {
		s.log.Warn("register of unknown endpoint", "ext", ext)
		return
	}
	callID := s.nextCallID()
	s.sipAuth(ext, callID, e.viaPort())
	e.expires = time.Now().Add(300 * time.Second)
	if e.registered {
		return
	}
	e.registered = true
	e.callID = callID
	// AMI: PeerStatus, device (and app_queue), ContactStatus; ARI, from
	// its own topics: device first (as for 1001 and 1004 in the capture).
	s.peerStatus(e, "Reachable")
	s.epAMI(ext)
	s.contactStatus(e, "NonQualified")
	s.epARI(ext)
	s.ariPeerStatus(e, "Reachable")
	s.ariContactStatus(e, "NonQualified")
}

// Unregister simulates a REGISTER with Expires: 0.
func (s *Server) Unregister(ext string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.eps[ext]
	if e == nil || !e.registered {
		return
	}
	s.sipAuth(ext, s.nextCallID(), e.viaPort())
	s.dropContact(e, false)
}

// Expire simulates the contact of ext timing out (no re-REGISTER); the
// event order differs from Unregister, as in the expiry capture.
func (s *Server) Expire(ext string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.eps[ext]
	if e == nil || !e.registered {
		return
	}
	s.dropContact(e, true)
}

// dropContact removes e's contact in the order of the unregister or the
// expiry capture.
func (s *Server) dropContact(e *endpoint, expired bool) {
	e.registered = false
	dev := endpointDevice(e.name)
	if expired {
		s.peerStatus(e, "Unreachable")
		s.deviceAMI(dev, e.computeDev())
		s.contactStatus(e, "Removed")
		s.queueDeviceChanged(e.name, true, false)
		s.ariPeerStatus(e, "Unreachable")
		s.ariContactStatus(e, "Removed")
		s.epARI(e.name)
		return
	}
	s.epAMI(e.name)
	s.peerStatus(e, "Unreachable")
	s.contactStatus(e, "Removed")
	s.ariPeerStatus(e, "Unreachable")
	s.epARI(e.name)
	s.ariContactStatus(e, "Removed")
}

func (s *Server) registry(status string) {
	s.emit(msg{{"Event", "Registry"}, {"Privilege", "system,all"}, {"ChannelType", "PJSIP"},
		{"Username", "sip:heldout@127.0.0.1:5070"}, {"Domain", "sip:127.0.0.1:5070"}, {"Status", status}})
}

// RegisterTrunk simulates the outbound registration "<trunk>-reg" succeeding.
func (s *Server) RegisterTrunk() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.trunkUp = true
	s.registry("Registered")
}

// Channels returns the number of live channels.
func (s *Server) Channels() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.chans)
}
