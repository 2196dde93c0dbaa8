package e2e

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// The console's "Sign out" ends the session on the emulator: the browser
// lands on the sign-in notice and the API answers 401 to it from then on.
// (That a kept copy of the old cookie is worthless too is checked in the
// api package's tests.)
func TestConsoleSignOut(t *testing.T) {
	RequireChromium(t)
	e := Start(t)
	b := e.NewBrowser(t, "en-US")
	b.Run("jobs page", b.Open("#/jobs"), chromedp.WaitVisible(chromedp.CSS(`#signout`)))
	b.Run("sign out", chromedp.Click(chromedp.CSS(`#signout`)), chromedp.WaitVisible(chromedp.CSS(`#signed-out`)))
	if got := b.Text("#signed-out"); got == "" {
		t.Error("no signed-out notice")
	}
	b.Screenshot("signed-out")
	// The console's own calls are refused now: opening the jobs page sends
	// the browser back to the sign-in notice.
	b.Run("jobs page again", b.Open("#/jobs"), chromedp.WaitVisible(chromedp.CSS(`#signin`)))
	ctx, cancel := context.WithTimeout(b.Ctx, 30*time.Second)
	defer cancel()
	got, err := chromedp.Run(ctx, chromedp.Evaluate[float64](`fetch("/api/v1/status").then(r => r.status)`, chromedp.EvalAwaitPromise))
	if err != nil || got != http.StatusUnauthorized {
		t.Errorf("the console's API call after sign-out: %v %v, want 401", got, err)
	}
}
