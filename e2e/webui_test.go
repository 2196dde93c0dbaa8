package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/chromedp/chromedp"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/malocal/malocal/api"
)

// freeAddr is a loopback address nobody listens on, for an emulator that
// must come back on the same address after a restart.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// pick chooses value in a <select>, as a user does: the page hears "change".
func pick(sel, value string) chromedp.Action[chromedp.Void] {
	return chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`(() => { const s = document.querySelector(%q); s.value = %q; s.dispatchEvent(new Event("change")); })()`, sel, value))
}

// stepScript prints more lines than the log pane holds, so following the
// end means scrolling.
const stepScript = `i=1; while [ $i -le 12 ]; do echo "step $i of 12 on task $DLS_TASK_INDEX"; echo "  loss $((100 - i * 7))"; i=$((i+1)); sleep 1; done`

func TestConsoleCreateJobWatchLiveLogsAcrossARestart(t *testing.T) {
	RequireChromium(t)
	RequireDocker(t)
	addr := freeAddr(t)
	args := WithArgs("--api-addr", addr, "--stop-grace", "2s")
	e := Start(t, args)
	e.CleanupJobs()
	img := e.BusyboxImage(t, "test/busybox", "1")
	e.MakeBucket(t, "code")
	if _, err := e.S3Client().PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String("code"), Key: aws.String("new/train.py"),
		Body: strings.NewReader("print('hello')\n")}); err != nil {
		t.Fatal(err)
	}
	b := e.NewBrowser(t, "en-US")

	b.Run("open the form", b.Open("#/jobs/new"), WaitJS(fmt.Sprintf(`!!document.querySelector('#f-image option[value=%q]')`, img)))
	if got := Eval[string](b, `document.querySelector('#f-command').value`); !strings.HasPrefix(got, "bash /home/work/run_train.sh python /home/work/user-job-dir/") {
		t.Errorf("run command not prefilled with the run_train.sh template: %q", got)
	}
	// Without a name the API refuses the job; its message shows by the field.
	b.Run("submit without a name", chromedp.Click(chromedp.CSS("#submit-job")), WaitText("#err-name", "required"))
	if !Eval[bool](b, `document.querySelector('#field-name').classList.contains('invalid')`) {
		t.Error("the name field is not marked invalid")
	}
	b.Run("fill the form",
		chromedp.SendKeys(chromedp.CSS("#f-name"), "mnist-console"),
		pick("#f-image", img),
		chromedp.SetValue(chromedp.CSS("#f-command"), "/bin/sh -c '"+stepScript+"'"),
		chromedp.SetValue(chromedp.CSS("#f-nodes"), "2"),
		chromedp.SendKeys(chromedp.CSS("#f-env"), "EPOCHS=3"),
		WaitText("#image-verdict", "not audited yet"))
	if Eval[bool](b, `!!document.querySelector('.field.invalid') || document.querySelector('#err-name').textContent !== ""`) {
		t.Error("the name's error stays after the name was typed")
	}
	// The code dir is picked from the object store.
	b.Run("pick the code dir", chromedp.Click(chromedp.CSS("#pick-app_url")),
		chromedp.Click(chromedp.CSS(`#picker-list button[data-bucket="code"]`)),
		chromedp.Click(chromedp.CSS(`#picker-list button[data-folder="new/"]`)),
		WaitText("#picker", "s3://code/new/"),
		chromedp.Click(chromedp.CSS("#picker-choose")),
		WaitJS(`document.querySelector('#f-app_url').value === "s3://code/new/" && !document.querySelector('#picker')`))
	b.Run("scroll up", chromedp.Evaluate[chromedp.Void](`window.scrollTo(0, 0)`), WaitText("#image-verdict", "not audited yet"))
	b.Screenshot("job-create.png")
	b.Run("create", chromedp.Click(chromedp.CSS("#submit-job")), WaitJS(`/^#\/jobs\/(?!new)[^/]+$/.test(location.hash)`))
	id := strings.TrimPrefix(Eval[string](b, `decodeURIComponent(location.hash)`), "#/jobs/")

	// The first lines arrive while the job runs: the log is live.
	b.Run("first lines", WaitText("#log-0", "step 2 of 12 on task 0"))
	j, err := e.Client().Job(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if j.Status != api.StatusRunning || j.Spec.Nodes != 2 || j.Spec.Env["EPOCHS"] != "3" {
		t.Fatalf("job while its first lines show: %s, %d nodes, env %v", j.Status, j.Spec.Nodes, j.Spec.Env)
	}

	// The emulator restarts under the page: the log reconnects and goes on
	// with no line lost or shown twice.
	if code := e.Signal(syscall.SIGTERM, 30*time.Second); code != 0 {
		t.Fatalf("emulator stop: exit %d", code)
	}
	b.Run("connection lost", WaitText("#log-state-0", "reconnecting"))
	e = e.Restart(args)
	b.Run("job completes", WaitText("#log-0", "step 12 of 12 on task 0"), WaitText("#job-status", "Completed"))
	for task := range 2 {
		lines := Eval[[]string](b, fmt.Sprintf(`[...document.querySelectorAll('#log-%d .line')].map((l) => l.lastChild.textContent)`, task))
		for i := 1; i <= 12; i++ {
			want := fmt.Sprintf("step %d of 12 on task %d", i, task)
			if n := count(lines, want); n != 1 {
				t.Errorf("task %d: %q shown %d times; log:\n%s", task, want, n, strings.Join(lines, "\n"))
			}
		}
	}
	for task := range 2 {
		if got := b.Text(fmt.Sprintf(`#tasks-body tr[data-task="%d"] td.exit`, task)); got != "0" {
			t.Errorf("task %d exit code shown as %q, want 0", task, got)
		}
	}
	b.Run("task 1's tab", chromedp.Click(chromedp.CSS("#tab-1")), chromedp.WaitVisible(chromedp.CSS("#log-1")), WaitText("#log-1", "step 12 of 12 on task 1"),
		chromedp.Click(chromedp.CSS("#tab-0")), chromedp.WaitVisible(chromedp.CSS("#log-0")))
	if Eval[bool](b, `document.querySelector('#log-1').offsetParent !== null`) {
		t.Error("task 1's log still shows on task 0's tab")
	}
	b.Run("log ends", WaitText("#log-state-0", "End of log"))
	if !Eval[bool](b, `(() => { const p = document.querySelector('#log-0'); return p.scrollHeight > p.clientHeight && p.scrollTop + p.clientHeight >= p.scrollHeight - 4; })()`) {
		t.Error("the log pane did not follow its end")
	}
	b.Screenshot("job.png")

	// A job that would run for minutes, stopped from its page.
	long := submit(t, e, api.JobSpec{Name: "long-training", Image: img, AppURL: "s3://code/new/", Command: []string{"/bin/sh", "-c", "echo started; sleep 300"}})
	b.Run("stop", b.Open("#/jobs/"+long.ID), WaitText("#log-0", "started"),
		chromedp.Click(chromedp.CSS("#stop-job")), WaitText("#confirm", "long-training"), chromedp.Click(chromedp.CSS("#confirm-ok")),
		WaitText("#job-status", "Canceled"))
	if j, err := e.Client().Job(context.Background(), long.ID); err != nil || j.Status != api.StatusCanceled {
		t.Errorf("stopped job: %+v %v", j, err)
	}
	if got := b.Text(`#tasks-body tr[data-task="0"] td.exit`); got == "–" || got == "0" {
		t.Errorf("stopped task's exit code shown as %q", got)
	}

	b.Run("jobs list", b.Open("#/jobs"), WaitText(fmt.Sprintf(`#jobs-body tr[data-job=%q]`, id), "Completed"),
		WaitText(fmt.Sprintf(`#jobs-body tr[data-job=%q]`, long.ID), "Canceled"))
	if row := b.Text(fmt.Sprintf(`#jobs-body tr[data-job=%q]`, id)); !strings.Contains(row, "mnist-console") || !strings.Contains(row, img) {
		t.Errorf("jobs list row lacks the name or image: %q", row)
	}
	b.Screenshot("jobs.png")
}

