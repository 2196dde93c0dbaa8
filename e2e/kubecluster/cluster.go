// Package kubecluster brings up a real one-node Kubernetes cluster on this
// machine for a test: etcd, kube-apiserver, kube-controller-manager,
// kube-scheduler and the kubelet as processes, containerd with a bridge
// CNI network, and CoreDNS serving cluster DNS on the node's address. The
// Kubernetes binaries come from .ci/k8s-install.sh's cache, the rest from
// Debian packages. Everything it makes (processes, containers, mounts,
// cgroups, links, iptables chain, files) is removed when the test ends.
package kubecluster

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// Version is the Kubernetes release the cluster runs.
const Version = "v1.37.2"

const (
	nodeName    = "malocal-node"
	pauseImage  = "localhost/malocal-pause:1"
	adminToken  = "admin-token"
	clusterName = "malocal-test"
)

// Users with tokens in the cluster: Admin may do anything; the others hold
// no rights until a test grants them.
const (
	UserMalocal = "malocal"
	UserNobody  = "nobody"
)

// Cluster is a running one-node cluster.
type Cluster struct {
	// NodeIP is the node's address: on this machine, reachable from pods.
	NodeIP string
	// Dir holds the cluster's state and logs.
	Dir string
	// Admin is a client with every right.
	Admin kubernetes.Interface

	t      testing.TB
	bin    string
	suffix string
	bridge string
	veth   string
	chain  string
	api    string // https://127.0.0.1:port
	procs  []*proc
	ctrd   *proc
	// made are host paths that the kubelet, containerd or CNI create
	// outside Dir (fixed paths) and that did not exist before Start.
	made    []string
	started time.Time
}

// hostPaths are the fixed paths the node's components write to whatever
// their configuration says.
var hostPaths = []string{"/var/lib/kubelet", "/var/log/pods", "/var/log/containers", "/var/lib/cni", "/run/containerd/runc/k8s.io"}

type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
}

// BinDir is where .ci/k8s-install.sh puts the binaries.
func BinDir() string {
	if d := os.Getenv("MALOCAL_K8S_BIN"); d != "" {
		return d
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".cache", "malocal", "k8s-"+Version)
}

// require fails the test under CI=true, else skips it.
func require(t testing.TB, ok bool, why string) {
	t.Helper()
	if ok {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s (required under CI=true)", why)
	}
	t.Skip(why)
}

// Start brings the cluster up and registers its teardown.
func Start(t testing.TB) *Cluster {
	t.Helper()
	require(t, os.Geteuid() == 0, "a Kubernetes node needs root (cgroups, network links, mounts)")
	bin := BinDir()
	for _, b := range []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "coredns"} {
		_, err := os.Stat(filepath.Join(bin, b))
		require(t, err == nil, fmt.Sprintf("%s is missing from %s: build the cluster's binaries with .ci/k8s-install.sh", b, bin))
	}
	for _, tool := range []string{"etcd", "containerd", "ctr", "runc", "ip", "iptables", "conntrack"} {
		_, err := exec.LookPath(tool)
		require(t, err == nil, tool+" is missing: apt-get install etcd-server containerd containernetworking-plugins conntrack iproute2 iptables")
	}
	_, err := os.Stat("/usr/lib/cni/bridge")
	require(t, err == nil, "the CNI plugins are missing: apt-get install containernetworking-plugins")

	// One cluster at a time on a machine: the kubelet and containerd write
	// to fixed host paths and cgroups, which a second node would share.
	unlock, err := lockMachine(t)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(unlock) // runs after the teardown registered below

	// A short path: containerd's sockets must fit in sun_path.
	dir, err := os.MkdirTemp("", "mk8s-")
	if err != nil {
		t.Fatal(err)
	}
	n := 10 + rand.IntN(240)
	c := &Cluster{t: t, bin: bin, Dir: dir, suffix: strconv.Itoa(n),
		NodeIP: fmt.Sprintf("10.213.%d.2", n), bridge: fmt.Sprintf("mk8sbr%d", n), veth: fmt.Sprintf("mk8sv%d", n),
		chain: fmt.Sprintf("MALOCAL-K8S-%d", n)}
	c.started = time.Now()
	for _, p := range hostPaths {
		if _, err := os.Lstat(p); os.IsNotExist(err) {
			c.made = append(c.made, p)
		}
	}
	t.Cleanup(c.teardown)
	if err := c.start(n); err != nil {
		t.Fatalf("starting the Kubernetes cluster: %v\n%s", err, c.logTails())
	}
	return c
}

// lockMachine takes the machine-wide lock of test clusters, waiting while
// another test process holds it.
func lockMachine(t testing.TB) (func(), error) {
	p := filepath.Join(os.TempDir(), "malocal-kubecluster.lock")
	f, err := os.OpenFile(p, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening the test clusters' lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Logf("another test cluster runs on this machine; waiting for it (%s)", p)
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
			f.Close()
			return nil, fmt.Errorf("locking %s: %w", p, err)
		}
	}
	return func() { f.Close() }, nil
}

