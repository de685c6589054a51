package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"

	"github.com/pbxpulse/pbxpulse/test/pbxsim"
	"github.com/pbxpulse/pbxpulse/test/stack"
)

// Static tokens of tenant acme, one per role.
const (
	viewerToken     = "e2e-viewer-token-4f9c2a"
	supervisorToken = "e2e-supervisor-token-8b1d7e"
	adminToken      = "e2e-admin-token-c3e05f"
)

// xssName is a caller-ID name that would run as code if the panel ever
// rendered PBX text as markup.
const xssName = `<img src=x onerror=alert(1)>`

// TestPanel drives the supervisor's panel in headless Chromium against the
// whole system, served under /monitor/ with per-role tokens: signing in,
// a call that appears, blinks and ends, roles and actions, markup in a
// caller name, the history, and the logs page. The subtests share one stack
// and one browser and run in order.
func TestPanel(t *testing.T) {
	s := startStack(t, false,
		"PATH_PREFIX=/monitor/",
		"GATEWAY_TOKENS=acme:viewer:"+viewerToken+",acme:supervisor:"+supervisorToken+",acme:admin:"+adminToken,
		// The wallboard of the iframe subtest, on another port.
		"FRAME_ANCESTORS='self' http://127.0.0.1:*",
	)
	if !strings.HasSuffix(s.PanelURL(), "/monitor/") {
		t.Fatalf("panel URL %s is not under /monitor/", s.PanelURL())
	}
	for _, ext := range []string{"1001", "1002", "1003"} {
		s.Sim.Register(ext)
	}
	b := newBrowser(t)
	sup, viewer, admin := b.tab(), b.tab(), b.tab()
	var answered *pbxsim.Call // a finished call the history must find

	t.Run("served under the prefix only", func(t *testing.T) {
		for _, c := range []struct {
			url  string
			want int
		}{
			{s.PanelURL(), http.StatusOK},
			{s.GatewayURL("app.js"), http.StatusOK},
			{s.GatewayURL("api/v1/whoami"), http.StatusUnauthorized},
			{"http://" + s.HTTPAddr + "/app.js", http.StatusNotFound},
		} {
			resp, err := http.Get(c.url)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != c.want {
				t.Errorf("GET %s: %d, want %d", c.url, resp.StatusCode, c.want)
			}
		}
	})

	t.Run("token from the URL fragment is stripped", func(t *testing.T) {
		var href, stored, role string
		run(t, sup, "open with #token=",
			chromedp.Navigate(s.PanelURL()+"#token="+supervisorToken),
			until(`document.querySelector('#ws-state').textContent === 'connected'`),
			chromedp.Evaluate(`location.href`, &href),
			chromedp.Evaluate(`sessionStorage.getItem('pbxpulse.token')`, &stored),
			text(`#role`, &role),
		)
		if strings.Contains(href, supervisorToken) || !strings.HasSuffix(href, "/monitor/#/overview") {
			t.Errorf("address bar after sign-in: %s", href)
		}
		if stored != supervisorToken || role != "supervisor" {
			t.Errorf("stored token %q, role %q", stored, role)
		}
		// A reload keeps the session (sessionStorage) and the route.
		run(t, sup, "reload",
			chromedp.Navigate(s.PanelURL()+"#/overview"),
			until(`document.querySelector('#ws-state').textContent === 'connected' && document.querySelector('#role').textContent === 'supervisor'`),
		)
		// The route keeps its query when the token is taken out of it.
		run(t, admin, "open with ?token= inside the route",
			chromedp.Navigate(s.PanelURL()+"#/overview?token="+adminToken),
			until(`document.querySelector('#ws-state').textContent === 'connected' && document.querySelector('#role').textContent === 'admin'`),
			chromedp.Evaluate(`location.hash`, &href),
		)
		if href != "#/overview" {
			t.Errorf("hash after sign-in: %q", href)
		}
	})

	t.Run("sign-in form", func(t *testing.T) {
		var msg string
		run(t, viewer, "sign-in form",
			chromedp.Navigate(s.PanelURL()),
			chromedp.WaitVisible(`#signin-token`),
			chromedp.SetValue(`#signin-token`, "not-a-token-of-this-gateway"),
			chromedp.Click(`#signin-submit`),
			chromedp.WaitVisible(`#signin-message`),
			text(`#signin-message`, &msg),
		)
		if !strings.Contains(msg, "did not accept") {
			t.Errorf("wrong token: message %q", msg)
		}
		run(t, viewer, "sign in as viewer",
			chromedp.SetValue(`#signin-token`, viewerToken),
			chromedp.Click(`#signin-submit`),
			until(`document.querySelector('#ws-state').textContent === 'connected' && document.querySelector('#role').textContent === 'viewer'`),
			chromedp.WaitVisible(endpointCard("pbx1", "1001")),
		)
	})

	t.Run("a call appears, blinks and ends", func(t *testing.T) {
		call := s.Sim.Dial("1001", "1002")
		row := callRow(call.Linkedid())
		run(t, sup, "ringing",
			chromedp.WaitVisible(row),
			until(q(endpointCard("pbx1", "1002")+" .ep-card")+`.classList.contains('ringing')`),
			until(`getComputedStyle(`+q(endpointCard("pbx1", "1002")+" .ep-card")+`).animationName === 'pbx-blink-ring'`),
		)
		call.Answer()
		var caller, callee, pbxCalls, extCalls, first string
		run(t, sup, "in call",
			until(q(row+" .call-state")+`.textContent === 'bridged'`),
			until(`getComputedStyle(`+q(endpointCard("pbx1", "1001")+" .ep-card")+`).animationName === 'pbx-blink-call'`),
			until(q(endpointCard("pbx1", "1001"))+`.dataset.status === 'in_call'`),
			text(row+" .caller-num", &caller),
			text(row+" .callee-num", &callee),
			text(`[data-pbx="pbx1"] .pbx-calls`, &pbxCalls),
			text(endpointCard("pbx1", "1001")+" .call-count", &extCalls),
			text(row+" .call-duration", &first),
			// The duration runs: wait for the next tick.
			until(q(row+" .call-duration")+`.textContent !== `+js(first)),
		)
		if caller != "1001" || callee != "1002" {
			t.Errorf("call row shows %q -> %q", caller, callee)
		}
		if pbxCalls != "1 call" || extCalls != "1 call" {
			t.Errorf("counters: PBX %q, extension %q", pbxCalls, extCalls)
		}
		screenshot(t, sup, "panel-call")
		call.Hangup()
		run(t, sup, "call ends",
			chromedp.WaitNotPresent(row),
			until(`!`+q(endpointCard("pbx1", "1001")+" .ep-card")+`.classList.contains('in-call')`),
			until(`getComputedStyle(`+q(endpointCard("pbx1", "1001")+" .ep-card")+`).animationName === 'none'`),
		)
		answered = call
	})

	t.Run("a viewer cannot hang up", func(t *testing.T) {
		call := s.Sim.Dial("1001", "1003")
		call.Answer()
		defer call.Hangup()
		row := callRow(call.Linkedid())
		var buttons int
		var status int
		ch := call.Channels()[0]
		run(t, viewer, "viewer sees the call",
			chromedp.WaitVisible(row+" .btn-logs"),
			chromedp.Evaluate(`document.querySelectorAll('.btn-hangup, .btn-transfer, .btn-spy, .btn-originate, .btn-config').length`, &buttons),
			// The page's own token, forged into a request the panel never makes for a viewer.
			eval(`fetch('api/v1/pbx/pbx1/actions/hangup', {method: 'POST', headers: {'Authorization': 'Bearer ' + sessionStorage.getItem('pbxpulse.token'), 'Content-Type': 'application/json'},
				body: JSON.stringify({channel: `+js(ch)+`})}).then(r => r.status)`, &status),
		)
		if buttons != 0 {
			t.Errorf("a viewer's page has %d action buttons", buttons)
		}
		if status != http.StatusForbidden {
			t.Errorf("a viewer's forged hangup: HTTP %d, want 403", status)
		}
		if code, body := postAction(t, s, viewerToken, "hangup", map[string]any{"channel": ch}); code != http.StatusForbidden {
			t.Errorf("a viewer's hangup over HTTP: %d %s", code, body)
		}
		if call.Ended() {
			t.Fatal("the viewer's requests hung up the call")
		}
		// The supervisor's page has the buttons for the same call.
		run(t, sup, "supervisor sees buttons", chromedp.WaitVisible(row+" .btn-hangup"))
	})

	t.Run("a supervisor hangs up with confirmation", func(t *testing.T) {
		call := s.Sim.Dial("1002", "1003")
		call.Answer()
		row := callRow(call.Linkedid())
		var title, confirm, reply, ok string
		run(t, sup, "ask",
			until(q(row+" .call-state")+`.textContent === 'bridged'`),
			chromedp.Click(row+" .btn-hangup"),
			chromedp.WaitVisible(`#modal[open] #modal-next`),
			text(`#modal-title`, &title),
			text(`#modal-next`, &confirm),
		)
		if call.Ended() {
			t.Fatal("the call ended before the confirmation")
		}
		screenshot(t, sup, "panel-hangup-confirm")
		run(t, sup, "confirm",
			chromedp.Click(`#modal-next`),
			chromedp.WaitVisible(`#modal-result`),
			chromedp.AttributeValue(`#modal-result`, "data-ok", &ok, nil),
			text(`#modal-reply`, &reply),
		)
		if title != "Hang up call" || confirm != "Hang up" {
			t.Errorf("dialog %q with button %q", title, confirm)
		}
		if ok != "true" || reply != "Channel Hungup" {
			t.Errorf("reply shown: ok=%s %q, want the PBX's \"Channel Hungup\"", ok, reply)
		}
		screenshot(t, sup, "panel-hangup-reply")
		run(t, sup, "close and see the call end", chromedp.Click(`#modal-close`), chromedp.WaitNotPresent(row), chromedp.WaitNotPresent(`#modal[open]`))
		if !call.Ended() {
			t.Error("the simulator's call did not end")
		}
	})

	t.Run("click-to-call and transfer", func(t *testing.T) {
		defer hangupAll(t, s)
		var ok, reply, linkedid, context string
		run(t, sup, "originate from 1001's card",
			chromedp.Click(endpointCard("pbx1", "1001")+" .btn-originate"),
			chromedp.WaitVisible(`#modal[open] input[name="exten"]`),
			chromedp.SetValue(`#modal input[name="exten"]`, "1002"),
			chromedp.SetValue(`#modal input[name="context"]`, "internal"),
			confirmDialog(&ok, &reply),
		)
		if ok != "true" {
			t.Fatalf("originate: %q", reply)
		}
		run(t, sup, "the originated call rings 1002",
			chromedp.Click(`#modal-close`),
			until(`[...document.querySelectorAll('#calls .call-item')].some(e => e.querySelector('.callee-num').textContent === '1002')`),
			until(q(endpointCard("pbx1", "1002"))+`.dataset.status === 'ringing'`),
			chromedp.Evaluate(`[...document.querySelectorAll('#calls .call-item')].find(e => e.querySelector('.callee-num').textContent === '1002').dataset.linkedid`, &linkedid),
		)
		call := s.Sim.CallOf(linkedid)
		if call == nil {
			t.Fatalf("simulator has no call %s", linkedid)
		}
		call.Answer()
		row := callRow(linkedid)
		run(t, sup, "transfer 1001 to 1003",
			until(q(row+" .call-state")+`.textContent === 'bridged'`),
			chromedp.Click(row+" .btn-transfer"),
			chromedp.WaitVisible(`#modal[open] input[name="exten"]`),
			chromedp.Value(`#modal input[name="context"]`, &context),
			chromedp.SetValue(`#modal input[name="exten"]`, "1003"),
			confirmDialog(&ok, &reply),
		)
		if context != "internal" {
			t.Errorf("transfer context prefilled with %q, want the channel's", context)
		}
		if ok != "true" {
			t.Fatalf("redirect: %q", reply)
		}
		run(t, sup, "1003 rings",
			chromedp.Click(`#modal-close`),
			until(q(endpointCard("pbx1", "1003"))+`.dataset.status === 'ringing'`),
		)
	})

	t.Run("markup in a caller name is shown as text", func(t *testing.T) {
		var ok, reply string
		run(t, admin, "admin edits 1003's caller ID",
			until(q(endpointCard("pbx1", "1003"))+`.dataset.calls === '0'`),
			chromedp.Click(endpointCard("pbx1", "1003")+" .btn-config"),
			chromedp.WaitVisible(`#cfg-callerid`),
			chromedp.SetValue(`#cfg-callerid`, `"`+xssName+`" <1003>`),
			chromedp.ActionFunc(func(ctx context.Context) error {
				screenshot(t, ctx, "panel-config-edit")
				return nil
			}),
			confirmDialog(&ok, &reply),
		)
		if ok != "true" {
			t.Fatalf("config_update: %q", reply)
		}
		screenshot(t, admin, "panel-config-reply")
		run(t, admin, "close", chromedp.Click(`#modal-close`))

		call := s.Sim.Dial("1003", "1001")
		call.Answer()
		row := callRow(call.Linkedid())
		var name string
		var imgs int
		run(t, sup, "caller name",
			chromedp.WaitVisible(row),
			text(row+" .caller-name", &name),
			chromedp.Evaluate(`document.querySelectorAll('img').length`, &imgs),
		)
		if name != xssName || imgs != 0 {
			t.Errorf("caller name shown as %q with %d <img> elements", name, imgs)
		}
		screenshot(t, sup, "panel-xss")
		call.Hangup()
		run(t, sup, "call ends", chromedp.WaitNotPresent(row))
	})

	t.Run("the history finds the call", func(t *testing.T) {
		if answered == nil {
			t.Skip("no answered call")
		}
		row := `#h-rows tr[data-linkedid="` + answered.Linkedid() + `"]`
		var disp, caller string
		run(t, viewer, "search",
			chromedp.Navigate(s.PanelURL()+"#/history?extension=1002"),
			until(q(row)),
			text(row+" .disposition", &disp),
			text(row+" td:nth-child(2) .num", &caller),
		)
		if disp != "answered" || caller != "1001" {
			t.Errorf("history row: %s from %q", disp, caller)
		}
		run(t, viewer, "markup stays text in the history",
			chromedp.SetValue(`#h-extension`, "1003"),
			chromedp.Click(`#h-search`),
			until(`[...document.querySelectorAll('#h-rows .party-name')].some(e => e.textContent === `+js(xssName)+`)`),
			until(`document.querySelectorAll('img').length === 0`),
		)
		screenshot(t, viewer, "panel-history")

		// The CSV export is fetched with the bearer header and saved as a file.
		dir := t.TempDir()
		done := make(chan string, 1)
		var once sync.Once
		chromedp.ListenTarget(viewer, func(ev any) {
			if e, ok := ev.(*browser.EventDownloadProgress); ok && e.State == browser.DownloadProgressStateCompleted {
				once.Do(func() { done <- e.GUID })
			}
		})
		run(t, viewer, "export",
			browser.SetDownloadBehavior(browser.SetDownloadBehaviorBehaviorAllowAndName).WithDownloadPath(dir).WithEventsEnabled(true),
			chromedp.SetValue(`#h-extension`, "1002"),
			chromedp.Click(`#h-csv`),
		)
		select {
		case guid := <-done:
			csv, err := os.ReadFile(filepath.Join(dir, guid))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(csv, []byte("pbx_id,linkedid,")) || !bytes.Contains(csv, []byte(answered.Linkedid())) {
				t.Errorf("exported CSV lacks the call:\n%s", csv)
			}
		case <-time.After(wait):
			var status string
			_ = chromedp.Run(viewer, text(`#h-status`, &status))
			t.Fatalf("no CSV download (%s)", status)
		}
	})

	t.Run("the logs page filters", func(t *testing.T) {
		// Consecutive lines of one level written at once go out as one
		// LogBatch, whose entries share a stream_seq: the panel must show
		// them all (the backlog ones here, live ones below).
		appendLog(t, s,
			"WARNING", "res_pjsip_session.c", "PJSIP/1001-0000a001: marker-1001-warning codec mismatch",
			"WARNING", "res_pjsip_session.c", "PJSIP/1001-0000a001: marker-1001-warning-2 codec mismatch",
			"WARNING", "res_pjsip_session.c", "PJSIP/1001-0000a001: marker-1001-warning-3 codec mismatch",
			"ERROR", "chan_pjsip.c", "PJSIP/1001-0000a001: marker-1001-error no route",
			"NOTICE", "res_pjsip_registrar.c", "PJSIP/1002-0000a002: marker-1002-notice other extension",
			"VERBOSE", "pbx.c", "PJSIP/1001-0000a001: marker-1001-verbose Executing dialplan",
		)
		lines := `[...document.querySelectorAll('#logs-lines .log-line')]`
		texts := lines + `.map(e => e.querySelector('.log-msg').textContent)`
		run(t, sup, "extension 1001",
			chromedp.Navigate(s.PanelURL()+"#/logs?pbx=pbx1&endpoint=1001"),
			until(`document.querySelector('#logs-status').dataset.state === 'live'`),
			until(texts+`.some(t => t.includes('marker-1001-verbose'))`),
		)
		var got []string
		run(t, sup, "read", chromedp.Evaluate(texts, &got))
		if !containsAll(got, "marker-1001-warning ", "marker-1001-warning-2", "marker-1001-warning-3", "marker-1001-error", "marker-1001-verbose") || containsAny(got, "marker-1002") {
			t.Errorf("logs of 1001 show %q", got)
		}
		var levels []string
		run(t, sup, "live line, coloured by level",
			chromedp.ActionFunc(func(ctx context.Context) error {
				// The burst is one LogBatch, sent before the ERROR line's.
				appendLog(t, s,
					"VERBOSE", "pbx.c", "PJSIP/1001-0000a001: marker-1001-burst-1 Executing dialplan",
					"VERBOSE", "pbx.c", "PJSIP/1001-0000a001: marker-1001-burst-2 Executing dialplan",
					"VERBOSE", "pbx.c", "PJSIP/1001-0000a001: marker-1001-burst-3 Executing dialplan",
					"ERROR", "res_rtp_asterisk.c", "PJSIP/1001-0000a001: marker-1001-live RTP timeout",
				)
				return nil
			}),
			until(texts+`.some(t => t.includes('marker-1001-live'))`),
			chromedp.Evaluate(texts, &got),
			chromedp.Evaluate(lines+`.filter(e => e.classList.contains('level-error')).map(e => e.dataset.level)`, &levels),
		)
		if !containsAll(got, "marker-1001-burst-1", "marker-1001-burst-2", "marker-1001-burst-3") {
			t.Errorf("a live batch of 3 lines shows as %q", got)
		}
		if len(levels) != 2 {
			t.Errorf("error lines: %v", levels)
		}
		var errCount string
		run(t, sup, "only errors",
			chromedp.Click(`#lvl-warning`), chromedp.Click(`#lvl-notice`), chromedp.Click(`#lvl-security`),
			chromedp.Click(`#lvl-verbose`), chromedp.Click(`#lvl-dtmf`), chromedp.Click(`#lvl-debug`),
			until(`new URLSearchParams(location.hash.split('?')[1]).get('level') === 'ERROR' && document.querySelector('#logs-status').dataset.state === 'live'`),
			until(lines+`.length === 2 && `+lines+`.every(e => e.dataset.level === 'ERROR')`),
			until(`[...document.querySelectorAll('.log-stat')].map(e => e.dataset.level).join() === 'ERROR'`),
			text(`.log-stat[data-level="ERROR"] .log-stat-count`, &errCount),
		)
		if errCount != "2" {
			t.Errorf("ERROR count %q, want 2", errCount)
		}
		screenshot(t, sup, "panel-logs")
		run(t, sup, "text filter",
			chromedp.SendKeys(`#logs-text`, "live"),
			until(`location.hash.includes('text=live')`),
			until(lines+`.length === 1 && `+texts+`[0].includes('marker-1001-live')`),
		)
		var subs int
		run(t, sup, "leaving unsubscribes",
			chromedp.Navigate(s.PanelURL()+"#/overview"),
			chromedp.WaitVisible(`#extensions`),
			chromedp.Evaluate(`window.pbxpulse.subscriptions.length`, &subs),
		)
		if subs != 0 {
			t.Errorf("%d log subscriptions left after leaving the page", subs)
		}
	})

	t.Run("queues and trunk health", func(t *testing.T) {
		s.Sim.Register("1004")
		s.Sim.RegisterTrunk()
		if !s.Sim.PauseMember("1004", true, "lunch break") {
			t.Fatal("simulator: no queue member 1004")
		}
		call := s.Sim.CallQueue("1002")
		defer call.Hangup()
		queue := `[data-queue="pbx1/support"]`
		caller := queue + ` .queue-caller[data-uniqueid="` + call.Linkedid() + `"]`
		var wait0 string
		run(t, viewer, "queue",
			chromedp.Navigate(s.PanelURL()+"#/queues"),
			until(q(caller+" .caller-num")+`.textContent === '1002'`),
			until(q(queue+` .queue-member[data-member="Ext 1004"] .pause-reason`)+`.textContent === 'lunch break'`),
			text(caller+" .queue-wait", &wait0),
			until(q(caller+" .queue-wait")+`.textContent !== `+js(wait0)),
		)
		screenshot(t, viewer, "panel-queues")
		run(t, viewer, "trunk health",
			chromedp.Navigate(s.PanelURL()+"#/trunks"),
			until(q(`[data-trunk="pbx1/provider"] .reg-badge`)+`.textContent === 'Registered'`),
			until(q(`[data-trunk="pbx1/provider"] svg.health-chart .flap-up`)),
		)
		screenshot(t, viewer, "panel-trunks")
	})

	t.Run("reconnects and resumes", func(t *testing.T) {
		var before string
		run(t, sup, "connected",
			chromedp.Navigate(s.PanelURL()+"#/overview"),
			until(`document.querySelector('#ws-state').textContent === 'connected'`),
			chromedp.Evaluate(`window.pbxpulse.version`, &before),
		)
		s.StopService("gateway")
		run(t, sup, "the link is down",
			until(`document.querySelector('#ws-state').textContent === 'reconnecting'`),
			until(`/^attempt [2-9]/.test(document.querySelector('#ws-attempt').textContent) && !document.querySelector('#ws-attempt').classList.contains('d-none')`),
		)
		screenshot(t, sup, "panel-reconnecting")
		// What happens meanwhile is in the deltas the panel asks for.
		call := s.Sim.Dial("1003", "1004")
		call.Answer()
		defer call.Hangup()
		if err := s.StartService("gateway"); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		if err := s.WaitReady(ctx); err != nil {
			t.Fatal(err)
		}
		var resumed bool
		var after string
		run(t, sup, "back",
			until(`document.querySelector('#ws-state').textContent === 'connected'`),
			chromedp.WaitVisible(callRow(call.Linkedid())),
			chromedp.Evaluate(`window.pbxpulse.link.resumed`, &resumed),
			chromedp.Evaluate(`window.pbxpulse.version`, &after),
			until(`document.querySelector('#ws-attempt').classList.contains('d-none')`),
		)
		if !resumed {
			t.Errorf("the panel was sent a new snapshot instead of the deltas after version %s", before)
		}
		if a, b := mustUint(t, after), mustUint(t, before); a <= b {
			t.Errorf("version %d after reconnecting, %d before", a, b)
		}
	})

	t.Run("inside an iframe of another site", func(t *testing.T) {
		host := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			fmt.Fprintf(w, `<!doctype html><title>wallboard</title><h1>Call centre</h1><iframe id="monitor" src="%s#token=%s" width="1000" height="600"></iframe>`, s.PanelURL(), viewerToken)
		}))
		defer host.Close()
		tab := b.tab()
		var frames []*cdp.Node
		run(t, tab, "host page", chromedp.Navigate(host.URL), chromedp.Nodes(`#monitor`, &frames, chromedp.ByQuery))
		frame := chromedp.WithPollingInFrame(frames[0])
		run(t, tab, "panel in the frame",
			chromedp.Poll(`document.querySelector('#ws-state').textContent === 'connected' && document.querySelector('#role').textContent === 'viewer'`, nil,
				frame, chromedp.WithPollingTimeout(wait), chromedp.WithPollingInterval(50*time.Millisecond)),
			chromedp.WaitVisible(endpointCard("pbx1", "1001"), chromedp.ByQuery, chromedp.FromNode(frames[0])),
		)
		screenshot(t, tab, "panel-iframe")
	})

	t.Run("search and PBX filter", func(t *testing.T) {
		cards := `document.querySelectorAll('#extensions [data-endpoint]').length`
		var all int
		run(t, sup, "search",
			chromedp.Navigate(s.PanelURL()+"#/overview"),
			chromedp.WaitVisible(endpointCard("pbx1", "1001")),
			chromedp.Evaluate(cards, &all),
			chromedp.SendKeys(`#search`, "1003"),
			until(cards+` === 1 && `+q(endpointCard("pbx1", "1003"))),
		)
		run(t, sup, "filter",
			chromedp.Click(`#pbxs [data-pbx="pbx1"]`),
			until(q(`#pbxs [data-pbx="pbx1"]`)+`.getAttribute('aria-pressed') === 'true'`),
			chromedp.Evaluate(`(() => { const s = document.querySelector('#search'); s.value = ''; s.dispatchEvent(new Event('input')) })()`, nil),
			until(cards+` === `+strconv.Itoa(all)),
		)
		run(t, sup, "no filter",
			chromedp.Click(`#pbxs [data-pbx="pbx1"]`),
			until(q(`#pbxs [data-pbx="pbx1"]`)+`.getAttribute('aria-pressed') === 'false'`),
		)
		if all < 5 {
			t.Errorf("%d extension cards before searching", all)
		}
	})

	t.Run("phone", func(t *testing.T) {
		call := s.Sim.Dial("1002", "1001")
		call.Answer()
		defer call.Hangup()
		run(t, viewer, "phone-sized overview",
			emulation.SetDeviceMetricsOverride(390, 844, 2, true),
			chromedp.Navigate(s.PanelURL()+"#/overview"),
			chromedp.WaitVisible(callRow(call.Linkedid())),
		)
		var overflow bool
		run(t, viewer, "no sideways scrolling", chromedp.Evaluate(`document.documentElement.scrollWidth > window.innerWidth + 1`, &overflow))
		if overflow {
			t.Error("the overview is wider than a phone's screen")
		}
		screenshotScreen(t, viewer, "panel-phone")
	})
}

