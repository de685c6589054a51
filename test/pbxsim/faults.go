package pbxsim

import (
	"slices"
	"strings"
)

// faults is the fault-injection state of one AMI session or ARI
// websocket, applied to broadcast events only (action responses are not
// reordered or dropped, except that a frozen session answers nothing).
// Guarded by Server.mu.
type faults struct {
	frozen bool   // silent dead link: nothing is sent any more
	drop   int    // discard this many upcoming events
	swap   bool   // deliver the next two events in reverse order
	held   []byte // first event of a pending swap
}

// filter returns what to send for the next event b, in order.
func (f *faults) filter(b []byte) [][]byte {
	switch {
	case f.frozen:
		return nil
	case f.drop > 0:
		f.drop--
		return nil
	case f.swap && f.held == nil:
		f.held = b
		return nil
	case f.swap:
		out := [][]byte{b, f.held}
		f.swap, f.held = false, nil
		return out
	}
	return [][]byte{b}
}

// SessionInfo describes one client connection of the simulator.
type SessionInfo struct {
	ID     string   // AMI: the manager SessionID ("0x7f9f..."); ARI: "ari-<n>"
	Kind   string   // "ami" or "ari"
	Remote string   // client address
	User   string   // AMI Username once logged in; ARI user
	Events bool     // AMI: logged in with events on; ARI: always true
	Apps   []string // ARI applications of the websocket
	Frozen bool
}

// Sessions lists the open AMI sessions and ARI event websockets, oldest first.
func (s *Server) Sessions() []SessionInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []SessionInfo
	var ams []*session
	for ss := range s.sessions {
		ams = append(ams, ss)
	}
	slices.SortFunc(ams, func(a, b *session) int { return a.seq - b.seq })
	for _, ss := range ams {
		out = append(out, SessionInfo{ID: ss.id, Kind: "ami", Remote: ss.conn.RemoteAddr().String(),
			User: ss.user, Events: ss.authed && ss.events, Frozen: ss.faults.frozen})
	}
	for _, c := range s.hub.ordered() {
		out = append(out, SessionInfo{ID: c.id, Kind: "ari", Remote: c.remote, User: c.user, Events: true,
			Apps: slices.Clone(c.apps), Frozen: c.faults.frozen})
	}
	return out
}

// faultsOf finds the fault state of session id (AMI or ARI). Callers hold s.mu.
func (s *Server) faultsOf(id string) (*faults, func()) {
	if strings.HasPrefix(id, "ari-") {
		for c := range s.hub.clients {
			if c.id == id {
				return &c.faults, func() { c.frozen.Store(true) }
			}
		}
		return nil, nil
	}
	for ss := range s.sessions {
		if ss.id == id {
			return &ss.faults, func() {}
		}
	}
	return nil, nil
}

// Freeze turns session id into a silently dead link: the TCP connection
// stays open, but from now on nothing more is sent on it (no events, no
// action responses; an ARI websocket also stops answering pings). It
// lasts until the session is dropped or the server closed. It reports
// whether the session exists.
func (s *Server) Freeze(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, mark := s.faultsOf(id)
	if f == nil {
		return false
	}
	f.frozen = true
	f.held = nil
	mark()
	return true
}

// FreezeAll freezes every open AMI session and ARI websocket.
func (s *Server) FreezeAll() {
	for _, si := range s.Sessions() {
		s.Freeze(si.ID)
	}
}

// DropNext silently discards the next n events that session id would
// receive. It reports whether the session exists.
func (s *Server) DropNext(id string, n int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, _ := s.faultsOf(id)
	if f == nil {
		return false
	}
	f.drop += n
	return true
}

// SwapNext makes session id receive its next two events in reverse order.
// It reports whether the session exists.
func (s *Server) SwapNext(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, _ := s.faultsOf(id)
	if f == nil {
		return false
	}
	f.swap = true
	return true
}

// DropARI abruptly closes every ARI event websocket without a close
// frame, as a crash or network cut would. New websockets are accepted.
func (s *Server) DropARI() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.hub.clients {
		delete(s.hub.clients, c)
		c.q.kill()
	}
}
