package runner

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/malocal/malocal/api"
	"github.com/malocal/malocal/fakeobs/obsclient"
)

// Exit codes of a run besides a failing task's own.
const (
	ExitError       = api.ExitCodeError       // the run could not be set up or torn down
	ExitAuditFailed = api.ExitCodeAuditFailed // the image failed the audit
	ExitTimeout     = api.ExitCodeTimeout     // the job reached its time limit
	ExitInterrupted = api.ExitCodeInterrupted // ctx was canceled (Ctrl-C)
)

// DefaultBucket holds every run's code, data and output, under its run id.
const DefaultBucket = "malocal-run"

// ErrInterrupted is returned when ctx ends before the run does.
var ErrInterrupted = errors.New("interrupted: the job was stopped and everything torn down")

// Remote is a running emulator to use instead of a throwaway one.
type Remote struct {
	API     string // host:port of its API
	Token   string // the API's bearer token
	DataDir string // its data dir: the S3 keys and the base catalog
}

// Options describe one run.
type Options struct {
	Code    string   // local code dir; required
	Image   string   // image, in the emulator's registry or the local Docker engine; required
	Command []string // the job's run command; required
	Nodes   int      // default 1
	Data    string   // local data dir, uploaded to …/<run id>/data/
	DataURL string   // or a data URL already in the object store
	Output  string   // local dir the job's output dir is downloaded to
	Timeout time.Duration
	Env     map[string]string
	JUnit   string // path of a JUnit XML report to write
	Name    string // job name; default the code dir's basename
	Bucket  string // default DefaultBucket
	Remote  *Remote
	// Docker is the docker CLI used to push images; default "docker".
	Docker string
	// StopGrace is, for a throwaway emulator, how long a stopped task gets
	// between SIGTERM and SIGKILL; 0: the emulator's default.
	StopGrace time.Duration
	// Stdout receives the job's log lines; Stderr the run's progress.
	Stdout, Stderr io.Writer
}

// Result is how a run ended.
type Result struct {
	RunID string
	// Job is the submitted job as it ended; nil when the run ended before.
	Job *api.Job
	// ExitCode: 0 when the job completed, else the failing task's exit
	// code, ExitTimeout, ExitAuditFailed, ExitInterrupted or ExitError.
	ExitCode int
}

func (o *Options) check() error {
	if o.Stdout == nil {
		o.Stdout = io.Discard
	}
	if o.Stderr == nil {
		o.Stderr = io.Discard
	}
	if o.Docker == "" {
		o.Docker = "docker"
	}
	if o.Bucket == "" {
		o.Bucket = DefaultBucket
	}
	if o.Nodes == 0 {
		o.Nodes = 1
	}
	if o.Code == "" {
		return errors.New("--code: required, the local dir with the training code")
	}
	fi, err := os.Stat(o.Code)
	if err != nil {
		return fmt.Errorf("--code: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("--code %s: not a directory", o.Code)
	}
	if o.Image == "" {
		return errors.New("--image: required, an image in the emulator's registry or the local Docker engine")
	}
	if len(o.Command) == 0 {
		return errors.New("no command: give it after --, e.g. -- bash /home/work/run_train.sh python3 /home/work/user-job-dir/src/train.py")
	}
	if o.Data != "" && o.DataURL != "" {
		return errors.New("--data and --data-url: give one of them")
	}
	if o.Data != "" {
		if fi, err := os.Stat(o.Data); err != nil {
			return fmt.Errorf("--data: %w", err)
		} else if !fi.IsDir() {
			return fmt.Errorf("--data %s: not a directory", o.Data)
		}
	}
	if o.DataURL != "" {
		if _, remote, err := obsclient.ParseURL(o.DataURL); err != nil || !remote {
			return fmt.Errorf("--data-url %q: want an s3:// or obs:// URL", o.DataURL)
		}
	}
	if o.Timeout < 0 {
		return errors.New("--timeout: must not be negative")
	}
	if o.Name == "" {
		o.Name = jobName(o.Code)
	}
	return nil
}

// CodeDirName is the basename of the code dir: the job finds the code in
// /home/work/user-job-dir/<CodeDirName>/.
func CodeDirName(code string) string {
	abs, err := filepath.Abs(code)
	if err != nil {
		abs = code
	}
	return filepath.Base(filepath.Clean(abs))
}

// jobName is the code dir's basename in letters, digits and dashes.
func jobName(code string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(CodeDirName(code)) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		case b.Len() > 0 && !strings.HasSuffix(b.String(), "-"):
			b.WriteByte('-')
		}
	}
	n := strings.Trim(b.String(), "-")
	if len(n) > 40 {
		n = strings.Trim(n[:40], "-")
	}
	if n == "" {
		n = "run"
	}
	return n
}

