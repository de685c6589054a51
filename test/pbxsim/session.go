package pbxsim

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"
)

const banner = "Asterisk Call Manager/11.0.0\r\n"

// authFailDelay is how long Asterisk stalls before answering a failed Login
// (visible in the badlogin capture: ~1 s between request and response).
var authFailDelay = time.Second

// outq is an unbounded FIFO of encoded messages. The simulator never blocks
// on a slow client: pushes only append; the session's writer drains.
type outq struct {
	mu      sync.Mutex
	cond    sync.Cond
	buf     [][]byte
	closing bool // close the connection once drained
	dead    bool // discard everything, stop now
}

func (q *outq) push(b []byte) {
	q.mu.Lock()
	if !q.dead && !q.closing {
		q.buf = append(q.buf, b)
	}
	q.mu.Unlock()
	q.cond.Signal()
}

func (q *outq) finish() {
	q.mu.Lock()
	q.closing = true
	q.mu.Unlock()
	q.cond.Signal()
}

func (q *outq) kill() {
	q.mu.Lock()
	q.dead = true
	q.buf = nil
	q.mu.Unlock()
	q.cond.Signal()
}

// take blocks until there is something to write or the queue ends; last
// reports that the writer must close the connection after writing out.
func (q *outq) take() (out [][]byte, last bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.buf) == 0 && !q.closing && !q.dead {
		q.cond.Wait()
	}
	if q.dead {
		return nil, true
	}
	out, q.buf = q.buf, nil
	return out, q.closing
}

type session struct {
	srv  *Server
	conn net.Conn
	id   string // manager session pointer, as in SessionID
	seq  int
	q    outq

	// guarded by srv.mu
	faults  faults
	authed  bool
	events  bool
	classes map[string]bool // nil: all classes
	user    string
	loginTV time.Time
}

func newSession(s *Server, c net.Conn, n int) *session {
	ss := &session{srv: s, conn: c, seq: n, id: fmt.Sprintf("0x7f9f%08x", 0x24001690+n*0x1230)}
	ss.q.cond.L = &ss.q.mu
	ss.q.push([]byte(banner))
	return ss
}

// wants reports whether an event goes to this session, honouring the
// Events: on/off/class-list of its Login. Callers hold srv.mu.
func (ss *session) wants(m msg) bool {
	if !ss.authed || !ss.events {
		return false
	}
	if ss.classes == nil {
		return true
	}
	for _, c := range strings.Split(m.get("Privilege"), ",") {
		if c != "all" && ss.classes[c] {
			return true
		}
	}
	return false
}

func (ss *session) writeLoop() {
	defer ss.srv.wg.Done()
	w := bufio.NewWriter(ss.conn)
	for {
		bufs, last := ss.q.take()
		for _, b := range bufs {
			if _, err := w.Write(b); err != nil {
				ss.q.kill()
				ss.conn.Close()
				return
			}
		}
		if err := w.Flush(); err != nil {
			ss.q.kill()
			ss.conn.Close()
			return
		}
		if last {
			ss.conn.Close()
			return
		}
	}
}

func (ss *session) readLoop() {
	defer ss.srv.wg.Done()
	r := bufio.NewReader(ss.conn)
	var m msg
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			break
		}
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			if len(m) == 0 {
				continue
			}
			if !ss.handle(m) {
				return // connection ends after the queued reply is written
			}
			m = nil
			continue
		}
		k, v, _ := strings.Cut(line, ":")
		m = append(m, field{strings.TrimSpace(k), strings.TrimLeft(v, " ")})
	}
	ss.srv.mu.Lock()
	delete(ss.srv.sessions, ss)
	ss.srv.mu.Unlock()
	ss.q.kill()
	ss.conn.Close()
}

func addrString(a net.Addr) string {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return a.String()
	}
	fam := "IPV4"
	if ta.IP.To4() == nil {
		fam = "IPV6"
	}
	return fmt.Sprintf("%s/TCP/%s/%d", fam, ta.IP.String(), ta.Port)
}

// reply queues a response on this session only. Callers hold srv.mu so a
// response never overtakes or splits the events around it.
func (ss *session) reply(m msg) {
	if !ss.faults.frozen {
		ss.q.push(m.encode())
	}
}

// pushEvent queues a broadcast event, subject to injected faults.
func (ss *session) pushEvent(b []byte) {
	for _, out := range ss.faults.filter(b) {
		ss.q.push(out)
	}
}

// amiSecurity builds the head of an AMI-service security event.
func (ss *session) amiSecurity(ev, severity, version string) msg {
	return msg{{"Event", ev}, {"Privilege", "security,all"}, {"EventTV", eventTV(time.Now())},
		{"Severity", severity}, {"Service", "AMI"}, {"EventVersion", version}}
}

