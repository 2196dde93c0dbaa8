package samples

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/malocal/malocal/api"
	"github.com/malocal/malocal/baseimage"
	"github.com/malocal/malocal/emulator"
	"github.com/malocal/malocal/fakeobs/obsclient"
)

// DefaultReplicaNodes is the demo's node count for mnist_replica_kill.py,
// the guide's: the first two containers are parameter servers, the last
// two workers.
const DefaultReplicaNodes = 4

// DefaultDDPNodes is the demo's node count for the PyTorch example.
const DefaultDDPNodes = 2

// DefaultFrom is the base source the demo builds from when the base is
// missing.
const DefaultFrom = "debian:bookworm"

// Engines the demo and install know.
const (
	EngineNumpy   = "numpy"   // the guide's two examples, numpy ports
	EnginePyTorch = "pytorch" // mnist_ddp.py on Debian's python3-torch
)

// CheckEngine says whether engine is one the samples know.
func CheckEngine(engine string) error {
	switch engine {
	case "", EngineNumpy, EnginePyTorch:
		return nil
	}
	return fmt.Errorf("engine %q: want %s (the guide's examples) or %s (mnist_ddp.py with PyTorch)", engine, EngineNumpy, EnginePyTorch)
}

// Example is one of the guide's examples as the demo submits it.
type Example struct {
	Name   string   // job name, e.g. mnist-softmax
	Script string   // Softmax, Replica or DDP
	Nodes  int      // containers
	Args   []string // appended to the guide's run command (none by default)
}

// Examples are the demo's two jobs, run with the guide's exact commands
// (their outputs go to the job's DLS_TRAIN_URL): replicaNodes ≤ 0 means
// DefaultReplicaNodes; replicaArgs are added to the replica's command
// (e.g. --sync_replicas).
func Examples(replicaNodes int, replicaArgs ...string) []Example {
	if replicaNodes <= 0 {
		replicaNodes = DefaultReplicaNodes
	}
	return []Example{
		{Name: "mnist-softmax", Script: Softmax, Nodes: 1},
		{Name: "mnist-replica", Script: Replica, Nodes: replicaNodes, Args: replicaArgs},
	}
}

// DDPExample is the PyTorch example on nodes containers (≤ 0:
// DefaultDDPNodes), args added to its command.
func DDPExample(nodes int, args ...string) Example {
	if nodes <= 0 {
		nodes = DefaultDDPNodes
	}
	return Example{Name: "mnist-ddp", Script: DDP, Nodes: nodes, Args: args}
}

// OutputURL is where an example's job saves model.npz and metrics.json.
func OutputURL(bucket string, ex Example) string {
	return "s3://" + bucket + "/" + OutputPrefix + strings.TrimSuffix(ex.Script, ".py") + "/"
}

// Spec is the job of an example: the guide's run command (plus ex.Args),
// the code dir s3://bucket/new/, the data and output dirs; the script
// finds its output dir in DLS_TRAIN_URL.
func Spec(bucket, image string, ex Example) api.JobSpec {
	out := OutputURL(bucket, ex)
	return api.JobSpec{
		Name:     ex.Name,
		Image:    image,
		Nodes:    ex.Nodes,
		AppURL:   "s3://" + bucket + "/" + CodePrefix,
		DataURL:  "s3://" + bucket + "/" + DataPrefix,
		TrainURL: out,
		LogURL:   "s3://" + bucket + "/" + LogPrefix + strings.TrimSuffix(ex.Script, ".py") + "/",
		Command:  RunCommand(ex.Script, ex.Args...),
		Policy:   api.PolicyAll,
	}
}

