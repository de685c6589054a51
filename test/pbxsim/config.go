package pbxsim

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// The simulated pjsip.conf, for GetConfigJSON, UpdateConfig and Reload.
// Like Asterisk, UpdateConfig only rewrites the file; the PBX picks the
// changes up on "Reload" of res_pjsip.so (or UpdateConfig's Reload header).
// The action logic follows action_getconfigjson, handle_updates and
// action_updateconfig in main/manager.c of Asterisk 22.

type confVar struct{ name, value string }

type category struct {
	name string
	vars []confVar
}

func (c *category) get(name string) string {
	for _, v := range c.vars {
		if v.name == name {
			return v.value
		}
	}
	return ""
}

type pjsipConf struct{ cats []*category }

// conf returns pjsip.conf, generating it from the endpoints on first use
// (so 10,000 generated endpoints cost nothing until somebody asks).
func (s *Server) conf() *pjsipConf {
	if s.pjsip == nil {
		s.pjsip = s.generateConf()
	}
	return s.pjsip
}

func (s *Server) generateConf() *pjsipConf {
	cf := &pjsipConf{}
	add := func(name string, kv ...string) {
		c := &category{name: name}
		for i := 0; i+1 < len(kv); i += 2 {
			c.vars = append(c.vars, confVar{kv[i], kv[i+1]})
		}
		cf.cats = append(cf.cats, c)
	}
	add("transport-udp", "type", "transport", "protocol", "udp", "bind", "127.0.0.1:5060")
	for _, e := range s.order {
		n := e.name
		add(n, "type", "endpoint", "context", "internal", "disallow", "all", "allow", "ulaw,alaw",
			"auth", n, "aors", n, "callerid", fmt.Sprintf("%q <%s>", e.cidName, n), "device_state_busy_at", "1")
		add(n, "type", "auth", "auth_type", "userpass", "username", n, "password", "pw"+n)
		if n == "1005" {
			add(n, "type", "aor", "max_contacts", "1", "remove_existing", "yes", "qualify_frequency", "10")
		} else {
			add(n, "type", "aor", "max_contacts", "1", "remove_existing", "yes")
		}
	}
	t := s.cfg.Trunk
	add(t, "type", "endpoint", "transport", "transport-udp", "context", "internal", "disallow", "all",
		"allow", "ulaw", "aors", t)
	add(t, "type", "aor", "contact", "sip:127.0.0.1:5070")
	add(t+"-reg", "type", "registration", "transport", "transport-udp", "server_uri", "sip:127.0.0.1:5070",
		"client_uri", "sip:heldout@127.0.0.1:5070", "contact_user", t+"-in", "retry_interval", "15", "expiration", "120")
	return cf
}

// isConfigFile resolves a Filename header: pjsip.conf is the only file
// the simulator has; paths outside the config directory are refused as
// is_restricted_file does.
func isConfigFile(fn string) (ok bool, restricted bool) {
	fn = strings.TrimSpace(fn)
	if strings.Contains(fn, "..") || (strings.HasPrefix(fn, "/") && !strings.HasPrefix(fn, "/etc/asterisk/")) {
		return false, true
	}
	return strings.TrimPrefix(fn, "/etc/asterisk/") == "pjsip.conf", false
}

// matches is does_category_match's filter: comma-separated name=value
// pairs that must all be present in the category.
func (c *category) matches(name, filter string) bool {
	if name != "" && c.name != name {
		return false
	}
	for _, f := range strings.Split(filter, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		k, v, _ := strings.Cut(f, "=")
		if strings.HasPrefix(strings.TrimSpace(k), "TEMPLATES") {
			continue // the simulated file has no templates
		}
		if c.get(strings.TrimSpace(k)) != strings.TrimSpace(v) {
			return false
		}
	}
	return true
}

func jsonEscape(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' || s[i] == '"' {
			b = append(b, '\\')
		}
		b = append(b, s[i])
	}
	return b
}

