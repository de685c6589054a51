package pbxsim

import (
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// ARI REST side, modelled on Asterisk 22's res_ari.c and the captures in
// testdata/asterisk/22.10.1/ari/rest: empty HTTP prefix (/ari/...),
// basic auth or ?api_key=user:pass, JSON bodies with jansson's key order,
// errors as {"message": "..."}.

// ListenARI serves Asterisk's HTTP/ARI interface (REST and the /ari/events
// websocket) on addr in background goroutines. It returns the bound address.
func (s *Server) ListenARI(addr string) (net.Addr, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	hs := &http.Server{Handler: http.HandlerFunc(s.serveARI), ReadHeaderTimeout: 10 * time.Second}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ln.Close()
		return nil, net.ErrClosed
	}
	s.httpServers = append(s.httpServers, hs)
	s.wg.Add(1)
	s.mu.Unlock()
	s.log.Info("pbxsim ARI listening", "addr", ln.Addr().String())
	go func() {
		defer s.wg.Done()
		hs.Serve(ln)
	}()
	return ln.Addr(), nil
}

// writeJSON writes an ARI response with Asterisk's headers, including its
// "Content-type" spelling (the nil "Content-Type" stops net/http from
// adding its own).
func writeJSON(w http.ResponseWriter, code int, body []byte) {
	h := w.Header()
	h.Set("Server", "Asterisk/22.10.1")
	h.Set("Cache-Control", "no-cache, no-store")
	h["Content-Type"] = nil
	h["Content-type"] = []string{"application/json"}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(code)
	w.Write(body)
}

func ariError(w http.ResponseWriter, code int, text string) {
	writeJSON(w, code, appendJSON(nil, obj{{"message", text}}))
}

// ariUser is authenticate_user: HTTP basic auth if present, else api_key.
func (s *Server) ariUser(r *http.Request) (string, bool) {
	if u, p, ok := r.BasicAuth(); ok {
		return u, u == s.cfg.ARIUser && p == s.cfg.ARISecret
	}
	for k, vs := range r.URL.Query() {
		if strings.EqualFold(k, "api_key") && len(vs) > 0 {
			u, p, ok := strings.Cut(vs[0], ":")
			return u, ok && u == s.cfg.ARIUser && p == s.cfg.ARISecret
		}
	}
	return "", false
}

func (s *Server) serveARI(w http.ResponseWriter, r *http.Request) {
	path, ok := strings.CutPrefix(r.URL.Path, "/ari/")
	if !ok {
		http.NotFound(w, r) // outside ARI: Asterisk's own HTTP 404 page (not modelled)
		return
	}
	user, ok := s.ariUser(r)
	if !ok {
		w.Header()["WWW-Authenticate"] = []string{`Basic realm="Asterisk REST Interface"`} // Asterisk's spelling
		ariError(w, http.StatusUnauthorized, "Authentication required")
		return
	}
	if strings.HasSuffix(path, "/") {
		ariError(w, http.StatusNotFound, "ARI URLs do not end with a slash. Try /ari/"+strings.TrimSuffix(path, "/"))
		return
	}
	seg := strings.Split(path, "/")
	if path == "events" {
		if r.Method != http.MethodGet {
			w.Header().Set("Allow", "GET")
			ariError(w, http.StatusMethodNotAllowed, "Invalid method")
			return
		}
		s.serveEvents(w, r, user)
		return
	}
	body, code := s.ariGet(seg)
	switch {
	case code == http.StatusNotFound && body == nil:
		ariError(w, code, "Resource not found")
	case r.Method != http.MethodGet:
		// The simulator's ARI is read-only: it models what a monitoring
		// client reads; channel control goes through AMI.
		w.Header().Set("Allow", "GET")
		ariError(w, http.StatusMethodNotAllowed, "Invalid method")
	default:
		writeJSON(w, code, body)
	}
}