// CheckBaseSource says, before anything starts, whether the base can be
// built from source: for debian:SUITE, that mmdebstrap is installed on a
// Debian-family host, with what to do otherwise.
func CheckBaseSource(from string) error {
	if !strings.HasPrefix(from, "debian:") {
		return nil
	}
	hint := "or build the base from something you have: --from docker:REF (a local image with python3 and numpy), " +
		"--from image.tar (docker save output) or --from rootfs.tar (a root filesystem tarball with python3 and python3-numpy)"
	if _, err := os.Stat("/etc/debian_version"); err != nil {
		return fmt.Errorf("the demo's base is built offline with mmdebstrap from the host's apt sources, and this is not a Debian-family host (no /etc/debian_version): %s", hint)
	}
	if _, err := exec.LookPath("mmdebstrap"); err != nil {
		return fmt.Errorf("the demo's base is built offline with mmdebstrap, which is not installed: run `sudo apt-get install mmdebstrap`, %s", hint)
	}
	return nil
}

// EnsureBase builds and registers the base (name:tag) from from unless the
// catalog of dataDir has a current build of it that the registry holds. It
// says whether it built one.
func EnsureBase(ctx context.Context, dataDir, registry, base, from string, include []string, progress io.Writer) (bool, error) {
	repo, tag, ok := strings.Cut(base, ":")
	if !ok {
		return false, fmt.Errorf("base %q: want NAME:TAG", base)
	}
	var auth authn.Authenticator
	if dd, err := emulator.OpenDataDir(dataDir); err == nil {
		if c, err := dd.Credentials(); err == nil {
			auth = CredentialsAuth(c)
		}
	}
	cat := baseimage.OpenCatalog(dataDir)
	cur, err := cat.Current()
	if err != nil {
		return false, err
	}
	for _, r := range cur {
		if r.Ref() != base {
			continue
		}
		ref, err := baseimage.Reference(registry, repo, tag)
		if err != nil {
			return false, err
		}
		if d, err := remote.Head(ref, append(registryAuth(auth), remote.WithContext(ctx))...); err == nil && d.Digest.String() == r.Digest {
			fmt.Fprintf(progress, "base %s@%s is in place\n", base, r.Digest)
			return false, nil
		}
	}
	if err := CheckBaseSource(from); err != nil {
		return false, err
	}
	if !strings.HasPrefix(from, "debian:") {
		include = nil
	}
	fmt.Fprintf(progress, "building the base %s from %s\n", base, from)
	_, err = baseimage.Build(ctx, baseimage.BuildOptions{
		Name: repo, Tag: tag, From: from, Include: include,
		Registry: registry, Auth: auth, Catalog: cat, Progress: progress,
	})
	if errors.Is(err, baseimage.ErrNoMmdebstrap) {
		return false, CheckBaseSource(from)
	}
	return err == nil, err
}

// JobResult is how one example ended.
type JobResult struct {
	Example  string        `json:"example"`
	Script   string        `json:"script"`
	ID       string        `json:"id"`
	Status   api.JobStatus `json:"status"`
	Reason   string        `json:"reason,omitempty"`
	Nodes    int           `json:"nodes"`
	Accuracy float64       `json:"accuracy"`         // from the logs' "test accuracy:" line; -1 when absent
	Metrics  float64       `json:"metrics_accuracy"` // test_accuracy of metrics.json in the outputs; -1 when absent
	Duration time.Duration `json:"duration"`
	Output   string        `json:"output_url"`
	LogURL   string        `json:"log_url"`
	LogDir   string        `json:"log_dir"` // the emulator's copy, data dir/jobs/<id>/
}

// Summary is the demo's result.
type Summary struct {
	Jobs []JobResult `json:"jobs"`
	UI   string      `json:"ui"`
	// Stopped: the demo started the emulator itself and stopped it at the
	// end, so the console is there only after the next `malocal up`.
	Stopped bool          `json:"emulator_stopped"`
	DataDir string        `json:"data_dir"`
	Elapsed time.Duration `json:"elapsed"`
}