func (c *Cluster) path(p ...string) string { return filepath.Join(append([]string{c.Dir}, p...)...) }

func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// FreePort is a free TCP port on the node's address.
func (c *Cluster) FreePort() int {
	l, err := net.Listen("tcp", c.NodeIP+":0")
	if err != nil {
		c.t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return nil
}

func (c *Cluster) start(n int) error {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	for _, d := range []string{"logs", "etcd", "kubelet", "kubelet-pki", "pod-logs", "cni", "cni-ipam", "containerd/root", "containerd/state", "certs.d"} {
		if err := os.MkdirAll(c.path(d), 0o700); err != nil {
			return err
		}
	}
	// The node's address: one end of a veth pair of our own.
	if err := run("ip", "link", "add", c.veth, "type", "veth", "peer", "name", c.veth+"p"); err != nil {
		return err
	}
	for _, args := range [][]string{
		{"addr", "add", c.NodeIP + "/24", "dev", c.veth},
		{"link", "set", c.veth, "up"},
		{"link", "set", c.veth + "p", "up"},
	} {
		if err := run("ip", args...); err != nil {
			return err
		}
	}
	// Docker's FORWARD policy drops bridged traffic: let the pods' bridge through.
	for _, args := range [][]string{
		{"-N", c.chain},
		{"-A", c.chain, "-i", c.bridge, "-j", "ACCEPT"},
		{"-A", c.chain, "-o", c.bridge, "-j", "ACCEPT"},
		{"-I", "FORWARD", "1", "-j", c.chain},
	} {
		if err := run("iptables", args...); err != nil {
			return err
		}
	}

	p, err := newPKI(c.path("pki"))
	if err != nil {
		return err
	}
	if err := p.issue("apiserver", "kube-apiserver", nil, []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("10.215.0.1")},
		[]string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"}, true); err != nil {
		return err
	}
	if err := p.issue("apiserver-kubelet-client", "kube-apiserver-kubelet-client", []string{"system:masters"}, nil, nil, false); err != nil {
		return err
	}
	tokens := fmt.Sprintf("%s,admin,admin,\"system:masters\"\nkubelet-token,system:node:%s,kubelet,\"system:nodes\"\n%s-token,%s,%s\n%s-token,%s,%s\n",
		adminToken, nodeName, UserMalocal, UserMalocal, UserMalocal, UserNobody, UserNobody, UserNobody)
	if err := os.WriteFile(c.path("tokens.csv"), []byte(tokens), 0o600); err != nil {
		return err
	}

	// etcd
	etcdPort, peerPort := freePort(), freePort()
	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", etcdPort)
	if err := c.spawn("etcd", "etcd", "--data-dir", c.path("etcd"), "--listen-client-urls", etcdURL, "--advertise-client-urls", etcdURL,
		"--listen-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", peerPort), "--initial-advertise-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", peerPort),
		"--initial-cluster", fmt.Sprintf("default=http://127.0.0.1:%d", peerPort), "--log-level", "warn"); err != nil {
		return err
	}
	if err := waitTCP(ctx, fmt.Sprintf("127.0.0.1:%d", etcdPort)); err != nil {
		return fmt.Errorf("etcd: %w", err)
	}

	// kube-apiserver
	apiPort := freePort()
	c.api = fmt.Sprintf("https://127.0.0.1:%d", apiPort)
	if err := c.spawn("kube-apiserver", filepath.Join(c.bin, "kube-apiserver"),
		"--etcd-servers", etcdURL, "--secure-port", strconv.Itoa(apiPort),
		"--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1", "--endpoint-reconciler-type", "none",
		"--kubelet-preferred-address-types", "InternalIP",
		"--token-auth-file", c.path("tokens.csv"), "--client-ca-file", p.path("ca.crt"),
		"--tls-cert-file", p.path("apiserver.crt"), "--tls-private-key-file", p.path("apiserver.key"),
		"--kubelet-client-certificate", p.path("apiserver-kubelet-client.crt"), "--kubelet-client-key", p.path("apiserver-kubelet-client.key"),
		"--service-account-key-file", p.path("sa.pub"), "--service-account-signing-key-file", p.path("sa.key"),
		"--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
		"--service-cluster-ip-range", "10.215.0.0/16", "--authorization-mode", "Node,RBAC",
		"--allow-privileged=false", "--v=1"); err != nil {
		return err
	}
	if err := c.writeKubeconfig("admin.kubeconfig", adminToken, "default"); err != nil {
		return err
	}
	if err := c.writeKubeconfig("kubelet.kubeconfig", "kubelet-token", "default"); err != nil {
		return err
	}
	rc, err := clientcmd.BuildConfigFromFlags("", c.path("admin.kubeconfig"))
	if err != nil {
		return err
	}
	if c.Admin, err = kubernetes.NewForConfig(rc); err != nil {
		return err
	}
	if err := poll(ctx, "the API server to be ready", func() error {
		_, err := c.Admin.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		return err
	}); err != nil {
		return err
	}

	if err := c.spawn("kube-controller-manager", filepath.Join(c.bin, "kube-controller-manager"),
		"--kubeconfig", c.path("admin.kubeconfig"), "--leader-elect=false", "--bind-address", "127.0.0.1",
		"--secure-port", strconv.Itoa(freePort()), "--service-account-private-key-file", p.path("sa.key"),
		"--root-ca-file", p.path("ca.crt"), "--use-service-account-credentials=false",
		"--cluster-cidr", fmt.Sprintf("10.214.%d.0/24", n), "--service-cluster-ip-range", "10.215.0.0/16", "--v=1"); err != nil {
		return err
	}
	if err := c.spawn("kube-scheduler", filepath.Join(c.bin, "kube-scheduler"),
		"--kubeconfig", c.path("admin.kubeconfig"), "--leader-elect=false", "--bind-address", "127.0.0.1",
		"--secure-port", strconv.Itoa(freePort()), "--v=1"); err != nil {
		return err
	}

	// containerd: its own root, state and socket; a sandbox image of ours.
	if err := c.startContainerd(ctx, n); err != nil {
		return err
	}

	// CoreDNS on the node's address, answering for the cluster's names.
	corefile := fmt.Sprintf(`.:53 {
    bind %s
    errors
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig %s
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }
}
`, c.NodeIP, c.path("admin.kubeconfig"))
	if err := os.WriteFile(c.path("Corefile"), []byte(corefile), 0o600); err != nil {
		return err
	}
	if err := c.spawn("coredns", filepath.Join(c.bin, "coredns"), "-conf", c.path("Corefile")); err != nil {
		return err
	}

	// kubelet
	os.WriteFile(c.path("resolv.conf"), []byte("# no upstream: the test cluster is offline\n"), 0o644)
	kcfg := fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