// ariGet answers the GET resources the simulator models.
func (s *Server) ariGet(seg []string) ([]byte, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	notFound := func(text string) ([]byte, int) {
		return appendJSON(nil, obj{{"message", text}}), http.StatusNotFound
	}
	switch {
	case len(seg) == 2 && seg[0] == "asterisk" && seg[1] == "info":
		return appendJSON(nil, s.ariInfo()), http.StatusOK
	case len(seg) == 2 && seg[0] == "asterisk" && seg[1] == "ping":
		return appendJSON(nil, obj{{"ping", "pong"}, {"timestamp", eventTV(time.Now())}, {"asterisk_id", asteriskID}}), http.StatusOK
	case len(seg) == 1 && seg[0] == "channels":
		out := make([]obj, 0, len(s.chans))
		for _, c := range s.chans {
			out = append(out, c.ariJSON())
		}
		return appendJSON(nil, out), http.StatusOK
	case len(seg) == 2 && seg[0] == "channels":
		if c := s.findChannel(seg[1]); c != nil && c.uniqueid == seg[1] {
			return appendJSON(nil, c.ariJSON()), http.StatusOK
		}
		return notFound("Channel not found")
	case len(seg) == 1 && seg[0] == "bridges":
		out := make([]obj, 0, len(s.bridges))
		for _, b := range s.bridges {
			out = append(out, b.ariJSON())
		}
		return appendJSON(nil, out), http.StatusOK
	case len(seg) == 2 && seg[0] == "bridges":
		for _, b := range s.bridges {
			if b.id == seg[1] {
				return appendJSON(nil, b.ariJSON()), http.StatusOK
			}
		}
		return notFound("Bridge not found")
	case len(seg) == 1 && seg[0] == "endpoints":
		return appendJSON(nil, s.ariEndpoints("")), http.StatusOK
	case len(seg) == 2 && seg[0] == "endpoints":
		if seg[1] != "PJSIP" && seg[1] != "IAX2" {
			return notFound("No Endpoints found - invalid tech " + seg[1])
		}
		return appendJSON(nil, s.ariEndpoints(seg[1])), http.StatusOK
	case len(seg) == 3 && seg[0] == "endpoints":
		for _, e := range s.ariEndpoints(seg[1]) {
			if e.get("resource") == seg[2] {
				return appendJSON(nil, e), http.StatusOK
			}
		}
		return notFound("Endpoint not found")
	case len(seg) == 1 && seg[0] == "applications":
		out := []obj{}
		for _, app := range s.hub.apps() {
			out = append(out, s.appJSON(app))
		}
		return appendJSON(nil, out), http.StatusOK
	case len(seg) == 2 && seg[0] == "applications":
		for _, app := range s.hub.apps() {
			if app == seg[1] {
				return appendJSON(nil, s.appJSON(app)), http.StatusOK
			}
		}
		return notFound("Application not found")
	}
	return nil, http.StatusNotFound
}

// ariInfo is GET /ari/asterisk/info as captured (idle-asterisk-info.json).
func (s *Server) ariInfo() obj {
	st := eventTV(s.started)
	return obj{
		{"build", obj{{"os", "Linux"}, {"kernel", "6.18.44-fc-v657"}, {"machine", "x86_64"},
			{"options", "OPTIONAL_API"}, {"date", "2026-11-21 18:52:34 UTC"}, {"user", "root"}}},
		{"system", obj{{"version", "22.10.1"}, {"entity_id", asteriskID}}},
		{"config", obj{{"name", ""}, {"default_language", "en"}, {"setid", obj{{"user", ""}, {"group", ""}}}}},
		{"status", obj{{"startup_time", st}, {"last_reload_time", st}}},
	}
}

// ariEndpoints lists endpoints in the captured order: the reference PBX's
// IAX2 peers, the trunk, then the PJSIP phones. tech "" lists all.
func (s *Server) ariEndpoints(tech string) []obj {
	out := []obj{}
	if tech == "" || tech == "IAX2" {
		for _, p := range []string{"iaxtrunk", "iaxpeer"} {
			out = append(out, obj{{"technology", "IAX2"}, {"resource", p}, {"state", "unknown"}, {"channel_ids", []string{}}})
		}
	}
	if tech == "" || tech == "PJSIP" {
		out = append(out, obj{{"technology", "PJSIP"}, {"resource", s.cfg.Trunk}, {"state", "online"}, {"channel_ids", []string{}}})
		ids := map[string][]string{}
		for _, c := range s.chans {
			if c.ext != "" {
				ids[c.ext] = append(ids[c.ext], c.uniqueid)
			}
		}
		for _, e := range s.order {
			out = append(out, endpointJSON(e, ids[e.name]))
		}
	}
	return out
}