// actGetConfigJSON answers "Response: Success", ActionID, then one
// "JSON:" line: {"cat":{"var":"value",...},...}, categories in file order
// (same-named sections repeat their key).
func actGetConfigJSON(s *Server, m msg) []msg {
	fn := m.get("Filename")
	if fn == "" {
		return []msg{errResp("Filename not specified")}
	}
	ok, restricted := isConfigFile(fn)
	if restricted {
		return []msg{errResp("File requires escalated privileges")}
	}
	if !ok {
		return []msg{errResp("Config file not found")}
	}
	want, filter := m.get("Category"), m.get("Filter")
	b := []byte{'{'}
	first := true
	for _, c := range s.conf().cats {
		if !c.matches(want, filter) {
			continue
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		b = append(b, '"')
		b = jsonEscape(b, c.name)
		b = append(b, `":{`...)
		for i, v := range c.vars {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, '"')
			b = jsonEscape(b, v.name)
			b = append(b, `":"`...)
			b = jsonEscape(b, v.value)
			b = append(b, '"')
		}
		b = append(b, '}')
	}
	b = append(b, '}')
	return []msg{{{"Response", "Success"}, {"JSON", string(b)}}}
}

// handleUpdates applies Action-NNNNNN ... to a copy of the file and
// returns the error text of action_updateconfig, or "".
func handleUpdates(cf *pjsipConf, m msg) string {
	for x := 0; x < 100000; x++ {
		h := func(k string) string { return m.get(fmt.Sprintf("%s-%06d", k, x)) }
		action := h("Action")
		if action == "" {
			break
		}
		cat := h("Cat")
		if cat == "" {
			return "Category not specified"
		}
		vname, value, match, line := h("Var"), h("Value"), h("Match"), h("Line")
		value = strings.TrimPrefix(value, ">") // object (=>) assignment; same in JSON
		allowdups, ignoreerror := false, false
		catfilter := ""
		for _, o := range strings.Split(h("Options"), ",") {
			o = strings.TrimSpace(o)
			switch {
			case strings.EqualFold(o, "allowdups"):
				allowdups = true
			case strings.EqualFold(o, "ignoreerror"):
				ignoreerror = true
			case strings.HasPrefix(o, "catfilter"):
				_, catfilter, _ = strings.Cut(o, "=")
				catfilter = strings.TrimSpace(catfilter)
			}
		}
		var sel []*category
		for _, c := range cf.cats {
			if c.matches(cat, catfilter) {
				sel = append(sel, c)
			}
		}
		switch strings.ToLower(action) {
		case "newcat":
			exists := slices.ContainsFunc(cf.cats, func(c *category) bool { return c.name == cat })
			if exists && !allowdups {
				if ignoreerror {
					continue
				}
				return "Create category did not complete successfully"
			}
			nc := &category{name: cat}
			if match == "" {
				cf.cats = append(cf.cats, nc)
				continue
			}
			i := slices.IndexFunc(cf.cats, func(c *category) bool { return c.name == match })
			if i < 0 {
				return "Create category did not complete successfully"
			}
			cf.cats = slices.Insert(cf.cats, i, nc)
		case "renamecat":
			if value == "" {
				return "Problem with category, value, or line (if required)"
			}
			if len(sel) == 0 {
				return "Given category does not exist"
			}
			for _, c := range sel {
				c.name = value
			}
		case "delcat":
			if len(sel) == 0 && !ignoreerror {
				return "Given category does not exist"
			}
			cf.cats = slices.DeleteFunc(cf.cats, func(c *category) bool { return slices.Contains(sel, c) })
		case "emptycat":
			if len(sel) == 0 {
				return "Given category does not exist"
			}
			for _, c := range sel {
				c.vars = nil
			}
		case "update":
			if vname == "" {
				return "Problem with category, value, or line (if required)"
			}
			if len(sel) == 0 {
				return "Given category does not exist"
			}
			found := false
			for _, c := range sel {
				for i := range c.vars {
					if c.vars[i].name == vname && (match == "" || c.vars[i].value == match) {
						c.vars[i].value = value
						found = true
						break
					}
				}
			}
			if !found {
				return "Update did not complete successfully"
			}
		case "delete":
			if vname == "" && line == "" {
				return "Problem with category, value, or line (if required)"
			}
			if len(sel) == 0 {
				return "Given category does not exist"
			}
			found := false
			for _, c := range sel {
				n := len(c.vars)
				if vname == "" {
					if i, err := strconv.Atoi(line); err == nil && i >= 0 && i < n {
						c.vars = slices.Delete(c.vars, i, i+1)
					}
				} else {
					c.vars = slices.DeleteFunc(c.vars, func(v confVar) bool {
						return v.name == vname && (match == "" || v.value == match)
					})
				}
				found = found || len(c.vars) < n
			}
			if !found && !ignoreerror {
				return "Update did not complete successfully"
			}
		case "append":
			if vname == "" {
				return "Problem with category, value, or line (if required)"
			}
			if len(sel) == 0 {
				return "Given category does not exist"
			}
			for _, c := range sel {
				c.vars = append(c.vars, confVar{vname, value})
			}
		case "insert":
			if vname == "" || line == "" {
				return "Problem with category, value, or line (if required)"
			}
			if len(sel) == 0 {
				return "Given category does not exist"
			}
			at := atoiOr(line, 0)
			for _, c := range sel {
				i := min(max(at, 0), len(c.vars))
				c.vars = slices.Insert(c.vars, i, confVar{vname, value})
			}
		default:
			return "Unknown action command"
		}
	}
	return ""
}

