package kube

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	authv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// Permission is one verb on one resource that the backend needs in its
// namespace; docs/kubernetes-role.yaml grants them all.
type Permission struct {
	Group, Resource, Subresource, Verb string
}

func (p Permission) String() string {
	r := p.Resource
	if p.Subresource != "" {
		r += "/" + p.Subresource
	}
	if p.Group != "" {
		r += "." + p.Group
	}
	return p.Verb + " " + r
}

// Needed is every permission the backend uses.
var Needed = []Permission{
	{"batch", "jobs", "", "create"}, {"batch", "jobs", "", "get"}, {"batch", "jobs", "", "delete"}, {"batch", "jobs", "", "patch"},
	{"", "services", "", "create"}, {"", "services", "", "delete"},
	{"", "secrets", "", "create"}, {"", "secrets", "", "delete"},
	{"", "pods", "", "list"}, {"", "pods", "log", "get"},
}

// Config says which cluster and namespace to use.
type Config struct {
	Kubeconfig string // empty: $KUBECONFIG or ~/.kube/config
	Namespace  string // empty: the kubeconfig context's, else "default"
}

// Connect opens the cluster, checks that it answers and that the
// credentials may do what the backend needs, and returns a client and the
// namespace.
func Connect(ctx context.Context, cfg Config) (kubernetes.Interface, string, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if cfg.Kubeconfig != "" {
		rules.ExplicitPath = cfg.Kubeconfig
	}
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{})
	rc, err := cc.ClientConfig()
	if err != nil {
		return nil, "", fmt.Errorf("reading the kubeconfig (--kubeconfig %q): %w", cfg.Kubeconfig, err)
	}
	ns := cfg.Namespace
	if ns == "" {
		if ns, _, err = cc.Namespace(); err != nil || ns == "" {
			ns = "default"
		}
	}
	// No client timeout: log streams last as long as their tasks. Calls
	// that wait carry a context instead.
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, "", fmt.Errorf("making a Kubernetes client for %s: %w", rc.Host, err)
	}
	probe := *rc
	probe.Timeout = 15 * time.Second
	pc, err := kubernetes.NewForConfig(&probe)
	if err != nil {
		return nil, "", fmt.Errorf("making a Kubernetes client for %s: %w", rc.Host, err)
	}
	if _, err := pc.Discovery().ServerVersion(); err != nil {
		return nil, "", fmt.Errorf("the Kubernetes cluster at %s does not answer: %w (check --kubeconfig and that the API server is reachable from this machine)", rc.Host, err)
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := CheckAccess(cctx, client, ns); err != nil {
		return nil, "", err
	}
	return client, ns, nil
}

// CheckAccess asks the API server whether the client may do everything in
// Needed in ns, and names whatever is missing.
func CheckAccess(ctx context.Context, client kubernetes.Interface, ns string) error {
	var missing []string
	for _, p := range Needed {
		r, err := client.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authv1.SelfSubjectAccessReview{
			Spec: authv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authv1.ResourceAttributes{
				Namespace: ns, Verb: p.Verb, Group: p.Group, Resource: p.Resource, Subresource: p.Subresource}},
		}, metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("asking the cluster what malocal may do in namespace %s: %w", ns, Explain(err))
		}
		if !r.Status.Allowed {
			missing = append(missing, p.String())
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing Kubernetes permissions in namespace %s: %s (grant them with docs/kubernetes-role.yaml: kubectl -n %s apply -f docs/kubernetes-role.yaml, then bind the Role to malocal's user)",
			ns, strings.Join(missing, ", "), ns)
	}
	return nil
}

// ClusterGPUs counts the nvidia.com/gpu the cluster's nodes offer; when
// nodes may not be listed, it returns -1 (unknown: the scheduler decides).
func ClusterGPUs(ctx context.Context, client kubernetes.Interface) (int, error) {
	nodes, err := client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if apierrors.IsForbidden(err) {
		return -1, nil
	}
	if err != nil {
		return 0, fmt.Errorf("listing the cluster's nodes: %w", Explain(err))
	}
	total := 0
	for _, n := range nodes.Items {
		if q, ok := n.Status.Allocatable[corev1.ResourceName(gpuResource)]; ok {
			total += int(q.Value())
		}
	}
	return total, nil
}

// Instance is the label value that names one emulator's objects: a hash of
// its data dir (a path is not a valid label value).
func Instance(dataDir string) string {
	h := sha256.Sum256([]byte(dataDir))
	return hex.EncodeToString(h[:8])
}

// Explain adds what to do to the API server's refusals.
func Explain(err error) error {
	if err == nil {
		return nil
	}
	var se apierrors.APIStatus
	switch {
	case apierrors.IsForbidden(err):
		return fmt.Errorf("%w (malocal needs: %s; see docs/kubernetes-role.yaml)", err, neededList())
	case apierrors.IsUnauthorized(err):
		return fmt.Errorf("%w (the kubeconfig's credentials were refused)", err)
	case errors.As(err, &se):
		return err
	}
	return err
}

func neededList() string {
	s := make([]string, len(Needed))
	for i, p := range Needed {
		s[i] = p.String()
	}
	return strings.Join(s, ", ")
}