func (ss *session) addrs() msg {
	return msg{{"LocalAddress", addrString(ss.conn.LocalAddr())}, {"RemoteAddress", addrString(ss.conn.RemoteAddr())}}
}

// leave detaches the session from the broadcast set and lets the writer
// close the connection once the final reply is out.
func (ss *session) leave() {
	delete(ss.srv.sessions, ss)
	ss.q.finish()
}

// handle processes one action; it returns false when the session ends.
func (ss *session) handle(m msg) bool {
	s := ss.srv
	action := m.get("Action")
	id := m.get("ActionID")
	resp := func(kind string, rest ...field) msg {
		return withActionID(append(msg{{"Response", kind}}, rest...), id)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	if ss.faults.frozen {
		return true // a silently dead link: the request is never answered
	}
	switch {
	case strings.EqualFold(action, "Login"):
		return ss.login(m, resp)
	case strings.EqualFold(action, "Logoff"):
		ss.reply(resp("Goodbye", field{"Message", "Thanks for all the fish."}))
		ss.leave()
		return false
	case !ss.authed:
		ss.reply(resp("Error", field{"Message", "Permission denied"}))
		ev := ss.amiSecurity("RequestNotAllowed", "Error", "1")
		ev = append(ev, field{"AccountID", ""}, field{"SessionID", ss.id})
		ev = append(ev, ss.addrs()...)
		ev = append(ev, field{"RequestType", "Action: " + action}, field{"SessionTV", "1970-01-01T00:00:00.000+0000"})
		s.emit(ev)
		return true
	case action == "":
		ss.reply(resp("Error", field{"Message", "Missing action in request"}))
		return true
	}
	if h, ok := actions[strings.ToLower(action)]; ok {
		// One buffer for the whole answer: a 10,000-item list is a single
		// queue push and a single write.
		var b []byte
		for _, r := range h(s, m) {
			b = append(b, withActionID(r, id).encode()...)
		}
		ss.q.push(b)
		post := s.post
		s.post = nil
		for _, f := range post {
			f()
		}
		return true
	}
	ss.reply(resp("Error", field{"Message", "Invalid/unknown command: " + action + ". Use Action: ListCommands to show available commands."}))
	ev := ss.amiSecurity("RequestBadFormat", "Error", "1")
	ev = append(ev, field{"SessionID", ss.id})
	ev = append(ev, ss.addrs()...)
	ev = append(ev, field{"RequestType", "Action: " + action}, field{"SessionTV", eventTV(ss.loginTV)}, field{"AccountID", ss.user})
	s.emit(ev)
	return true
}

// login runs with srv.mu held; a failed login releases it while stalling.
func (ss *session) login(m msg, resp func(string, ...field) msg) bool {
	s := ss.srv
	user, secret := m.get("Username"), m.get("Secret")
	if user != s.cfg.User || secret != s.cfg.Secret {
		s.log.Info("ami login failed", "user", user, "remote", ss.conn.RemoteAddr().String())
		ev := ss.amiSecurity("InvalidPassword", "Error", "2")
		ev = append(ev, field{"AccountID", user}, field{"SessionID", ss.id})
		ev = append(ev, ss.addrs()...)
		ev = append(ev, field{"SessionTV", "1970-01-01T00:00:00.000+0000"})
		s.emit(ev)
		s.mu.Unlock()
		select {
		case <-time.After(authFailDelay):
		case <-s.done:
		}
		s.mu.Lock()
		if s.closed {
			return false
		}
		// Asterisk drops the connection after a failed login.
		ss.reply(resp("Error", field{"Message", "Authentication failed"}))
		ss.leave()
		return false
	}
	ss.authed, ss.user, ss.loginTV = true, user, time.Now()
	ss.events, ss.classes = true, nil
	switch ev := strings.ToLower(strings.TrimSpace(m.get("Events"))); ev {
	case "", "on", "yes", "true", "all":
	case "off", "no", "false":
		ss.events = false
	default:
		ss.classes = map[string]bool{}
		for _, c := range strings.Split(ev, ",") {
			ss.classes[strings.TrimSpace(c)] = true
		}
	}
	ss.reply(resp("Success", field{"Message", "Authentication accepted"}))
	if ss.wants(msg{{"Privilege", "system,all"}}) {
		up := itoa(int(time.Since(s.started).Seconds()))
		ss.reply(msg{{"Event", "FullyBooted"}, {"Privilege", "system,all"}, {"Uptime", up}, {"LastReload", up}, {"Status", "Fully Booted"}})
	}
	ev := ss.amiSecurity("SuccessfulAuth", "Informational", "1")
	ev = append(ev, field{"AccountID", user}, field{"SessionID", ss.id})
	ev = append(ev, ss.addrs()...)
	ev = append(ev, field{"UsingPassword", "0"}, field{"SessionTV", eventTV(ss.loginTV)})
	s.emit(ev)
	return true
}
