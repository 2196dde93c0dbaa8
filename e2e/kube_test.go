package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/malocal/malocal/api"
	"github.com/malocal/malocal/audit"
	"github.com/malocal/malocal/baseimage"
	"github.com/malocal/malocal/e2e/kubecluster"
	"github.com/malocal/malocal/samples"
)

// kubeEnv is a one-node cluster and an emulator whose jobs run on it.
type kubeEnv struct {
	c    *kubecluster.Cluster
	e    *Emulator
	img  string
	args []string // malocal up's flags, for a restart
}

// startKube brings up the cluster, grants malocal's user the Role of
// docs/kubernetes-role.yaml, and starts an emulator with the kubernetes
// backend, listening on the node's address so pods reach it.
func startKube(t *testing.T) *kubeEnv {
	t.Helper()
	if testing.Short() {
		t.Skip("brings up a Kubernetes cluster: not in -short")
	}
	c := kubecluster.Start(t)
	applyRole(t, c)
	s3Port, regPort := c.FreePort(), c.FreePort()
	reg := fmt.Sprintf("%s:%d", c.NodeIP, regPort)
	c.AllowRegistry(reg)
	args := []string{"--backend", "kubernetes", "--kubeconfig", c.Kubeconfig(kubecluster.UserMalocal), "--namespace", "default",
		"--s3-addr", fmt.Sprintf("%s:%d", c.NodeIP, s3Port), "--registry-addr", reg,
		"--advertise-obs", fmt.Sprintf("http://%s:%d", c.NodeIP, s3Port), "--advertise-registry", reg,
		"--pending-limit", "30s", "--stop-grace", "2s"}
	e := Start(t, WithArgs(args...))
	img := e.BusyboxImage(t, "test/busybox", "1")
	e.MakeBucket(t, "code")
	return &kubeEnv{c: c, e: e, img: img, args: args}
}

// applyRole applies the shipped Role and RoleBinding in "default".
func applyRole(t *testing.T, c *kubecluster.Cluster) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "docs", "kubernetes-role.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, doc := range strings.Split(string(data), "\n---\n") {
		var kind struct{ Kind string }
		if err := yaml.Unmarshal([]byte(doc), &kind); err != nil {
			t.Fatal(err)
		}
		switch kind.Kind {
		case "Role":
			var r rbacv1.Role
			if err := yaml.Unmarshal([]byte(doc), &r); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Admin.RbacV1().Roles("default").Create(ctx, &r, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		case "RoleBinding":
			var rb rbacv1.RoleBinding
			if err := yaml.Unmarshal([]byte(doc), &rb); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Admin.RbacV1().RoleBindings("default").Create(ctx, &rb, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		default:
			t.Fatalf("docs/kubernetes-role.yaml: unexpected kind %q", kind.Kind)
		}
	}
}