func count(lines []string, want string) int {
	n := 0
	for _, l := range lines {
		if l == want {
			n++
		}
	}
	return n
}

func TestConsoleAuditFailureAndImages(t *testing.T) {
	RequireChromium(t)
	e := Start(t)
	good := e.BusyboxImage(t, "test/busybox", "1")
	base, err := BusyboxV1Image()
	if err != nil {
		t.Fatal(err)
	}
	// On the base, but it rewrites /etc/passwd and adds a setuid root file.
	rogue, err := mutate.AppendLayers(base, fileLayer("etc/passwd", "root:x:0:0:root:/root:/bin/sh\nwork:x:0:0::/home/work:/bin/sh\n"), modeLayer("usr/local/bin/rootme", "#!\n", 0o4755))
	if err != nil {
		t.Fatal(err)
	}
	e.push(t, "test/rogue:1", rogue)
	e.MakeBucket(t, "code")
	j := submit(t, e, api.JobSpec{Name: "rogue-image", Image: "test/rogue:1", AppURL: "s3://code/new/", Command: []string{"true"}})
	b := e.NewBrowser(t, "en-US")

	b.Run("job page", b.Open("#/jobs/"+j.ID), WaitText("#job-status", "Audit failed"), WaitText("#audit-failed", "etc/passwd"))
	report := b.Text("#audit-failed")
	for _, want := range []string{"Image audit failed", "MA-PROT", "/etc/passwd", "MA-SUID", "/usr/local/bin/rootme"} {
		if !strings.Contains(report, want) {
			t.Errorf("audit report on the job page lacks %q:\n%s", want, report)
		}
	}
	if Eval[int](b, `document.querySelectorAll('#log-0').length`) != 0 {
		t.Error("a job that never ran shows a log")
	}
	b.Screenshot("job-audit-failed.png")

	goodRow := fmt.Sprintf(`#images-body tr[data-image=%q]`, good)
	rogueRow := `#images-body tr[data-image="test/rogue:1"]`
	b.Run("images page", b.Open("#/images"),
		WaitJS(fmt.Sprintf(`!!document.querySelector('%s [data-verdict="fail"]')`, rogueRow)),
		WaitJS(fmt.Sprintf(`!!document.querySelector('%s [data-verdict="none"]')`, goodRow)))
	if row := b.Text(goodRow); !strings.Contains(row, "test/busybox-base:1") || !strings.Contains(row, "sha256:") {
		t.Errorf("image row lacks its base lineage or digest: %q", row)
	}
	if row := b.Text(`#images-body tr[data-image="test/busybox-base:1"]`); !strings.Contains(row, "official base") {
		t.Errorf("the base's row does not say it is an official base: %q", row)
	}
	b.Run("re-audit", chromedp.Click(chromedp.CSS(goodRow+` button[data-ref]`)),
		WaitJS(fmt.Sprintf(`!!document.querySelector('%s [data-verdict="pass"]')`, goodRow)))
	a, err := e.Client().ImageAudit(context.Background(), "test/busybox", "1")
	if err != nil || a.Verdict != "pass" || a.Report == nil || a.Base == nil || a.Base.Name != "test/busybox-base" {
		t.Errorf("stored verdict after the re-audit: %+v %v", a, err)
	}
	b.Run("hide the good report, show the rogue one",
		chromedp.Click(chromedp.CSS(goodRow+` td.actions button`)),
		chromedp.Click(chromedp.CSS(rogueRow+` td.actions button`)),
		WaitJS(`!document.querySelector('tr[data-report="test/rogue:1"]').hidden`))
	if rep := b.Text(`tr[data-report="test/rogue:1"]`); !strings.Contains(rep, "MA-SUID") {
		t.Errorf("rogue image report: %q", rep)
	}
	b.Screenshot("images.png")
}

