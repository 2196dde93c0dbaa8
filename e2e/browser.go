package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// ScreenshotDir is where the console tests save the screenshots that the
// README and the guides show, when MALOCAL_SCREENSHOTS=1 (`make
// screenshots`); otherwise they go to a temp dir, so that a test run leaves
// the source tree as it was.
const ScreenshotDir = "../docs/screenshots"

func screenshotDir(t testing.TB) string {
	if os.Getenv("MALOCAL_SCREENSHOTS") == "1" {
		return ScreenshotDir
	}
	return t.TempDir()
}

// Browser is a headless Chromium, Debian's, driven over the DevTools
// protocol, with a fresh profile of its own.
type Browser struct {
	t    testing.TB
	Ctx  context.Context
	base string
}

// RequireChromium finds Chromium (under CI=true its absence fails the test).
func RequireChromium(t testing.TB) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	Require(t, false, "Chromium is not installed (apt-get install chromium)")
	return ""
}

// NewBrowser starts Chromium for e's console, 1280x800, with navigator's
// language set to lang ("en-US", "zh-CN"), and signs it in through a
// one-time login link, as a user opening `malocal ui`'s link does.
func (e *Emulator) NewBrowser(t testing.TB, lang string) *Browser {
	t.Helper()
	b := e.NewSignedOutBrowser(t, lang)
	lctx, lcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer lcancel()
	login, err := e.Client().LoginURL(lctx)
	if err != nil {
		t.Fatalf("login link: %v", err)
	}
	b.Run("sign in", chromedp.Navigate(login), chromedp.WaitVisible(chromedp.CSS(`#main > *`)))
	return b
}

// NewSignedOutBrowser is NewBrowser without the sign-in.
func (e *Emulator) NewSignedOutBrowser(t testing.TB, lang string) *Browser {
	t.Helper()
	bin := RequireChromium(t)
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(bin),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("lang", lang),
		chromedp.Flag("accept-lang", lang),
		chromedp.Env("LANGUAGE="+strings.ReplaceAll(lang, "-", "_"), "TZ=UTC"),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 800),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	t.Cleanup(func() { cancel(); cancelAlloc() })
	b := &Browser{t: t, Ctx: ctx, base: "http://" + e.API}
	// The first run starts the browser and must have no timeout: the
	// browser lives as long as that call's context.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting %s: %v", bin, err)
	}
	b.Run("viewport", chromedp.EmulateViewport(1280, 800))
	return b
}

// Run runs actions, failing the test (with a screenshot in the test's
// output dir) when they fail or take more than two minutes.
func (b *Browser) Run(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := b.RunFor(2*time.Minute, actions...); err != nil {
		b.t.Fatalf("browser: %s: %v (page at failure: %s)", what, err, b.failureShot(what))
	}
}

// RunFor runs actions with a timeout and returns their error.
func (b *Browser) RunFor(d time.Duration, actions ...chromedp.Action[chromedp.Void]) error {
	ctx, cancel := context.WithTimeout(b.Ctx, d)
	defer cancel()
	return chromedp.Do(ctx, actions...)
}

// Open shows a console page by its route ("#/jobs").
func (b *Browser) Open(route string) chromedp.Action[chromedp.Void] {
	return chromedp.Navigate(b.base + "/" + route)
}

// Text returns the visible text of the first element matching sel, waiting
// up to 30 s for one to exist. It finds and reads the element in one
// evaluation: the console re-renders lists when a refresh lands (after each
// upload, say), and a node found in one call can be gone by the next.
func (b *Browser) Text(sel string) string {
	b.t.Helper()
	q, _ := json.Marshal(sel)
	expr := fmt.Sprintf(`(() => { const el = document.querySelector(%s); return el ? el.innerText : null })()`, q)
	ctx, cancel := context.WithTimeout(b.Ctx, 30*time.Second)
	defer cancel()
	for {
		s, err := chromedp.Run(ctx, chromedp.Evaluate[*string](expr))
		if err != nil {
			b.t.Fatalf("browser: text of %s: %v", sel, err)
		}
		if s != nil {
			return *s
		}
		select {
		case <-ctx.Done():
			b.t.Fatalf("browser: text of %s: no such element after 30 s (page at failure: %s)", sel, b.failureShot("text"))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Screenshot saves the visible page as name in screenshotDir.
func (b *Browser) Screenshot(name string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.Ctx, 30*time.Second)
	defer cancel()
	chromedp.Do(ctx, chromedp.Sleep(300*time.Millisecond)) // let transitions settle
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		b.t.Fatalf("browser: screenshot %s: %v", name, err)
	}
	dir := screenshotDir(b.t)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

// failureShot is the page's markup at a failure, for the test log.
func (b *Browser) failureShot(string) string {
	ctx, cancel := context.WithTimeout(b.Ctx, 10*time.Second)
	defer cancel()
	html, err := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("main")))
	if err != nil {
		return fmt.Sprintf("unavailable: %v", err)
	}
	if len(html) > 6000 {
		html = html[:6000] + "…"
	}
	return html
}

// WaitText waits until the element sel's text contains want.
func WaitText(sel, want string) chromedp.Action[chromedp.Void] {
	return WaitJS(fmt.Sprintf(`(() => { const e = document.querySelector(%q); return !!e && e.textContent.includes(%q); })()`, sel, want))
}

// WaitJS waits until the JavaScript expression is true; the caller's
// context bounds the wait. An expression that throws counts as not yet:
// right after a click the console may still show the old page (the form's
// fields not there), and a poll that failed on the first such throw made a
// test's outcome depend on whether the router had rendered before it.
func WaitJS(expr string) chromedp.Action[chromedp.Void] {
	return chromedp.Poll[chromedp.Void](waitExpr(expr), chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(0))
}

// waitExpr is expr as WaitJS polls it: true or false, never a throw.
func waitExpr(expr string) string {
	return "(() => { try { return !!(" + expr + "\n); } catch (e) { return false; } })()"
}

// Eval runs JavaScript in the page and returns its value.
func Eval[T any](b *Browser, expr string) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.Ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		b.t.Fatalf("browser: %s: %v", expr, err)
	}
	return v
}