// assertClusterClean checks that a finished job left no Job, Service or
// pod in the cluster.
func (k *kubeEnv) assertClusterClean(t *testing.T, id string) {
	t.Helper()
	ctx := context.Background()
	sel := metav1.ListOptions{LabelSelector: "malocal.job=" + id}
	deadline := time.Now().Add(60 * time.Second)
	for {
		jl, err1 := k.c.Admin.BatchV1().Jobs("default").List(ctx, sel)
		sl, err2 := k.c.Admin.CoreV1().Services("default").List(ctx, sel)
		pl, err3 := k.c.Admin.CoreV1().Pods("default").List(ctx, sel)
		if err1 == nil && err2 == nil && err3 == nil && len(jl.Items)+len(sl.Items)+len(pl.Items) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("job %s left in the cluster: %d Jobs, %d Services, %d pods (%v %v %v)", id, len(jl.Items), len(sl.Items), len(pl.Items), err1, err2, err3)
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// kubeContractScript is the Docker jobs' contract script, with one change:
// busybox's nslookup ignores the resolver's search path (getaddrinfo, as
// Python and wget use, follows it), so it is given the first search
// domain, as the resolver would try it.
var kubeContractScript = "dom=$(sed -n 's/^search \\([^ ]*\\).*/\\1/p' /etc/resolv.conf)\n" +
	strings.ReplaceAll(contractScript, `nslookup "${hp%:*}"`, `nslookup "${hp%:*}.$dom"`)

func TestKubernetesBackend(t *testing.T) {
	if strings.Count(kubeContractScript, ".$dom\"") != 2 {
		t.Fatal("the contract script no longer looks peers up with nslookup: update kubeContractScript")
	}
	k := startKube(t)
	e := k.e

	for _, n := range []int{1, 4} {
		t.Run(fmt.Sprintf("contract on %d nodes", n), func(t *testing.T) {
			j := submit(t, e, api.JobSpec{Name: "Contract Test", Image: k.img, Nodes: n, AppURL: "s3://code/new/",
				DataURL: "obs://code/data/", TrainURL: "s3://code/out/", Env: map[string]string{"EXTRA": "yes"}, Policy: api.PolicyIndex0,
				Flavor:  api.Flavor{CPUs: 0.1, Memory: 64 << 20},
				Command: []string{"/bin/sh", "-c", kubeContractScript}})
			j = waitFinal(t, e, j.ID, 5*time.Minute)
			logs := logsOf(t, e, j.ID, -1)
			if j.Status != api.StatusCompleted {
				t.Fatalf("status %s (%s)\n%s\n%+v", j.Status, j.Reason, logs, j.Events)
			}
			obj := "malocal-" + j.ID
			var hosts []string
			for i := range n {
				hosts = append(hosts, fmt.Sprintf("%s-%d.%s", obj, i, obj))
			}
			for i := range n {
				for _, want := range []string{
					fmt.Sprintf("%d|task=%d of=%d app=s3://code/new/ data=obs://code/data/ train=s3://code/out/ job=%s batchjob=%s", i, i, n, j.ID, j.ID),
					fmt.Sprintf("%d|instance=%s ip=", i, hosts[i]),
					fmt.Sprintf("hosts=%d vc=%d/%d workers=%s gpus=0 extra=yes", n, i, n, strings.Join(hosts, ",")),
					fmt.Sprintf("%d|s3=http://%s:", i, k.c.NodeIP),
					fmt.Sprintf("region=%s key=MJ", e.Creds.Region), // the job's own key, from its Secret
					fmt.Sprintf("%d|peer%d=%s:2222", i, n-1, hosts[n-1]),
					fmt.Sprintf("%d|resolved0", i), fmt.Sprintf("%d|resolved%d", i, n-1),
					fmt.Sprintf("%d|s3 reachable", i),
				} {
					if !strings.Contains(logs, want) {
						t.Errorf("logs lack %q", want)
					}
				}
			}
			ipLine := regexp.MustCompile(`(?m)^(\d)\|instance=\S+ ip=(\d+\.\d+\.\d+\.\d+) maip=(\S+) `)
			ips := map[string]bool{}
			for _, m := range ipLine.FindAllStringSubmatch(logs, -1) {
				if m[2] != m[3] {
					t.Errorf("task %s: BATCH_TASK_CURRENT_HOST_IP %s but MA_CURRENT_IP %s", m[1], m[2], m[3])
				}
				ips[m[2]] = true
			}
			if len(ips) != n {
				t.Errorf("want %d distinct pod addresses, got %v", n, ips)
			}
			for i := 1; i < n; i++ {
				if !strings.Contains(logs, fmt.Sprintf("0|hello-from-%d", i)) {
					t.Errorf("task 0 did not fetch task %d's greeting over BATCH_CUSTOM%d_HOSTS", i, i)
				}
			}
			for _, tk := range j.Tasks {
				want := "stopped" // the peers, once task 0 decided
				if tk.Index == 0 {
					want = "succeeded"
				}
				if tk.ExitCode == nil || tk.Status != want || tk.Host != hosts[tk.Index] || tk.Finished.IsZero() {
					t.Errorf("task %d: %s exit %v host %s, want %s", tk.Index, tk.Status, tk.ExitCode, tk.Host, want)
				}
			}
			if t.Failed() || testing.Verbose() {
				t.Logf("logs:\n%s", logs)
				for _, ev := range j.Events {
					t.Logf("%s %s %s", ev.Time.Format("15:04:05.000"), ev.Status, ev.Message)
				}
			}
			k.assertClusterClean(t, j.ID)
		})
	}

	t.Run("a failing task fails the job", func(t *testing.T) {
		// Task 1 gives up a few seconds in, so that task 0 has printed
		// its line before it is stopped: the pods start in no set order.
		j := submit(t, e, api.JobSpec{Name: "fails", Image: k.img, Nodes: 2, AppURL: "s3://code/new/",
			Command: []string{`if [ "$DLS_TASK_INDEX" = 1 ]; then sleep 5; echo "task 1 gives up"; exit 3; fi; echo "task 0 waits"; sleep 300`}})
		j = waitFinal(t, e, j.ID, 3*time.Minute)
		logs := logsOf(t, e, j.ID, -1)
		if j.Status != api.StatusFailed || j.Reason != "task 1 exited with code 3" || j.ExitCode == nil || *j.ExitCode != 3 {
			t.Errorf("status %s reason %q exit %v\n%s", j.Status, j.Reason, j.ExitCode, logs)
		}
		if j.Tasks[1].Status != "failed" || j.Tasks[0].Status != "stopped" {
			t.Errorf("tasks: %+v", j.Tasks)
		}
		if !strings.Contains(logs, "1|task 1 gives up") || !strings.Contains(logs, "0|task 0 waits") {
			t.Errorf("logs:\n%s", logs)
		}
		k.assertClusterClean(t, j.ID)
	})

	t.Run("index0: a failed peer does not decide", func(t *testing.T) {
		j := submit(t, e, api.JobSpec{Name: "index0", Image: k.img, Nodes: 2, AppURL: "s3://code/new/", Policy: api.PolicyIndex0,
			Command: []string{`if [ "$DLS_TASK_INDEX" = 1 ]; then exit 1; fi; sleep 4; echo "task 0 done"`}})
		j = waitFinal(t, e, j.ID, 3*time.Minute)
		if j.Status != api.StatusCompleted || j.Tasks[1].Status != "failed" || j.Tasks[0].Status != "succeeded" {
			t.Errorf("status %s (%s), tasks %+v", j.Status, j.Reason, j.Tasks)
		}
		k.assertClusterClean(t, j.ID)
	})

	t.Run("time limit", func(t *testing.T) {
		j := submit(t, e, api.JobSpec{Name: "slow", Image: k.img, Nodes: 2, AppURL: "s3://code/new/",
			Timeout: api.Duration(5 * time.Second), Command: []string{"sleep 300"}})
		j = waitFinal(t, e, j.ID, 3*time.Minute)
		if j.Status != api.StatusTimeout || j.ExitCode == nil || *j.ExitCode != 124 {
			t.Errorf("status %s (%s) exit %v", j.Status, j.Reason, j.ExitCode)
		}
		k.assertClusterClean(t, j.ID)
	})

	t.Run("stop", func(t *testing.T) {
		j := submit(t, e, api.JobSpec{Name: "long", Image: k.img, Nodes: 2, AppURL: "s3://code/new/",
			Command: []string{`echo "task $DLS_TASK_INDEX up"; sleep 600`}})
		deadline := time.Now().Add(3 * time.Minute)
		for !strings.Contains(logsOf(t, e, j.ID, -1), "1|task 1 up") {
			if time.Now().After(deadline) {
				t.Fatalf("the tasks did not start: %s", logsOf(t, e, j.ID, -1))
			}
			time.Sleep(300 * time.Millisecond)
		}
		if _, err := e.Client().StopJob(context.Background(), j.ID); err != nil {
			t.Fatal(err)
		}
		j = waitFinal(t, e, j.ID, 2*time.Minute)
		if j.Status != api.StatusCanceled {
			t.Errorf("status %s (%s)", j.Status, j.Reason)
		}
		for _, tk := range j.Tasks {
			if tk.Status != "stopped" {
				t.Errorf("task %d: %s", tk.Index, tk.Status)
			}
		}
		// The logs were streamed while the pods ran: they outlive them.
		if logs := logsOf(t, e, j.ID, -1); !strings.Contains(logs, "0|task 0 up") {
			t.Errorf("logs after the pods are gone:\n%s", logs)
		}
		k.assertClusterClean(t, j.ID)
	})

	t.Run("an image the nodes cannot pull", func(t *testing.T) {
		// The registry's loopback name is not reachable from the node.
		hosts := filepath.Join(k.c.Dir, "certs.d", e.Registry, "hosts.toml")
		os.Rename(hosts, hosts+".off")
		defer os.Rename(hosts+".off", hosts)
		// A new digest: the node has the other test image already.
		base, err := BusyboxV1Image()
		if err != nil {
			t.Fatal(err)
		}
		img, err := mutate.AppendLayers(base, fileLayer("home/work/app/README", "never pulled\n"))
		if err != nil {
			t.Fatal(err)
		}
		e.push(t, "test/unpullable:1", img)
		j := submit(t, e, api.JobSpec{Name: "unpullable", Image: "test/unpullable:1", Nodes: 1, AppURL: "s3://code/new/", Command: []string{"true"}})
		j = waitFinal(t, e, j.ID, 3*time.Minute)
		t.Logf("reason: %s", j.Reason)
		if j.Status != api.StatusFailed || !strings.Contains(j.Reason, "cannot pull image") || !strings.Contains(j.Reason, "--advertise-registry") {
			t.Errorf("status %s reason %q", j.Status, j.Reason)
		}
		k.assertClusterClean(t, j.ID)
	})

	t.Run("insufficient resources: the scheduler's reason", func(t *testing.T) {
		j := submit(t, e, api.JobSpec{Name: "huge", Image: k.img, Nodes: 1, AppURL: "s3://code/new/", Command: []string{"true"},
			Flavor: api.Flavor{CPUs: 512}})
		j = waitFinal(t, e, j.ID, 4*time.Minute)
		t.Logf("reason: %s", j.Reason)
		if j.Status != api.StatusFailed || !strings.Contains(j.Reason, "could not schedule") || !strings.Contains(j.Reason, "Insufficient cpu") {
			t.Errorf("status %s reason %q", j.Status, j.Reason)
		}
		k.assertClusterClean(t, j.ID)
	})

	t.Run("restart re-attaches", func(t *testing.T) {
		j := submit(t, e, api.JobSpec{Name: "survivor", Image: k.img, Nodes: 2, AppURL: "s3://code/new/",
			Command: []string{`i=0; while [ $i -lt 20 ]; do echo "tick $i"; i=$((i+1)); sleep 1; done`}})
		waitStatus(t, e, j.ID, api.StatusRunning, 2*time.Minute)
		deadline := time.Now().Add(2 * time.Minute)
		for !strings.Contains(logsOf(t, e, j.ID, 1), "tick 2") {
			if time.Now().After(deadline) {
				t.Fatal("no ticks")
			}
			time.Sleep(300 * time.Millisecond)
		}
		// A graceful stop detaches at once: the pods go on without malocal.
		start := time.Now()
		if code := e.Stop(); code != 0 {
			t.Fatalf("emulator stop: exit %d", code)
		}
		if d := time.Since(start); d > 15*time.Second {
			t.Errorf("the emulator took %s to stop with a job running", d)
		}
		e = e.Restart(WithArgs(k.args...))
		k.e = e
		j = waitFinal(t, e, j.ID, 3*time.Minute)
		logs := logsOf(t, e, j.ID, 1)
		if j.Status != api.StatusCompleted || !strings.Contains(logs, "tick 19") {
			t.Errorf("status %s (%s)\n%s", j.Status, j.Reason, logs)
		}
		if c := strings.Count(logs, "|tick 1\n"); c != 1 {
			t.Errorf("tick 1 stored %d times after the re-attach", c)
		}
		k.assertClusterClean(t, j.ID)
	})

	t.Run("keep: a failed job's objects stay, suspended", func(t *testing.T) {
		j := submit(t, e, api.JobSpec{Name: "kept", Image: k.img, Nodes: 2, AppURL: "s3://code/new/", Keep: true,
			Command: []string{`if [ "$DLS_TASK_INDEX" = 1 ]; then exit 5; fi; sleep 300`}})
		j = waitFinal(t, e, j.ID, 3*time.Minute)
		if j.Status != api.StatusFailed || j.Reason != "task 1 exited with code 5" {
			t.Errorf("status %s (%s)", j.Status, j.Reason)
		}
		ctx := context.Background()
		name := "malocal-" + j.ID
		kj, err := k.c.Admin.BatchV1().Jobs("default").Get(ctx, name, metav1.GetOptions{})
		if err != nil || kj.Spec.Suspend == nil || !*kj.Spec.Suspend {
			t.Errorf("the kept Job: %v %+v", err, kj)
		}
		if _, err := k.c.Admin.CoreV1().Services("default").Get(ctx, name, metav1.GetOptions{}); err != nil {
			t.Errorf("the kept Service: %v", err)
		}
		fg := metav1.DeletePropagationForeground
		k.c.Admin.BatchV1().Jobs("default").Delete(ctx, name, metav1.DeleteOptions{PropagationPolicy: &fg})
		k.c.Admin.CoreV1().Services("default").Delete(ctx, name, metav1.DeleteOptions{})
		k.assertClusterClean(t, j.ID)
	})

	t.Run("missing RBAC permissions are named", func(t *testing.T) {
		_, err := StartErr(t, WithArgs("--backend", "kubernetes", "--kubeconfig", k.c.Kubeconfig(kubecluster.UserNobody),
			"--advertise-obs", "http://"+k.c.NodeIP+":1", "--advertise-registry", k.c.NodeIP+":1"))
		t.Logf("start error: %v", firstLine(err))
		if err == nil || !strings.Contains(err.Error(), "missing Kubernetes permissions in namespace default: create jobs.batch") ||
			!strings.Contains(err.Error(), "get pods/log") || !strings.Contains(err.Error(), "docs/kubernetes-role.yaml") {
			t.Errorf("start as a user without rights: %v", err)
		}
	})

	t.Run("unreachable cluster", func(t *testing.T) {
		kc := filepath.Join(t.TempDir(), "kubeconfig")
		os.WriteFile(kc, []byte("apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: \"https://127.0.0.1:1\"}}]\n"+
			"users: [{name: u, user: {token: x}}]\ncontexts: [{name: c, context: {cluster: c, user: u}}]\ncurrent-context: c\n"), 0o600)
		_, err := StartErr(t, WithArgs("--backend", "kubernetes", "--kubeconfig", kc,
			"--advertise-obs", "http://127.0.0.1:1", "--advertise-registry", "127.0.0.1:1"))
		t.Logf("start error: %v", firstLine(err))
		if err == nil || !strings.Contains(err.Error(), "the Kubernetes cluster at https://127.0.0.1:1 does not answer") {
			t.Errorf("start against no cluster: %v", err)
		}
	})
}

// TestKubernetesFlags: the kubernetes backend's flags are checked before
// any cluster is contacted.
func TestKubernetesFlags(t *testing.T) {
	// A store that answers but refuses the keys.
	store := Start(t)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--backend", "nomad"}, `--backend "nomad": use docker or kubernetes`},
		{[]string{"--backend", "kubernetes"}, "--backend kubernetes needs --advertise-obs URL and --advertise-registry HOST:PORT"},
		{[]string{"--backend", "kubernetes", "--advertise-obs", "10.0.0.5:7081", "--advertise-registry", "10.0.0.5:7082"}, `--advertise-obs "10.0.0.5:7081": give a URL`},
		{[]string{"--backend", "kubernetes", "--advertise-obs", "http://10.0.0.5:7081", "--advertise-registry", "http://10.0.0.5:7082"}, `--advertise-registry "http://10.0.0.5:7082": give HOST:PORT`},
		{[]string{"--external-obs", "http://127.0.0.1:1"}, "--external-obs and --external-registry work only with --backend kubernetes"},
		{[]string{"--external-registry", "127.0.0.1:1"}, "--external-obs and --external-registry work only with --backend kubernetes"},
		{[]string{"--backend", "kubernetes", "--external-obs", "http://127.0.0.1:1"}, "needs its keys in the environment: set MALOCAL_EXTERNAL_OBS_ACCESS_KEY and MALOCAL_EXTERNAL_OBS_SECRET_KEY"},
		{[]string{"--backend", "kubernetes", "--external-obs", "http://127.0.0.1:1", "--env", "MALOCAL_EXTERNAL_OBS_ACCESS_KEY=k", "--env", "MALOCAL_EXTERNAL_OBS_SECRET_KEY=s"},
			"--external-obs http://127.0.0.1:1 does not answer"},
		{[]string{"--backend", "kubernetes", "--external-obs", "http://" + store.S3, "--env", "MALOCAL_EXTERNAL_OBS_ACCESS_KEY=" + store.Creds.AccessKey,
			"--env", "MALOCAL_EXTERNAL_OBS_SECRET_KEY=wrong", "--env", "MALOCAL_EXTERNAL_OBS_REGION=" + store.Creds.Region},
			"--external-obs http://" + store.S3 + " refuses the keys in MALOCAL_EXTERNAL_OBS_ACCESS_KEY and MALOCAL_EXTERNAL_OBS_SECRET_KEY"},
		{[]string{"--backend", "kubernetes", "--external-registry", store.S3, "--external-registry-insecure"}, "--external-registry " + store.S3 + ": http://" + store.S3 + "/v2/ answered"},
		{[]string{"--backend", "kubernetes", "--external-registry", "127.0.0.1:1", "--external-registry-insecure"}, "--external-registry 127.0.0.1:1 does not answer at http://127.0.0.1:1/v2/"},
	} {
		// "--env K=V" pairs go to the environment, not to the flags.
		var args, env []string
		for i := 0; i < len(c.args); i++ {
			if c.args[i] == "--env" {
				env = append(env, c.args[i+1])
				i++
				continue
			}
			args = append(args, c.args[i])
		}
		_, err := StartErr(t, WithArgs(args...), WithEnv(env...))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("up %v: %v, want %q", c.args, firstLine(err), c.want)
		}
	}
}