func (cf *pjsipConf) clone() *pjsipConf {
	out := &pjsipConf{cats: make([]*category, len(cf.cats))}
	for i, c := range cf.cats {
		out.cats[i] = &category{name: c.name, vars: slices.Clone(c.vars)}
	}
	return out
}

func actUpdateConfig(s *Server, m msg) []msg {
	src, dst := m.get("SrcFilename"), m.get("DstFilename")
	if src == "" || dst == "" {
		return []msg{errResp("Filename not specified")}
	}
	okS, rs := isConfigFile(src)
	okD, rd := isConfigFile(dst)
	if rs || rd {
		return []msg{errResp("File requires escalated privileges")}
	}
	if !okS {
		return []msg{errResp("Config file not found")}
	}
	work := s.conf().clone()
	if e := handleUpdates(work, m); e != "" {
		return []msg{errResp(e)}
	}
	if !okD {
		// Saving another file works on Asterisk; the simulator only keeps
		// pjsip.conf, so such a copy is accepted and forgotten.
		return []msg{{{"Response", "Success"}}}
	}
	s.pjsip = work
	if rld := m.get("Reload"); rld != "" && !astFalse(rld) {
		s.afterReply(func() {
			if astTrue(rld) || isPJSIPModule(rld) {
				s.reloadPJSIP()
			}
		})
	}
	return []msg{{{"Response", "Success"}}}
}

// astFalse is ast_false: no, false, n, f, 0, off.
func astFalse(v string) bool {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "no", "false", "n", "f", "0", "off":
		return true
	}
	return false
}

// reloadModules are the modules of the reference PBX a Reload names; any
// other name is answered "No such module".
var reloadModules = []string{"res_pjsip", "chan_pjsip", "res_pjsip_outbound_registration", "chan_iax2",
	"app_queue", "res_ari", "res_stasis", "pbx_config", "res_parking", "res_musiconhold", "app_mixmonitor",
	"cdr", "manager", "http", "features", "dnsmgr", "extconfig", "udptl", "logger", "acl", "indications",
	"cel", "ccss", "plc", "rtp"}

func moduleBase(name string) string { return strings.TrimSuffix(strings.TrimSpace(name), ".so") }

func isPJSIPModule(name string) bool { return moduleBase(name) == "res_pjsip" }

// actReload is action_reload; reloading res_pjsip applies pjsip.conf.
func actReload(s *Server, m msg) []msg {
	mod := m.get("Module")
	if mod != "" && !slices.Contains(reloadModules, moduleBase(mod)) {
		return []msg{errResp("No such module")}
	}
	if mod == "" || isPJSIPModule(mod) {
		s.afterReply(s.reloadPJSIP)
	}
	return []msg{ack("Module Reloaded")}
}

// reloadPJSIP applies the endpoint sections of pjsip.conf: new endpoints
// appear (unregistered), removed ones disappear, callerid names change.
// The trunk and transports are left as they are.
func (s *Server) reloadPJSIP() {
	if s.pjsip == nil {
		return // never read or changed: nothing to apply
	}
	keep := map[string]bool{}
	for _, c := range s.pjsip.cats {
		if c.get("type") != "endpoint" || c.name == s.cfg.Trunk {
			continue
		}
		keep[c.name] = true
		e := s.addEndpoint(c.name)
		if cid := c.get("callerid"); cid != "" {
			if name, _ := parseCallerID(cid); name != "" {
				e.cidName = name
			}
		}
	}
	removed := false
	for name, e := range s.eps {
		if keep[name] || e.channels > 0 {
			continue // an endpoint with live channels lingers until they end
		}
		if e.registered {
			s.dropContact(e, true)
		}
		delete(s.eps, name)
		delete(s.devs, endpointDevice(name))
		removed = true
	}
	if removed {
		s.order = slices.DeleteFunc(s.order, func(e *endpoint) bool { return s.eps[e.name] != e })
	}
	s.log.Info("pjsip reloaded", "endpoints", len(s.order))
}