failSwapOn: false
address: %s
port: %d
readOnlyPort: 0
healthzPort: 0
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: %s}
authorization: {mode: AlwaysAllow}
clusterDNS: [%s]
clusterDomain: cluster.local
resolvConf: %s
containerRuntimeEndpoint: unix://%s
podLogsDirectory: %s
serializeImagePulls: false
evictionHard: {memory.available: "50Mi", nodefs.available: "1%%", imagefs.available: "1%%", nodefs.inodesFree: "1%%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
`, c.NodeIP, freePort(), p.path("ca.crt"), c.NodeIP, c.path("resolv.conf"), c.path("containerd.sock"), c.path("pod-logs"))
	if err := os.WriteFile(c.path("kubelet.yaml"), []byte(kcfg), 0o600); err != nil {
		return err
	}
	if err := c.spawn("kubelet", filepath.Join(c.bin, "kubelet"), "--config", c.path("kubelet.yaml"),
		"--kubeconfig", c.path("kubelet.kubeconfig"), "--root-dir", c.path("kubelet"), "--cert-dir", c.path("kubelet-pki"),
		"--node-ip", c.NodeIP, "--hostname-override", nodeName, "--v=1"); err != nil {
		return err
	}
	if err := poll(ctx, "the node to be Ready", func() error {
		node, err := c.Admin.CoreV1().Nodes().Get(ctx, nodeName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, cond := range node.Status.Conditions {
			if cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue {
				return nil
			}
		}
		return fmt.Errorf("node not Ready: %v", node.Status.Conditions)
	}); err != nil {
		return err
	}
	return poll(ctx, "the default service account", func() error {
		_, err := c.Admin.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
		return err
	})
}

func (c *Cluster) startContainerd(ctx context.Context, n int) error {
	cni := fmt.Sprintf(`{"cniVersion": "0.4.0", "name": "malocal-test", "plugins": [{
  "type": "bridge", "bridge": %q, "isGateway": true, "ipMasq": false, "hairpinMode": true,
  "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.214.%d.0/24"}]], "routes": [{"dst": "0.0.0.0/0"}], "dataDir": %q}
}, {"type": "portmap", "capabilities": {"portMappings": true}}]}`, c.bridge, n, c.path("cni-ipam"))
	if err := os.WriteFile(c.path("cni", "10-malocal.conflist"), []byte(cni), 0o600); err != nil {
		return err
	}
	cfg := fmt.Sprintf(`version = 2
root = %q
state = %q
[grpc]
  address = %q
[ttrpc]
  address = %q