// firstLine is an error's first line (StartErr appends the emulator's output).
func firstLine(err error) string {
	if err == nil {
		return "<nil>"
	}
	l, _, _ := strings.Cut(err.Error(), "\n")
	return l
}

// TestKubernetesMnistReplica runs the guide's distributed mnist example
// (parameter servers and workers over BATCH_CUSTOM*_HOSTS) through
// `malocal demo` on an emulator whose jobs run on the cluster.
func TestKubernetesMnistReplica(t *testing.T) {
	if testing.Short() {
		t.Skip("brings up a Kubernetes cluster: not in -short")
	}
	missing := samples.CheckData(samples.FashionMNIST)
	Require(t, len(missing) == 0, fmt.Sprintf("Fashion-MNIST in %s (apt-get install dataset-fashion-mnist): missing %v", samples.FashionMNIST, missing))
	rootfs := cachedRootfs(t, samples.BaseInclude)
	k := startKube(t)
	cmd := exec.Command(Binary(t), "demo", "-o", "json", "--from", "rootfs:"+rootfs, "--replica-nodes", "4",
		"--replica-arg=--sync_replicas", "--replica-arg=--train_steps=300")
	cmd.Env = append(os.Environ(), "MALOCAL_DATA_DIR="+k.e.DataDir)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { <-ctx.Done(); cmd.Process.Kill() }()
	err := cmd.Wait()
	var sum samples.Summary
	if jerr := json.Unmarshal(out.Bytes(), &sum); err != nil || jerr != nil {
		t.Fatalf("malocal demo: %v %v\n%s\n%s", err, jerr, out.String(), errb.String())
	}
	nodes := map[string]int{"mnist-softmax": 1, "mnist-replica": 4}
	for _, j := range sum.Jobs {
		t.Logf("%s: %s on %d node(s), test accuracy %.4f, %s", j.Example, j.Status, j.Nodes, j.Accuracy, j.Duration.Round(100*time.Millisecond))
		if j.Status != api.StatusCompleted || j.Nodes != nodes[j.Example] || j.Accuracy < 0.80 {
			t.Errorf("%s: %s (%s), %d nodes, accuracy %.4f", j.Example, j.Status, j.Reason, j.Nodes, j.Accuracy)
		}
		if j.Example == "mnist-replica" {
			logs := logsOf(t, k.e, j.ID, -1)
			host := func(i int) string { return "malocal-" + j.ID + "-" + strconv.Itoa(i) + ".malocal-" + j.ID + ":2222" }
			if !strings.Contains(logs, host(0)) || !strings.Contains(logs, host(3)) {
				t.Errorf("the replicas did not read the cluster's hostnames from BATCH_CUSTOM*_HOSTS:\n%s", logs)
			}
		}
	}
	if len(sum.Jobs) != 2 || t.Failed() {
		t.Errorf("demo jobs %d:\n%s", len(sum.Jobs), errb.String())
	}
}