func TestConsoleUploadToObjectStorage(t *testing.T) {
	RequireChromium(t)
	e := Start(t)
	e.MakeBucket(t, "obs-demo")
	b := e.NewBrowser(t, "en-US")
	dir := t.TempDir()
	data := make([]byte, 3<<20)
	rand.Read(data)
	big := filepath.Join(dir, "train-images-idx3-ubyte")
	if err := os.WriteFile(big, data, 0o644); err != nil {
		t.Fatal(err)
	}
	small := filepath.Join(dir, "labels.txt")
	os.WriteFile(small, []byte("0 1 2 3 4 5 6 7 8 9\n"), 0o644)

	b.Run("bucket", b.Open("#/objects/obs-demo/"), WaitText("#objects-body", "This folder is empty"))
	b.Run("new folder", chromedp.SendKeys(chromedp.CSS("#new-folder"), "mnist_data"), chromedp.Click(chromedp.CSS("#new-folder-button")),
		WaitText("#crumbs", "mnist_data/"))
	b.Run("upload", chromedp.SetUploadFiles(chromedp.CSS("#upload-input"), []string{big, small}),
		WaitJS(`document.querySelectorAll('#uploads .upload.done').length === 2`),
		WaitJS(`!!document.querySelector('#objects-body tr[data-key="mnist_data/train-images-idx3-ubyte"]')`))
	if got := b.Text(`#objects-body tr[data-key="mnist_data/train-images-idx3-ubyte"]`); !strings.Contains(got, "3.0 MiB") {
		t.Errorf("uploaded object's row: %q", got)
	}
	if pct := b.Text(`#uploads .upload[data-file="train-images-idx3-ubyte"]`); !strings.Contains(pct, "100%") {
		t.Errorf("upload progress at the end: %q", pct)
	}

	// It landed: an S3 client reads the same bytes.
	out, err := e.S3Client().GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String("obs-demo"), Key: aws.String("mnist_data/train-images-idx3-ubyte")})
	if err != nil {
		t.Fatalf("the upload is not in the object store: %v", err)
	}
	got, _ := io.ReadAll(out.Body)
	out.Body.Close()
	if sha256.Sum256(got) != sha256.Sum256(data) {
		t.Errorf("object holds %d bytes that differ from the %d uploaded", len(got), len(data))
	}
	// The download link serves it back.
	href := Eval[string](b, `document.querySelector('#objects-body tr[data-key="mnist_data/labels.txt"] a[download]').href`)
	rc, err := e.Client().GetObject(context.Background(), "obs-demo", "mnist_data/labels.txt")
	if err != nil || !strings.HasSuffix(href, "/api/v1/buckets/obs-demo/objects/mnist_data/labels.txt") {
		t.Fatalf("download %s: %v", href, err)
	}
	body, _ := io.ReadAll(rc)
	rc.Close()
	if string(body) != "0 1 2 3 4 5 6 7 8 9\n" {
		t.Errorf("download: %q", body)
	}
	b.Screenshot("objects.png")

	// Delete asks first; cancelled, the object stays; confirmed, it goes.
	row := `#objects-body tr[data-key="mnist_data/labels.txt"]`
	b.Run("delete, then cancel", chromedp.Click(chromedp.CSS(row+` button[data-delete]`)), WaitText("#confirm", "labels.txt"),
		chromedp.Click(chromedp.CSS("#confirm-cancel")), WaitJS(`!document.querySelector('#confirm')`))
	if Eval[bool](b, fmt.Sprintf(`!document.querySelector('%s')`, row)) {
		t.Fatal("a cancelled delete removed the row")
	}
	b.Run("delete", chromedp.Click(chromedp.CSS(row+` button[data-delete]`)), chromedp.Click(chromedp.CSS("#confirm-ok")),
		WaitJS(fmt.Sprintf(`!document.querySelector('%s')`, row)), WaitText("#objects-status", "Deleted 1 object(s)"))
	if _, err := e.S3Client().HeadObject(context.Background(), &s3.HeadObjectInput{Bucket: aws.String("obs-demo"), Key: aws.String("mnist_data/labels.txt")}); err == nil {
		t.Error("the deleted object is still in the object store")
	}
}