// postAction sends an action to the gateway as a client other than the panel would.
func postAction(t *testing.T, s *stack.Stack, token, action string, body any) (int, string) {
	t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(http.MethodPost, s.GatewayURL("api/v1/pbx/pbx1/actions/"+action), bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(out)
}

// appendLog appends Asterisk "full" log entries (level, source file,
// message triples) to the file the stack's log tailer follows.
func appendLog(t *testing.T, s *stack.Stack, entries ...string) {
	t.Helper()
	f, err := os.OpenFile(s.LogFile(), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	now := time.Now().Format("2006-01-02 15:04:05.000")
	var buf bytes.Buffer
	for i := 0; i+2 < len(entries); i += 3 {
		fmt.Fprintf(&buf, "[%s] %s[4242][C-0000a001] %s: %s\n", now, entries[i], entries[i+1], entries[i+2])
	}
	if _, err := f.Write(buf.Bytes()); err != nil {
		t.Fatal(err)
	}
}

func mustUint(t *testing.T, s string) uint64 {
	t.Helper()
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		t.Fatalf("version %q: %v", s, err)
	}
	return v
}

func containsAll(lines []string, subs ...string) bool {
	for _, s := range subs {
		if !containsAny(lines, s) {
			return false
		}
	}
	return true
}

func containsAny(lines []string, sub string) bool {
	for _, l := range lines {
		if strings.Contains(l, sub) {
			return true
		}
	}
	return false
}

// hangupAll ends every call of the simulator through the gateway, as a
// supervisor would, and waits until no channel is left.
func hangupAll(t *testing.T, s *stack.Stack) {
	t.Helper()
	for _, ch := range s.Sim.Truth().Channels {
		postAction(t, s, supervisorToken, "hangup", map[string]any{"channel": ch.Name})
	}
	deadline := time.Now().Add(wait)
	for s.Sim.Channels() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d channels left", s.Sim.Channels())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// confirmDialog goes from a filled-in action dialog to the PBX's answer:
// next, confirm, then the result's ok flag and reply text.
func confirmDialog(ok, reply *string) chromedp.Action {
	return chromedp.Tasks{
		chromedp.Click(`#modal-next`),
		chromedp.WaitVisible(`#modal-confirm`),
		chromedp.Click(`#modal-confirm`),
		chromedp.WaitVisible(`#modal-result`),
		chromedp.AttributeValue(`#modal-result`, "data-ok", ok, nil),
		text(`#modal-reply`, reply),
	}
}