// TestKubernetesExternalStores runs jobs on the cluster against an existing
// S3 store and registry, played by a second emulator that listens on the
// node's address: images are resolved, audited and pulled there, buckets
// are checked there, and the pods and the log upload use its endpoint and
// keys. The first emulator listens on loopback only; the nodes never reach it.
func TestKubernetesExternalStores(t *testing.T) {
	if testing.Short() {
		t.Skip("brings up a Kubernetes cluster: not in -short")
	}
	c := kubecluster.Start(t)
	applyRole(t, c)
	s3Port, regPort := c.FreePort(), c.FreePort()
	extS3 := fmt.Sprintf("http://%s:%d", c.NodeIP, s3Port)
	extReg := fmt.Sprintf("%s:%d", c.NodeIP, regPort)
	c.AllowRegistry(extReg)
	ext := Start(t, WithArgs("--s3-addr", fmt.Sprintf("%s:%d", c.NodeIP, s3Port), "--registry-addr", extReg))
	img := ext.BusyboxImage(t, "test/busybox", "1")
	ext.MakeBucket(t, "code")
	ctx := context.Background()
	if _, err := ext.S3Client().PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("code"), Key: aws.String("new/train.sh"),
		Body: strings.NewReader("echo training\n")}); err != nil {
		t.Fatal(err)
	}

	e := Start(t, WithArgs("--backend", "kubernetes", "--kubeconfig", c.Kubeconfig(kubecluster.UserMalocal), "--namespace", "default",
		"--external-obs", extS3, "--external-registry", extReg, "--external-registry-insecure",
		"--pending-limit", "60s", "--stop-grace", "2s"),
		WithEnv("MALOCAL_EXTERNAL_OBS_ACCESS_KEY="+ext.Creds.AccessKey, "MALOCAL_EXTERNAL_OBS_SECRET_KEY="+ext.Creds.SecretKey,
			"MALOCAL_EXTERNAL_OBS_REGION="+ext.Creds.Region,
			// The external registry asks for a login, as SWR does: the
			// audit reads and the pods pull (an imagePullSecret) with it.
			"MALOCAL_EXTERNAL_REGISTRY_USERNAME="+ext.Creds.RegistryUsername, "MALOCAL_EXTERNAL_REGISTRY_PASSWORD="+ext.Creds.RegistryPassword))
	// The audit runs in the first emulator: it knows the test base.
	recordBusyboxBase(t, e.DataDir)
	if e.Creds.AccessKey == ext.Creds.AccessKey {
		t.Fatal("the two emulators share keys: the test could not tell their stores apart")
	}

	t.Run("a job on the external store and registry", func(t *testing.T) {
		j := submit(t, e, api.JobSpec{Name: "external", Image: img, Nodes: 2, AppURL: "s3://code/new/", LogURL: "s3://code/logs/",
			Flavor: api.Flavor{CPUs: 0.1, Memory: 64 << 20},
			Command: []string{"/bin/sh", "-c", `echo "s3=$AWS_ENDPOINT_URL key=$AWS_ACCESS_KEY_ID region=$AWS_DEFAULT_REGION"
wget -q -O /dev/null "$AWS_ENDPOINT_URL/" 2>&1 | grep -q 403 && echo "s3 reachable"
echo "output of task $DLS_TASK_INDEX"`}})
		j = waitFinal(t, e, j.ID, 5*time.Minute)
		logs := logsOf(t, e, j.ID, -1)
		if j.Status != api.StatusCompleted {
			t.Fatalf("status %s (%s)\n%s\n%+v", j.Status, j.Reason, logs, j.Events)
		}
		for i := range 2 {
			for _, want := range []string{
				fmt.Sprintf("%d|s3=%s key=%s region=%s", i, extS3, ext.Creds.AccessKey, ext.Creds.Region),
				fmt.Sprintf("%d|s3 reachable", i),
			} {
				if !strings.Contains(logs, want) {
					t.Errorf("logs lack %q:\n%s", want, logs)
				}
			}
		}
		// The job's logs were uploaded to the external store.
		var uploaded strings.Builder
		deadline := time.Now().Add(30 * time.Second)
		for !strings.Contains(uploaded.String(), "output of task 1") && time.Now().Before(deadline) {
			uploaded.Reset()
			out, err := ext.S3Client().ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String("code"), Prefix: aws.String("logs/" + j.ID + "/")})
			if err != nil {
				t.Fatal(err)
			}
			for _, o := range out.Contents {
				obj, err := ext.S3Client().GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("code"), Key: o.Key})
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(obj.Body)
				obj.Body.Close()
				uploaded.Write(b)
			}
			time.Sleep(300 * time.Millisecond)
		}
		if !strings.Contains(uploaded.String(), "output of task 0") || !strings.Contains(uploaded.String(), "output of task 1") {
			t.Errorf("the external store holds no task output under s3://code/logs/%s/: %q", j.ID, uploaded.String())
		}
		k := &kubeEnv{c: c, e: e}
		k.assertClusterClean(t, j.ID)
	})

	t.Run("the pods pull from the external registry", func(t *testing.T) {
		j := submit(t, e, api.JobSpec{Name: "pull", Image: img, Nodes: 1, AppURL: "s3://code/new/", Command: []string{"sleep 300"}})
		want := extReg + "/test/busybox@"
		deadline := time.Now().Add(2 * time.Minute)
		for {
			pl, err := c.Admin.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "malocal.job=" + j.ID})
			if err == nil && len(pl.Items) > 0 {
				if got := pl.Items[0].Spec.Containers[0].Image; !strings.HasPrefix(got, want) {
					t.Errorf("pod image %s, want %s…", got, want)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no pod for job %s: %v", j.ID, err)
			}
			time.Sleep(300 * time.Millisecond)
		}
		if _, err := e.Client().StopJob(ctx, j.ID); err != nil {
			t.Fatal(err)
		}
		waitFinal(t, e, j.ID, 2*time.Minute)
	})

	t.Run("buckets are checked in the external store", func(t *testing.T) {
		e.MakeBucket(t, "ours-only")
		_, err := e.Client().SubmitJob(ctx, api.JobSpec{Name: "nobucket", Image: img, AppURL: "s3://ours-only/x/", Command: []string{"true"}})
		if !errors.Is(err, api.ErrInvalid) || !strings.Contains(err.Error(), `bucket "ours-only" does not exist in the external store `+extS3) {
			t.Errorf("submit with a bucket only in our store: %v", err)
		}
	})

	t.Run("an image missing from the external registry", func(t *testing.T) {
		_, err := e.Client().SubmitJob(ctx, api.JobSpec{Name: "missing", Image: "test/nothere:1", AppURL: "s3://code/new/", Command: []string{"true"}})
		if err == nil || !strings.Contains(err.Error(), "push it first") || !strings.Contains(err.Error(), extReg+"/test/nothere:1") {
			t.Errorf("submit of a missing image: %v", err)
		}
	})

	t.Run("an image failing the audit in the external registry", func(t *testing.T) {
		rogue, err := mutate.AppendLayers(empty.Image, fileLayer("bin/sh", "#!fake\n"))
		if err != nil {
			t.Fatal(err)
		}
		ext.push(t, "test/rogue:1", rogue)
		j := submit(t, e, api.JobSpec{Name: "rogue", Image: "test/rogue:1", AppURL: "s3://code/new/", Command: []string{"true"}})
		j = waitFinal(t, e, j.ID, 2*time.Minute)
		if j.Status != api.StatusAuditFailed || !strings.Contains(strings.Join(j.Audit, "\n"), audit.RuleBaseLineage) {
			t.Errorf("job on a rogue image: %s (%s) audit %q", j.Status, j.Reason, j.Audit)
		}
		// Our own registry never held it.
		if imgs, err := e.Client().Images(ctx); err != nil || len(imgs) != 0 {
			t.Errorf("our registry: %v %v", imgs, err)
		}
	})
}

// recordBusyboxBase records the busybox test base in a data dir's base
// catalog, as BusyboxImage does for the emulator it pushes to.
func recordBusyboxBase(t *testing.T, dataDir string) {
	t.Helper()
	base, err := BusyboxV1Image()
	if err != nil {
		t.Fatal(err)
	}
	d, _ := base.Digest()
	cf, _ := base.ConfigFile()
	rec := baseimage.Record{Name: "test/busybox-base", Tag: "1", Digest: d.String(), Source: "test", Created: time.Now().UTC()}
	for _, h := range cf.RootFS.DiffIDs {
		rec.DiffIDs = append(rec.DiffIDs, h.String())
	}
	if _, err := baseimage.OpenCatalog(dataDir).Add(rec); err != nil {
		t.Fatalf("recording the test base: %v", err)
	}
}