[plugins."io.containerd.internal.v1.opt"]
  path = %q
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %q
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = %q
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = %q
`, c.path("containerd/root"), c.path("containerd/state"), c.path("containerd.sock"), c.path("containerd.sock.ttrpc"),
		c.path("containerd/opt"), pauseImage, c.path("cni"), c.path("certs.d"))
	if err := os.WriteFile(c.path("containerd.toml"), []byte(cfg), 0o600); err != nil {
		return err
	}
	if err := c.spawn("containerd", "containerd", "--config", c.path("containerd.toml")); err != nil {
		return err
	}
	c.ctrd = c.procs[len(c.procs)-1]
	if err := poll(ctx, "containerd", func() error { return c.ctr("version") }); err != nil {
		return err
	}
	tarPath, err := c.buildPause()
	if err != nil {
		return err
	}
	return c.ctr("images", "import", tarPath)
}

// ctr runs ctr against the cluster's containerd, in the CRI namespace.
func (c *Cluster) ctr(args ...string) error {
	return run("ctr", append([]string{"--address", c.path("containerd.sock"), "--namespace", "k8s.io"}, args...)...)
}

// AllowRegistry lets the node pull from a plain-HTTP registry at host:port.
func (c *Cluster) AllowRegistry(hostPort string) {
	c.t.Helper()
	d := c.path("certs.d", hostPort)
	if err := os.MkdirAll(d, 0o700); err != nil {
		c.t.Fatal(err)
	}
	hosts := fmt.Sprintf("server = \"http://%s\"\n\n[host.\"http://%s\"]\n  capabilities = [\"pull\", \"resolve\"]\n  skip_verify = true\n", hostPort, hostPort)
	if err := os.WriteFile(filepath.Join(d, "hosts.toml"), []byte(hosts), 0o600); err != nil {
		c.t.Fatal(err)
	}
}

// buildPause builds the sandbox program and packs it as an image tarball.
func (c *Cluster) buildPause() (string, error) {
	exe := c.path("pause")
	cmd := exec.Command("go", "build", "-o", exe, "github.com/malocal/malocal/e2e/kubecluster/pause")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building the pause program: %v: %s", err, out)
	}
	b, err := os.ReadFile(exe)
	if err != nil {
		return "", err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "pause", Mode: 0o755, Size: int64(len(b)), ModTime: time.Unix(0, 0)})
	tw.Write(b)
	tw.Close()
	data := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
	if err != nil {
		return "", err
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return "", err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return "", err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	cf.Config = v1.Config{Entrypoint: []string{"/pause"}}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return "", err
	}
	ref, err := name.ParseReference(pauseImage)
	if err != nil {
		return "", err
	}
	out := c.path("pause.tar")
	return out, tarball.WriteToFile(out, ref, img)
}

// writeKubeconfig writes a kubeconfig for a token.
func (c *Cluster) writeKubeconfig(file, token, namespace string) error {
	kc := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: %[1]s
  cluster: {server: %[2]q, certificate-authority: %[3]q}
users:
- name: user
  user: {token: %[4]q}
contexts:
- name: %[1]s
  context: {cluster: %[1]s, user: user, namespace: %[5]s}
current-context: %[1]s
`, clusterName, c.api, c.path("pki", "ca.crt"), token, namespace)
	return os.WriteFile(c.path(file), []byte(kc), 0o600)
}

// Kubeconfig writes a kubeconfig for user (UserMalocal or UserNobody)
// and returns its path.
func (c *Cluster) Kubeconfig(user string) string {
	c.t.Helper()
	file := user + ".kubeconfig"
	if err := c.writeKubeconfig(file, user+"-token", "default"); err != nil {
		c.t.Fatal(err)
	}
	return c.path(file)
}

func (c *Cluster) spawn(name, bin string, args ...string) error {
	f, err := os.Create(c.path("logs", name+".log"))
	if err != nil {
		return err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("starting %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); f.Close(); close(p.done) }()
	c.procs = append(c.procs, p)
	return nil
}

func (c *Cluster) logTails() string {
	var b strings.Builder
	for _, p := range c.procs {
		data, _ := os.ReadFile(c.path("logs", p.name+".log"))
		if len(data) > 3000 {
			data = data[len(data)-3000:]
		}
		fmt.Fprintf(&b, "--- %s log (tail) ---\n%s\n", p.name, data)
	}
	return b.String()
}

// LogTails returns the end of every component's log, for a failing test.
func (c *Cluster) LogTails() string { return c.logTails() }

func waitTCP(ctx context.Context, addr string) error {
	return poll(ctx, addr, func() error {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			conn.Close()
		}
		return err
	})
}

func poll(ctx context.Context, what string, fn func() error) error {
	var last error
	for {
		if last = fn(); last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %v", what, last)
		case <-time.After(300 * time.Millisecond):
		}
	}
}