func TestConsoleInChinese(t *testing.T) {
	RequireChromium(t)
	e := Start(t)
	e.MakeBucket(t, "code")
	// A job to list: its image is no official base's child, so it ends in
	// audit_failed without a container.
	img, err := mutate.AppendLayers(empty.Image, fileLayer("bin/sh", "#!fake\n"))
	if err != nil {
		t.Fatal(err)
	}
	e.push(t, "test/squashed:1", img)
	b := e.NewBrowser(t, "en-US")
	b.Run("jobs page in English", b.Open("#/jobs"), WaitText("#nav-jobs", "Training jobs"), WaitText("#jobs-body", "No training jobs yet"))
	// The list refreshes by itself: a job submitted elsewhere shows up.
	j := submit(t, e, api.JobSpec{Name: "mnist-zh", Image: "test/squashed:1", AppURL: "s3://code/new/", Command: []string{"true"}, Nodes: 2})
	b.Run("the new job appears", WaitText("#jobs-body", "mnist-zh"), WaitText("#jobs-body", "Audit failed"))
	b.Run("switch to Chinese", pick("#lang", "zh-CN"), WaitText("#nav-jobs", "训练作业"))
	for sel, want := range map[string]string{
		"main h1":           "训练作业",
		"#create-job":       "创建训练作业",
		"#jobs-table thead": "名称",
		"#nav-images":       "镜像管理",
		"#nav-objects":      "对象存储",
		"#jobs-body":        "审核失败",
	} {
		// The switch renders the page anew: the labels at once, the list
		// when its fetch returns, as a user sees it fill in.
		if err := b.RunFor(30*time.Second, WaitText(sel, want)); err != nil {
			t.Errorf("%s: %q after 30 s, want %q", sel, b.Text(sel), want)
		}
	}
	if lang := Eval[string](b, `document.documentElement.lang`); lang != "zh-CN" {
		t.Errorf("html lang %q", lang)
	}
	b.Screenshot("jobs-zh.png")
	// The job's page and the other pages speak Chinese too: no English label left.
	for route, want := range map[string]string{"#/jobs/" + j.ID: "镜像审核失败", "#/images": "重新审核", "#/objects/code/": "上传文件", "#/jobs/new": "创建训练作业"} {
		b.Run(route, b.Open(route), WaitText("main", want))
		b.Run(route+" settles", chromedp.Sleep(500*time.Millisecond))
		text := b.Text("main")
		for _, en := range []string{"Overview", "Status timeline", "Tasks", "Create", "Upload", "Re-audit", "Violations", "Name", "status.", "audit.", "form.", "job."} {
			if strings.Contains(text, en) {
				t.Errorf("%s in Chinese still shows %q:\n%s", route, en, text)
			}
		}
	}
	// The choice is remembered.
	b.Run("reload", b.Open("#/jobs"), chromedp.Reload(), WaitText("#nav-jobs", "训练作业"), WaitText("#jobs-body", "审核失败"))

	// A browser set to Chinese starts in Chinese.
	zh := e.NewBrowser(t, "zh-CN")
	zh.Run("default from the browser's language", zh.Open("#/jobs"), WaitText("#nav-jobs", "训练作业"))
}

