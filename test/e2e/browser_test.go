package e2e

import (
	"context"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// artifacts is where screenshots are kept (test/artifacts).
func artifacts(t *testing.T) string {
	dir := filepath.Join("..", "artifacts")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// wait is how long the browser tests wait for something the pipeline does;
// it bounds a wait, it is not a measurement.
const wait = 30 * time.Second

// browserT is one headless Chromium shared by a test's tabs.
type browserT struct {
	t   *testing.T
	ctx context.Context // the browser's first tab; new tabs derive from it

	mu         sync.Mutex
	exceptions []string // uncaught script errors, any tab
	dialogs    []string // alert/confirm/prompt opened, any tab
}

func newBrowser(t *testing.T) *browserT {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("chromium is not installed (.ci/run installs it)")
		}
		t.Skip("chromium not installed: apt-get install chromium")
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		// Several tabs share the browser: keep the ones behind running.
		chromedp.Flag("disable-background-timer-throttling", true),
		chromedp.Flag("disable-renderer-backgrounding", true),
		chromedp.Flag("disable-backgrounding-occluded-windows", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1400, 900),
	}
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	ctx, cancel2 := chromedp.NewContext(actx, chromedp.WithErrorf(quietErrorf))
	t.Cleanup(cancel2)
	ctx, cancel3 := context.WithTimeout(ctx, 5*time.Minute)
	t.Cleanup(cancel3)
	b := &browserT{t: t, ctx: ctx}
	b.watch(ctx)
	if err := chromedp.Run(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	t.Cleanup(func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		for _, e := range b.exceptions {
			t.Errorf("uncaught script error in the panel: %s", e)
		}
		for _, d := range b.dialogs {
			t.Errorf("the panel opened a JavaScript dialog: %s", d)
		}
	})
	return b
}

// quietErrorf logs chromedp's errors except the DOM events it does not
// model (the <dialog> top layer), which are noise.
func quietErrorf(format string, args ...any) {
	if msg := fmt.Sprintf(format, args...); !strings.Contains(msg, "unhandled node event") {
		log.Print(msg)
	}
}

// watch records uncaught exceptions and JavaScript dialogs of a tab: an
// alert() would mean PBX text ran as code.
func (b *browserT) watch(ctx context.Context) {
	chromedp.ListenTarget(ctx, func(ev any) {
		switch e := ev.(type) {
		case *runtime.EventExceptionThrown:
			b.mu.Lock()
			b.exceptions = append(b.exceptions, e.ExceptionDetails.Error())
			b.mu.Unlock()
		case *page.EventJavascriptDialogOpening:
			b.mu.Lock()
			b.dialogs = append(b.dialogs, string(e.Type)+": "+e.Message)
			b.mu.Unlock()
			go func() { _ = chromedp.Run(ctx, page.HandleJavaScriptDialog(false)) }()
		}
	})
}

// tab opens a new tab (its own sessionStorage, so its own token).
func (b *browserT) tab() context.Context {
	ctx, cancel := chromedp.NewContext(b.ctx)
	b.t.Cleanup(cancel)
	b.watch(ctx)
	if err := chromedp.Run(ctx); err != nil {
		b.t.Fatalf("new tab: %v", err)
	}
	return ctx
}

// until waits for a JavaScript expression to become truthy. It polls on a
// timer: the default, animation frames, never come in a background tab.
// An expression that throws (an element not there yet) counts as false.
func until(expr string) chromedp.Action {
	expr = "(() => { try { return !!(" + expr + ") } catch (e) { return false } })()"
	return chromedp.Poll(expr, nil, chromedp.WithPollingTimeout(wait), chromedp.WithPollingInterval(50*time.Millisecond))
}