// RunOptions are what RunJobs needs.
type RunOptions struct {
	Client   *api.Client
	S3       *obsclient.Client
	DataDir  string // for the log paths in the summary
	Bucket   string
	Image    string
	Examples []Example
	Timeout  time.Duration // per run of all jobs; 0: none
	Progress io.Writer
}

var accuracyRE = regexp.MustCompile(`test accuracy: ([0-9]*\.?[0-9]+)`)

// ParseAccuracy returns the last "test accuracy: X" of text, -1 if none.
func ParseAccuracy(text string) float64 {
	m := accuracyRE.FindAllStringSubmatch(text, -1)
	if len(m) == 0 {
		return -1
	}
	v, err := strconv.ParseFloat(m[len(m)-1][1], 64)
	if err != nil {
		return -1
	}
	return v
}

// RunJobs submits the examples, waits for them with progress lines, and
// returns their results. When ctx ends first, the jobs are stopped (and
// waited for) before it returns ctx's error.
func RunJobs(ctx context.Context, o RunOptions) ([]JobResult, error) {
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	if o.Bucket == "" {
		o.Bucket = DefaultBucket
	}
	if o.Image == "" {
		o.Image = DefaultImage
	}
	pr := &printer{w: o.Progress}
	var ids []string
	var exs []Example
	stopAll := func() {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		for _, id := range ids {
			if _, err := o.Client.StopJob(sctx, id); err == nil {
				pr.printf("stopping %s\n", id)
			}
		}
		for _, id := range ids {
			for sctx.Err() == nil {
				j, err := o.Client.Job(sctx, id)
				if err != nil || j.Status.Final() {
					break
				}
				time.Sleep(300 * time.Millisecond)
			}
		}
	}
	for _, ex := range o.Examples {
		spec := Spec(o.Bucket, o.Image, ex)
		j, err := o.Client.SubmitJob(ctx, spec)
		if err != nil {
			stopAll()
			return nil, fmt.Errorf("submitting %s: %w", ex.Name, err)
		}
		pr.printf("submitted %s: job %s, %d node(s): %s\n", ex.Name, j.ID, ex.Nodes, strings.Join(spec.Command, " "))
		ids = append(ids, j.ID)
		exs = append(exs, ex)
	}
	wctx := ctx
	if o.Timeout > 0 {
		var cancel context.CancelFunc
		wctx, cancel = context.WithTimeout(ctx, o.Timeout)
		defer cancel()
	}
	// Follow each job's log: the step lines feed a progress line every few
	// seconds; the result lines are printed as they come.
	var wg sync.WaitGroup
	fctx, stopFollow := context.WithCancel(wctx)
	defer stopFollow()
	for i, id := range ids {
		wg.Add(1)
		go func(name, id string) {
			defer wg.Done()
			follow(fctx, o.Client, name, id, pr)
		}(exs[i].Name, id)
	}
	final := make([]*api.Job, len(ids))
	last := make([]api.JobStatus, len(ids))
	for {
		done := 0
		for i, id := range ids {
			if final[i] != nil {
				done++
				continue
			}
			j, err := o.Client.Job(wctx, id)
			if err != nil {
				if wctx.Err() != nil {
					break
				}
				return nil, err
			}
			if j.Status != last[i] {
				last[i] = j.Status
				msg := ""
				if j.Reason != "" {
					msg = ": " + j.Reason
				}
				pr.printf("%s (%s): %s%s\n", exs[i].Name, id, j.Status, msg)
			}
			if j.Status.Final() {
				final[i] = j
				done++
			}
		}
		if done == len(ids) {
			break
		}
		if wctx.Err() != nil {
			stopFollow()
			wg.Wait()
			stopAll()
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, fmt.Errorf("the jobs did not finish within %s: stopped them", o.Timeout)
		}
		select {
		case <-wctx.Done():
		case <-time.After(time.Second):
		}
	}
	stopFollow()
	wg.Wait()
	var out []JobResult
	for i, j := range final {
		out = append(out, result(ctx, o, exs[i], j))
	}
	return out, nil
}