// A wait whose predicate throws until the page has rendered (a field read
// before the form is there) waits on; it does not fail at the first throw.
func TestWaitJSWaitsThroughAThrowingPredicate(t *testing.T) {
	RequireChromium(t)
	e := Start(t)
	b := e.NewSignedOutBrowser(t, "en-US")
	b.Run("console", b.Open("#/jobs"), WaitText("#signin", "malocal ui"))
	b.Run("a field that comes later", chromedp.Evaluate[chromedp.Void](`setTimeout(() => {
		const i = document.createElement('input'); i.id = 'late'; i.value = 'x'; document.body.appendChild(i); }, 500)`))
	if err := b.RunFor(20*time.Second, WaitJS(`document.querySelector('#late').value === 'x'`)); err != nil {
		t.Fatalf("wait for a field rendered later: %v", err)
	}
}

// A browser that has not signed in is told how to; a used link says so.
func TestConsoleSignedOut(t *testing.T) {
	RequireChromium(t)
	e := Start(t)
	link, err := e.Client().LoginURL(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	b := e.NewSignedOutBrowser(t, "en-US")
	b.Run("console", b.Open("#/jobs"), WaitText("#signin", "malocal ui"))
	b.Run("sign in", chromedp.Navigate(link), WaitText("#jobs-table", "Name"))
	b.Run("the link again", chromedp.Navigate(link), WaitText("#signin", "already used"))
	// The cookie set by the first visit still holds.
	b.Run("still signed in", b.Open("#/images"), WaitText("#images-table", "Repository"))
	if cookies := Eval[string](b, `document.cookie`); strings.Contains(cookies, api.SessionCookie) {
		t.Errorf("the session cookie is readable by scripts: %q", cookies)
	}
}

// TestConsoleLoginCookie checks the browser's sign-in: a login link works
// once, sets an HttpOnly SameSite=Strict cookie, and with that cookie
// writes from another origin, or with no origin, are refused.
func TestConsoleLoginCookie(t *testing.T) {
	e := Start(t)
	base := "http://" + e.API
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

	resp, err := http.Get(base + "/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(page), `type="module"`) || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "default-src 'self'") {
		t.Fatalf("console page: %d %q\n%s", resp.StatusCode, resp.Header, page)
	}
	if strings.Contains(string(page), e.Token) {
		t.Fatal("the console page holds the API token")
	}
	if !strings.Contains(e.Log(), "/api/v1/login?code=") {
		t.Errorf("malocal up did not log a login link:\n%s", e.Log())
	}

	link := strings.TrimSpace(e.Run("ui").Stdout)
	if !strings.HasPrefix(link, base+"/api/v1/login?code=") {
		t.Fatalf("malocal ui printed %q", link)
	}
	resp, err = noRedirect.Get(link)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var session *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == api.SessionCookie {
			session = c
		}
	}
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" || session == nil ||
		!session.HttpOnly || session.SameSite != http.SameSiteStrictMode || session.Value == e.Token {
		t.Fatalf("login: %d %v cookie %+v", resp.StatusCode, resp.Header, session)
	}
	// A link works once.
	resp, err = noRedirect.Get(link)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || !strings.Contains(resp.Header.Get("Location"), "signin") || len(resp.Cookies()) != 0 {
		t.Errorf("second use of a login link: %d %v", resp.StatusCode, resp.Header)
	}

	do := func(method, path, origin string, cookie *http.Cookie, upgrade bool) int {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, strings.NewReader(`{"name":"from-the-console"}`))
		if cookie != nil {
			req.AddCookie(cookie)
		}
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		if upgrade {
			req.Header.Set("Connection", "Upgrade")
			req.Header.Set("Upgrade", "websocket")
			req.Header.Set("Sec-WebSocket-Version", "13")
			req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, c := range []struct {
		what, method, path, origin string
		cookie                     *http.Cookie
		upgrade                    bool
		want                       int
	}{
		{"read with the cookie", "GET", "/api/v1/buckets", "", session, false, 200},
		{"read without it", "GET", "/api/v1/buckets", "", nil, false, 401},
		{"read with a forged cookie", "GET", "/api/v1/buckets", "", &http.Cookie{Name: api.SessionCookie, Value: strings.Repeat("0", 64)}, false, 401},
		{"write from another site", "POST", "/api/v1/buckets", "http://evil.example", session, false, 403},
		{"write with no origin", "POST", "/api/v1/buckets", "", session, false, 403},
		{"log socket from another site", "GET", "/api/v1/jobs/x/logs/ws", "http://evil.example", session, true, 403},
		{"write from the console", "POST", "/api/v1/buckets", base, session, false, 201},
	} {
		if got := do(c.method, c.path, c.origin, c.cookie, c.upgrade); got != c.want {
			t.Errorf("%s: %d, want %d", c.what, got, c.want)
		}
	}
	bs, err := e.Client().Buckets(context.Background())
	if err != nil || len(bs) != 1 || bs[0].Name != "from-the-console" {
		t.Errorf("buckets after the writes: %+v %v", bs, err)
	}
}

// The object routes the console uses, through the Go client, on the real
// object store: odd keys, folders, streaming both ways, errors by class.
func TestObjectRoutesThroughTheClient(t *testing.T) {
	e := Start(t)
	c := e.Client()
	ctx := context.Background()
	if err := c.CreateBucket(ctx, "api-objects"); err != nil {
		t.Fatal(err)
	}
	if err := c.CreateBucket(ctx, "api-objects"); !errors.Is(err, api.ErrConflict) {
		t.Errorf("second create: %v, want a conflict", err)
	}
	if err := c.CreateBucket(ctx, "Not_Valid"); !errors.Is(err, api.ErrInvalid) {
		t.Errorf("invalid name: %v, want invalid", err)
	}
	big := make([]byte, 10<<20)
	rand.Read(big)
	objects := map[string][]byte{"dir one/x y.txt": []byte("spaces\n"), "数据/a.bin": []byte("unicode\n"), "dir one/sub/z": big}
	for k, v := range objects {
		o, err := c.PutObject(ctx, "api-objects", k, bytes.NewReader(v), int64(len(v)))
		if err != nil || o.Key != k || o.Size != int64(len(v)) {
			t.Fatalf("put %q: %+v %v", k, o, err)
		}
	}
	if _, err := c.PutObject(ctx, "api-objects", "nolen", io.MultiReader(strings.NewReader("x")), -1); !errors.Is(err, api.ErrInvalid) {
		t.Errorf("upload without a length: %v, want invalid", err)
	}
	if _, err := c.PutObject(ctx, "no-such-bucket", "k", strings.NewReader("x"), 1); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("upload to a missing bucket: %v, want not found", err)
	}
	top, err := c.ListObjects(ctx, "api-objects", "")
	if err != nil || strings.Join(top.Folders, ",") != "dir one/,数据/" || len(top.Objects) != 0 {
		t.Errorf("top level: %+v %v", top, err)
	}
	dir, err := c.ListObjects(ctx, "api-objects", "dir one/")
	if err != nil || strings.Join(dir.Folders, ",") != "dir one/sub/" || len(dir.Objects) != 1 || dir.Objects[0].Key != "dir one/x y.txt" || dir.Objects[0].Size != 7 {
		t.Errorf("dir one/: %+v %v", dir, err)
	}
	for k, v := range objects {
		rc, err := c.GetObject(ctx, "api-objects", k)
		if err != nil {
			t.Fatalf("get %q: %v", k, err)
		}
		got, _ := io.ReadAll(rc)
		rc.Close()
		if !bytes.Equal(got, v) {
			t.Errorf("get %q: %d bytes that differ from the %d put", k, len(got), len(v))
		}
	}
	if _, err := c.GetObject(ctx, "api-objects", "dir one/missing"); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("get a missing key: %v, want not found", err)
	}
	if _, err := c.DeleteObjects(ctx, "api-objects", "dir one/missing"); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("delete a missing key: %v, want not found", err)
	}
	if n, err := c.DeleteObjects(ctx, "api-objects", "dir one/"); err != nil || n != 2 {
		t.Errorf("delete the folder: %d %v, want 2", n, err)
	}
	if n, err := c.DeleteObjects(ctx, "api-objects", "数据/a.bin"); err != nil || n != 1 {
		t.Errorf("delete one: %d %v", n, err)
	}
	if l, err := c.ListObjects(ctx, "api-objects", ""); err != nil || len(l.Folders)+len(l.Objects) != 0 {
		t.Errorf("after the deletes: %+v %v", l, err)
	}
	if _, err := c.ListObjects(ctx, "no-such-bucket", ""); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("list a missing bucket: %v, want not found", err)
	}
	if _, err := c.ImageAudit(ctx, "no/such", "1"); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("audit of a missing image: %v, want not found", err)
	}
	bs, err := c.Buckets(ctx)
	if err != nil || len(bs) != 1 || bs[0].Name != "api-objects" || bs[0].Created.IsZero() {
		t.Errorf("buckets: %+v %v", bs, err)
	}
}

