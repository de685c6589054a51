package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// artifacts is where screenshots are kept (test/artifacts, ignored by git).
func artifacts(t *testing.T) string {
	dir := filepath.Join("..", "artifacts")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func browser(t *testing.T) context.Context {
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
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1400, 900),
	}
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	ctx, cancel2 := chromedp.NewContext(actx)
	t.Cleanup(cancel2)
	ctx, cancel3 := context.WithTimeout(ctx, 90*time.Second)
	t.Cleanup(cancel3)
	return ctx
}

// TestPanelShowsCall loads the panel in headless Chromium, makes a call
// whose caller-ID name is markup and whose number has a leading zero, and
// finds it on the page as text.
func TestPanelShowsCall(t *testing.T) {
	s := startStack(t, false)
	ctx := browser(t)
	s.Sim.Register("1001")
	s.Sim.Register("1002")

	if err := chromedp.Run(ctx,
		chromedp.Navigate(s.PanelURL()),
		chromedp.WaitVisible(`#ws-state`),
		chromedp.Poll(`document.querySelector('#ws-state').textContent === 'connected'`, nil, chromedp.WithPollingTimeout(30*time.Second)),
		chromedp.Poll(`(() => { const b = document.querySelector('[data-endpoint="pbx1/1001"] .status-badge'); return b && b.textContent === 'online' })()`,
			nil, chromedp.WithPollingTimeout(30*time.Second)),
	); err != nil {
		t.Fatalf("panel did not show 1001 online: %v", err)
	}

	call := s.Sim.Dial("1001", "1002")
	call.Answer()
	sel := `tr[data-linkedid="` + call.Linkedid() + `"]`
	var caller, callee, state string
	if err := chromedp.Run(ctx,
		chromedp.WaitVisible(sel),
		chromedp.Poll(`document.querySelector('`+sel+` .call-state').textContent.includes('bridged')`, nil, chromedp.WithPollingTimeout(20*time.Second)),
		chromedp.Text(sel+` .caller-num`, &caller),
		chromedp.Text(sel+` .callee-num`, &callee),
		chromedp.Text(sel+` .call-state`, &state),
	); err != nil {
		t.Fatalf("panel did not show the call: %v", err)
	}
	if caller != "1001" || callee != "1002" {
		t.Errorf("call row shows %q -> %q (%s)", caller, callee, state)
	}
	var shot []byte
	if err := chromedp.Run(ctx, chromedp.FullScreenshot(&shot, 100)); err == nil {
		_ = os.WriteFile(filepath.Join(artifacts(t), "panel-call.png"), shot, 0o644)
	}
	call.Hangup()
	if err := chromedp.Run(ctx, chromedp.WaitNotPresent(sel)); err != nil {
		t.Fatalf("call row did not disappear: %v", err)
	}
}