// run runs actions in a tab and fails the test with what it was doing.
func run(t *testing.T, ctx context.Context, what string, actions ...chromedp.Action) {
	t.Helper()
	// The tab in front gets animation frames and unthrottled timers, as the
	// window a supervisor looks at does.
	actions = append([]chromedp.Action{page.BringToFront()}, actions...)
	// Each step is bounded: a selector that never matches must fail the
	// test, not hang it until the browser's own deadline.
	sctx, cancel := context.WithTimeout(ctx, 2*wait)
	defer cancel()
	if err := chromedp.Run(sctx, actions...); err != nil {
		name := "failed-" + strings.Map(func(r rune) rune {
			if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
				return r
			}
			return '-'
		}, strings.ToLower(what))
		screenshot(t, ctx, name)
		var state string
		_ = chromedp.Run(ctx, chromedp.Evaluate(`JSON.stringify({href: location.href, link: window.pbxpulse && window.pbxpulse.link,
			modal: (document.querySelector('#modal[open]') || {}).innerText, error: document.querySelector('#server-error').innerText})`, &state))
		t.Fatalf("%s: %v (page: %s)", what, err, state)
	}
}

// text reads an element's text now ("" when it is not there). Unlike
// chromedp.Text it holds no node across calls, so it cannot trip over a row
// that the panel re-rendered in between.
func text(sel string, out *string) chromedp.Action {
	return chromedp.Evaluate(`(() => { const e = `+q(sel)+`; return e ? e.textContent : "" })()`, out)
}

// eval evaluates an expression (awaiting a promise) into out.
func eval(expr string, out any) chromedp.Action {
	return chromedp.Evaluate(expr, out, func(p *runtime.EvaluateParams) *runtime.EvaluateParams { return p.WithAwaitPromise(true) })
}

// js quotes a Go string as a JavaScript string literal.
func js(s string) string { return strconv.Quote(s) }

// screenshot saves the whole page as test/artifacts/<name>.png.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	var shot []byte
	saveShot(t, ctx, name, chromedp.FullScreenshot(&shot, 100), &shot)
}

// screenshotScreen saves what fits the screen (a phone's first view).
func screenshotScreen(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	var shot []byte
	saveShot(t, ctx, name, chromedp.CaptureScreenshot(&shot), &shot)
}

func saveShot(t *testing.T, ctx context.Context, name string, take chromedp.Action, shot *[]byte) {
	t.Helper()
	if err := chromedp.Run(ctx, take); err != nil {
		t.Logf("screenshot %s: %v", name, err)
		return
	}
	if err := os.WriteFile(filepath.Join(artifacts(t), name+".png"), *shot, 0o644); err != nil {
		t.Logf("screenshot %s: %v", name, err)
	}
}

// callRow is the selector of a call's row on the overview.
func callRow(linkedid string) string { return `#calls [data-linkedid="` + linkedid + `"]` }

// endpointCard is the selector of an extension's card on the overview.
func endpointCard(pbx, name string) string { return `[data-endpoint="` + pbx + `/` + name + `"]` }

func q(sel string) string { return "document.querySelector(" + js(sel) + ")" }

// TestPanelOpenGateway loads the panel of an open gateway (the dev stack:
// no token, no sign-in) at the root path and follows a call whose number
// keeps its leading zero.
func TestPanelOpenGateway(t *testing.T) {
	s := startStack(t, false)
	b := newBrowser(t)
	ctx := b.tab()
	s.Sim.Register("1001")
	s.Sim.Register("1002")

	run(t, ctx, "open panel",
		chromedp.Navigate(s.PanelURL()),
		until(`document.querySelector('#ws-state').textContent === 'connected'`),
		until(`!document.querySelector('#app').classList.contains('d-none') && document.querySelector('#signin').classList.contains('d-none')`),
		until(fmt.Sprintf(`(() => { const b = %s; return b && b.textContent === 'online' })()`, q(endpointCard("pbx1", "1001")+" .status-badge"))),
	)
	var role string
	run(t, ctx, "role", text(`#role`, &role))
	if role != "admin" {
		t.Errorf("open gateway: role %q, want admin", role)
	}

	call := s.Sim.Dial("1001", "1002")
	call.Answer()
	sel := callRow(call.Linkedid())
	var caller, callee string
	run(t, ctx, "call row",
		chromedp.WaitVisible(sel),
		until(q(sel+" .call-state")+`.textContent.includes('bridged')`),
		text(sel+` .caller-num`, &caller),
		text(sel+` .callee-num`, &callee),
	)
	if caller != "1001" || callee != "1002" {
		t.Errorf("call row shows %q -> %q", caller, callee)
	}
	call.Hangup()
	run(t, ctx, "call ends", chromedp.WaitNotPresent(sel))
}