// Uploads and downloads through the console's routes stream: half a GiB
// goes up and comes back while the emulator's memory stays small.
func TestObjectRoutesStreamLargeObjects(t *testing.T) {
	if testing.Short() {
		t.Skip("half a GiB of disk traffic: not in -short")
	}
	const size = 512 << 20
	e := Start(t)
	c := e.Client()
	ctx := context.Background()
	if err := c.CreateBucket(ctx, "large"); err != nil {
		t.Fatal(err)
	}
	up := sha256.New()
	src := io.TeeReader(io.LimitReader(mrand.NewChaCha8([32]byte{7}), size), up)
	if _, err := c.PutObject(ctx, "large", "blob.bin", src, size); err != nil {
		t.Fatal(err)
	}
	rc, err := c.GetObject(ctx, "large", "blob.bin")
	if err != nil {
		t.Fatal(err)
	}
	down := sha256.New()
	n, err := io.Copy(down, rc)
	rc.Close()
	if err != nil || n != size || !bytes.Equal(up.Sum(nil), down.Sum(nil)) {
		t.Fatalf("download: %d bytes, %v; the content differs from the upload: %t", n, err, !bytes.Equal(up.Sum(nil), down.Sum(nil)))
	}
	if p := rssPeak(e.PID()); p == 0 || p > 128<<20 {
		t.Errorf("emulator peak RSS %d MiB for a %d MiB object, want under 128 MiB", p>>20, size>>20)
	} else {
		t.Logf("emulator peak RSS %d MiB for a %d MiB object", p>>20, size>>20)
	}
}