func newRunID() string {
	var b [4]byte
	rand.Read(b[:])
	return "run-" + time.Now().UTC().Format("20060102-150405") + "-" + hex.EncodeToString(b[:])
}

// run is one Run in progress.
type run struct {
	o     Options
	id    string
	t     *target
	job   *api.Job
	pulls []string // engine references the job's image was pulled as
	start time.Time
}

func (r *run) url(sub string) string {
	return "s3://" + r.o.Bucket + "/" + r.id + "/" + sub + "/"
}

func (r *run) logf(format string, args ...any) {
	fmt.Fprintf(r.o.Stderr, "malocal run [%5.1fs] %s\n", time.Since(r.start).Seconds(), fmt.Sprintf(format, args...))
}

// Run runs one training job as Options say and tears everything down,
// also when ctx is canceled. The error says why ExitCode is not 0; it is
// nil when the job completed.
func Run(ctx context.Context, o Options) (Result, error) {
	if err := o.check(); err != nil {
		return Result{ExitCode: ExitError}, err
	}
	r := &run{o: o, id: newRunID(), start: time.Now()}
	res, err := r.main(ctx)
	res.RunID = r.id
	terr := r.teardown()
	if ctx.Err() != nil {
		res.ExitCode = ExitInterrupted
		return res, errors.Join(ErrInterrupted, terr)
	}
	if terr != nil {
		if err == nil {
			res.ExitCode = ExitError
		}
		err = errors.Join(err, fmt.Errorf("tearing down: %w", terr))
	}
	return res, err
}