// result gathers a finished job's status, accuracy and places.
func result(ctx context.Context, o RunOptions, ex Example, j *api.Job) JobResult {
	spec := Spec(o.Bucket, o.Image, ex)
	r := JobResult{
		Example: ex.Name, Script: ex.Script, ID: j.ID, Status: j.Status, Reason: j.Reason, Nodes: ex.Nodes,
		Accuracy: -1, Metrics: -1, Output: spec.TrainURL, LogURL: spec.LogURL + j.ID + "/",
	}
	if o.DataDir != "" {
		r.LogDir = o.DataDir + "/jobs/" + j.ID + "/"
	}
	switch {
	case !j.Started.IsZero() && !j.Finished.IsZero():
		r.Duration = j.Finished.Sub(j.Started)
	case !j.Finished.IsZero():
		r.Duration = j.Finished.Sub(j.Created)
	}
	var logs strings.Builder
	_ = o.Client.JobLogs(ctx, j.ID, -1, false, func(l api.LogLine) error {
		if strings.Contains(l.Text, "test accuracy:") {
			logs.WriteString(l.Text + "\n")
		}
		return nil
	})
	r.Accuracy = ParseAccuracy(logs.String())
	if o.S3 != nil {
		if u, _, err := obsclient.ParseURL(spec.TrainURL + "metrics.json"); err == nil {
			var b strings.Builder
			if err := o.S3.Cat(ctx, u, &b); err == nil {
				r.Metrics = metricsAccuracy(b.String())
			}
		}
	}
	return r
}

var metricsRE = regexp.MustCompile(`"test_accuracy":\s*([0-9.eE+-]+)`)

func metricsAccuracy(s string) float64 {
	m := metricsRE.FindStringSubmatch(s)
	if m == nil {
		return -1
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return -1
	}
	return v
}

// follow prints a job's progress: its result lines at once, and a
// training step line at most every 5 seconds.
func follow(ctx context.Context, c *api.Client, name, id string, pr *printer) {
	var lastPrint time.Time
	_ = c.JobLogs(ctx, id, -1, true, func(l api.LogLine) error {
		t := l.Text
		switch {
		case strings.Contains(t, "test accuracy:"), strings.Contains(t, "validation cross entropy"),
			strings.Contains(t, "Traceback"), strings.Contains(t, "Error"):
			pr.printf("%s [task %d] %s\n", name, l.Task, t)
		case strings.Contains(t, "step ") && time.Since(lastPrint) >= 5*time.Second:
			pr.printf("%s [task %d] %s\n", name, l.Task, stripStamp(t))
			lastPrint = time.Now()
		}
		return nil
	})
}

// stripStamp drops the replica script's leading "1712345678.123: ".
func stripStamp(s string) string {
	if i := strings.Index(s, ": "); i > 0 && i < 20 {
		if _, err := strconv.ParseFloat(s[:i], 64); err == nil {
			return s[i+2:]
		}
	}
	return s
}

// printer serializes progress lines of several goroutines.
type printer struct {
	mu sync.Mutex
	w  io.Writer
}

func (p *printer) printf(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, format, args...)
}

// WriteSummary prints the demo's summary for people.
func (s *Summary) WriteSummary(w io.Writer) {
	fmt.Fprintln(w)
	title := "the guide's two mnist examples"
	if len(s.Jobs) == 1 && s.Jobs[0].Script == DDP {
		title = "mnist with PyTorch DistributedDataParallel"
	}
	fmt.Fprintln(w, "malocal demo: "+title)
	for _, r := range s.Jobs {
		acc := "-"
		if r.Accuracy >= 0 {
			acc = fmt.Sprintf("%.2f%%", r.Accuracy*100)
		}
		fmt.Fprintf(w, "\n  %s (%s, %d node(s)): %s", r.Example, r.Script, r.Nodes, r.Status)
		if r.Reason != "" {
			fmt.Fprintf(w, " (%s)", r.Reason)
		}
		fmt.Fprintf(w, "\n    test accuracy  %s", acc)
		if r.Metrics >= 0 {
			fmt.Fprintf(w, " (metrics.json: %.4f)", r.Metrics)
		}
		fmt.Fprintf(w, "\n    time           %s\n", r.Duration.Round(100*time.Millisecond))
		fmt.Fprintf(w, "    job            %s (malocal job describe %s)\n", r.ID, r.ID)
		fmt.Fprintf(w, "    outputs        %s (malocal obs ls %s)\n", r.Output, r.Output)
		fmt.Fprintf(w, "    logs           malocal job logs %s; uploaded to %s", r.ID, r.LogURL)
		if r.LogDir != "" {
			fmt.Fprintf(w, "; on disk in %s", r.LogDir)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w)
	switch {
	case s.Stopped:
		fmt.Fprintf(w, "  console         the jobs above stay in the data dir: malocal up --data-dir %s, then malocal ui --open\n", s.DataDir)
	case s.UI != "":
		fmt.Fprintf(w, "  console         %s (malocal ui --open signs the browser in)\n", s.UI)
	}
	if s.DataDir != "" {
		fmt.Fprintf(w, "  data dir        %s\n", s.DataDir)
	}
	fmt.Fprintf(w, "  total time      %s\n", s.Elapsed.Round(time.Second))
}

// Failed returns an error naming the jobs that did not complete.
func (s *Summary) Failed() error {
	var bad []string
	for _, r := range s.Jobs {
		if r.Status != api.StatusCompleted {
			bad = append(bad, fmt.Sprintf("%s %s", r.Example, r.Status))
		}
	}
	if len(bad) == 0 {
		return nil
	}
	return fmt.Errorf("not every example completed: %s (see `malocal job logs ID`)", strings.Join(bad, ", "))
}

// DemoOptions describe a demo run.
type DemoOptions struct {
	Bin     string   // the malocal binary, run as `malocal up` when no emulator runs
	DataDir string   // the emulator's data dir
	UpArgs  []string // flags for that `malocal up`
	// From is the base's source when the base is missing (DefaultFrom),
	// Include its extra Debian packages (BaseInclude).
	From    string
	Include []string
	Base    string // the official base, name:tag
	Data    string // the idx files; default FashionMNIST
	Bucket  string
	Image   string
	// ReplicaNodes is the node count of mnist_replica_kill.py, ReplicaArgs
	// flags added to its command (e.g. --sync_replicas).
	ReplicaNodes int
	ReplicaArgs  []string
	// Engine is EngineNumpy (the guide's two examples, the default) or
	// EnginePyTorch (mnist_ddp.py on DDPNodes containers, DefaultDDPNodes
	// when ≤ 0).
	Engine   string
	DDPNodes int
	Timeout  time.Duration // for the jobs; 0: none
	Progress io.Writer
}

// Demo runs the guide from nothing: it starts an emulator on the data dir
// when none runs (and stops it at the end, also when ctx is canceled),
// builds the base when it is missing, installs the samples, runs both
// examples and returns the summary. What exists is reused.
func Demo(ctx context.Context, o DemoOptions) (*Summary, error) {
	start := time.Now()
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	if o.From == "" {
		o.From = DefaultFrom
	}
	if o.Include == nil {
		o.Include = BaseInclude
	}
	if o.Base == "" {
		o.Base = baseimage.DefaultCPUName + ":" + baseimage.DefaultTag
	}
	if o.Data == "" {
		o.Data = FashionMNIST
	}
	if o.Bucket == "" {
		o.Bucket = DefaultBucket
	}
	if err := CheckEngine(o.Engine); err != nil {
		return nil, err
	}
	if o.Engine == "" {
		o.Engine = EngineNumpy
	}
	if o.Image == "" {
		o.Image = DefaultImage
		if o.Engine == EnginePyTorch {
			o.Image = DefaultTorchImage
		}
	}
	// What can be checked before anything starts.
	if missing := CheckData(o.Data); len(missing) > 0 {
		return nil, DataHint(o.Data, missing)
	}
	if !baseRecorded(o.DataDir, o.Base) {
		if err := CheckBaseSource(o.From); err != nil {
			return nil, err
		}
	}

	rt, token, creds, err := Running(o.DataDir)
	started := err != nil
	if err != nil {
		if o.Bin == "" {
			return nil, err
		}
		// The emulator's output goes to a temp file: `malocal up` refuses a
		// data dir that is not empty and not yet its own.
		lf, err := os.CreateTemp("", "malocal-demo-up-*.log")
		if err != nil {
			return nil, err
		}
		logPath := lf.Name()
		lf.Close()
		fmt.Fprintf(o.Progress, "starting the emulator: malocal up --data-dir %s (output in %s)\n", o.DataDir, logPath)
		em, err := StartEmulator(ctx, o.Bin, o.DataDir, logPath, o.UpArgs...)
		if err != nil {
			return nil, err
		}
		defer func() {
			fmt.Fprintln(o.Progress, "stopping the emulator it started")
			if err := em.Stop(30 * time.Second); err != nil {
				fmt.Fprintf(o.Progress, "%v (its output: %s)\n", err, logPath)
				return
			}
			os.Remove(logPath) // a clean stop: the jobs' logs are in the data dir
		}()
		rt, token, creds = em.Runtime, em.Token, em.Creds
	} else {
		fmt.Fprintf(o.Progress, "using the emulator running on %s (pid %d)\n", o.DataDir, rt.PID)
	}
	client := api.NewClient(rt.API, token)
	s3, err := obsclient.New(obsclient.Config{Endpoint: "http://" + rt.S3, AccessKey: creds.AccessKey, SecretKey: creds.SecretKey, Region: creds.Region})
	if err != nil {
		return nil, err
	}
	if _, err := EnsureBase(ctx, o.DataDir, rt.Registry, o.Base, o.From, o.Include, o.Progress); err != nil {
		return nil, err
	}
	inst, err := Install(ctx, InstallOptions{S3: s3, Bucket: o.Bucket, DataDir: o.Data, Registry: rt.Registry, Auth: CredentialsAuth(creds),
		Base: o.Base, Image: o.Image, Engine: o.Engine, Progress: o.Progress})
	if err != nil {
		return nil, err
	}
	exs := Examples(o.ReplicaNodes, o.ReplicaArgs...)
	if o.Engine == EnginePyTorch {
		exs = []Example{DDPExample(o.DDPNodes)}
	}
	results, err := RunJobs(ctx, RunOptions{
		Client: client, S3: s3, DataDir: o.DataDir, Bucket: o.Bucket, Image: inst.Image,
		Examples: exs, Timeout: o.Timeout, Progress: o.Progress,
	})
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("interrupted: the demo's jobs were stopped: %w", ctx.Err())
		}
		return nil, err
	}
	sum := &Summary{Jobs: results, DataDir: o.DataDir, UI: "http://" + rt.API + "/", Stopped: started}
	if st, err := client.Status(ctx); err == nil {
		for _, sv := range st.Services {
			if sv.Name == "api" && sv.URL != "" {
				sum.UI = sv.URL
			}
		}
	}
	sum.Elapsed = time.Since(start)
	return sum, nil
}

// baseRecorded says whether the catalog of dataDir has a current build of
// base (name:tag).
func baseRecorded(dataDir, base string) bool {
	cur, err := baseimage.OpenCatalog(dataDir).Current()
	if err != nil {
		return false
	}
	for _, r := range cur {
		if r.Ref() == base {
			return true
		}
	}
	return false
}