func (r *run) main(ctx context.Context) (Result, error) {
	fail := func(err error) (Result, error) { return Result{Job: r.job, ExitCode: ExitError}, err }
	var err error
	if r.t, err = openTarget(ctx, r.o); err != nil {
		return fail(err)
	}
	if r.o.Remote == nil {
		r.logf("started a throwaway emulator (registry %s, S3 %s)", r.t.registry, r.t.s3)
	}
	if err := r.t.ensureBucket(ctx, r.o.Bucket); err != nil {
		return fail(err)
	}
	codeURL := r.url(CodeDirName(r.o.Code))
	st, err := r.t.obs.Copy(ctx, r.o.Code, codeURL, true)
	if err != nil {
		return fail(fmt.Errorf("uploading the code dir %s: %w", r.o.Code, err))
	}
	r.logf("uploaded %s to %s (%d files, %d bytes)", r.o.Code, codeURL, st.Files, st.Bytes)
	dataURL := r.o.DataURL
	if r.o.Data != "" {
		dataURL = r.url("data")
		st, err := r.t.obs.Copy(ctx, r.o.Data, dataURL, true)
		if err != nil {
			return fail(fmt.Errorf("uploading the data dir %s: %w", r.o.Data, err))
		}
		r.logf("uploaded %s to %s (%d files, %d bytes)", r.o.Data, dataURL, st.Files, st.Bytes)
	}
	image, err := r.ensureImage(ctx)
	if err != nil {
		return fail(err)
	}
	spec := api.JobSpec{
		Name: r.o.Name, Image: image, Command: r.o.Command, Nodes: r.o.Nodes,
		AppURL: codeURL, DataURL: dataURL, TrainURL: r.url("output"),
		Env: r.o.Env, Timeout: api.Duration(r.o.Timeout),
	}
	// Not canceled midway: a job the emulator accepted must be known, to
	// be stopped.
	if r.job, err = r.t.client.SubmitJob(context.WithoutCancel(ctx), spec); err != nil {
		return fail(fmt.Errorf("submitting the job: %w", err))
	}
	r.logf("submitted job %s (%s, %d nodes, image %s)", r.job.ID, r.job.Spec.Name, r.job.Spec.Nodes, image)
	out := r.o.Stdout
	err = r.t.client.JobLogs(ctx, r.job.ID, -1, true, func(l api.LogLine) error {
		_, err := fmt.Fprintf(out, "[task %d] %s\n", l.Task, l.Text)
		return err
	})
	if err != nil && ctx.Err() == nil {
		r.logf("following the logs: %v", err)
	}
	j, err := r.waitFinal(ctx, 0)
	if err != nil {
		return fail(err)
	}
	r.job = j
	r.notePull(j)
	if j.Reason != "" {
		r.logf("job %s %s: %s", j.ID, j.Status, j.Reason)
	} else {
		r.logf("job %s %s", j.ID, j.Status)
	}
	res := Result{Job: j, ExitCode: exitCode(j)}
	if j.Status == api.StatusAuditFailed {
		fmt.Fprintf(r.o.Stderr, "audit of %s failed:\n", image)
		for _, a := range j.Audit {
			fmt.Fprintf(r.o.Stderr, "  %s\n", a)
		}
		if j.Reason != "" && len(j.Audit) == 0 {
			fmt.Fprintf(r.o.Stderr, "  %s\n", j.Reason)
		}
	}
	var errs []error
	if r.o.Output != "" && j.Status != api.StatusAuditFailed {
		if err := r.download(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	if r.o.JUnit != "" {
		if err := r.writeJUnit(ctx, j); err != nil {
			errs = append(errs, fmt.Errorf("writing the JUnit report: %w", err))
		}
	}
	if res.ExitCode == 0 && len(errs) > 0 {
		res.ExitCode = ExitError
	}
	if res.ExitCode != 0 {
		errs = append([]error{jobError(j)}, errs...)
	}
	return res, errors.Join(errs...)
}

// download copies the job's output dir to Options.Output.
func (r *run) download(ctx context.Context) error {
	if err := os.MkdirAll(r.o.Output, 0o755); err != nil {
		return err
	}
	st, err := r.t.obs.Copy(ctx, r.url("output"), r.o.Output, true)
	if err != nil && !obsclient.IsNotFound(err) {
		return fmt.Errorf("downloading the output dir to %s: %w", r.o.Output, err)
	}
	r.logf("downloaded %s to %s (%d files, %d bytes)", r.url("output"), r.o.Output, st.Files, st.Bytes)
	return nil
}

// waitFinal polls the job until it is final; limit 0 waits as long as ctx.
func (r *run) waitFinal(ctx context.Context, limit time.Duration) (*api.Job, error) {
	if limit > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, limit)
		defer cancel()
	}
	for {
		j, err := r.t.client.Job(ctx, r.job.ID)
		if err != nil {
			return nil, fmt.Errorf("job %s: %w", r.job.ID, err)
		}
		if j.Status.Final() {
			return j, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("job %s still %s: %w", j.ID, j.Status, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// exitCode maps a final job to the run's exit code, as `job submit
// --follow` does.
func exitCode(j *api.Job) int { return api.JobExitCode(j) }

func jobError(j *api.Job) error {
	msg := fmt.Sprintf("job %s %s", j.ID, j.Status)
	if j.Reason != "" {
		msg += ": " + j.Reason
	}
	return errors.New(msg)
}

// teardown stops the job when it is not final, then closes the target. It
// runs on a context of its own, so a canceled run is still cleaned up.
func (r *run) teardown() error {
	if r.t == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var errs []error
	if r.job != nil && !r.job.Status.Final() {
		r.logf("stopping job %s", r.job.ID)
		if _, err := r.t.client.StopJob(ctx, r.job.ID); err != nil {
			errs = append(errs, fmt.Errorf("stopping job %s: %w", r.job.ID, err))
		}
		j, err := r.waitFinal(ctx, 2*time.Minute)
		if err != nil {
			errs = append(errs, err)
		} else {
			r.job = j
			r.notePull(j)
			r.logf("job %s %s", j.ID, j.Status)
		}
	}
	if err := r.t.close(ctx, r.pulls); err != nil {
		errs = append(errs, err)
	}
	if r.t.emu != nil {
		r.logf("stopped the throwaway emulator and removed its temp dir")
	}
	return errors.Join(errs...)
}

// notePull records the engine reference the job's image was pulled as,
// for a throwaway emulator to remove.
func (r *run) notePull(j *api.Job) {
	if j.ImageRepo != "" && j.ImageDigest != "" && !j.Started.IsZero() {
		r.pulls = append(r.pulls, r.t.engineRegistry+"/"+j.ImageRepo+"@"+j.ImageDigest)
	}
}
