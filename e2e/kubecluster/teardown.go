package kubecluster

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// teardown removes everything Start made, in the reverse order: pods
// (so the kubelet tears their networks down), processes by pid, the
// containers' shims, mounts, cgroups, links, the iptables chain, files.
func (c *Cluster) teardown() {
	if c.t.Failed() {
		c.t.Logf("Kubernetes cluster logs:\n%s", c.logTails())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var podLogs []string // the kubelet's log paths of every pod
	if c.Admin != nil && c.running("kubelet") {
		if pods, err := c.Admin.CoreV1().Pods("").List(ctx, metav1.ListOptions{}); err == nil {
			for _, p := range pods.Items {
				podLogs = append(podLogs, filepath.Join("/var/log/pods", p.Namespace+"_"+p.Name+"_"+string(p.UID)))
				links, _ := filepath.Glob(filepath.Join("/var/log/containers", p.Name+"_"+p.Namespace+"_*.log"))
				podLogs = append(podLogs, links...)
			}
		}
		zero := int64(0)
		if nss, err := c.Admin.CoreV1().Namespaces().List(ctx, metav1.ListOptions{}); err == nil {
			for _, ns := range nss.Items {
				c.Admin.CoreV1().Pods(ns.Name).DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: &zero}, metav1.ListOptions{})
			}
		}
		// The kubelet stops the sandboxes of deleted pods.
		poll(ctx, "the pods' sandboxes to stop", func() error {
			out, _ := exec.Command("ctr", "--address", c.path("containerd.sock"), "-n", "k8s.io", "tasks", "ls", "-q").Output()
			if strings.TrimSpace(string(out)) != "" {
				return os.ErrExist
			}
			return nil
		})
	}
	// Everything but containerd, newest first.
	for i := len(c.procs) - 1; i >= 0; i-- {
		if c.procs[i] != c.ctrd {
			c.stop(c.procs[i])
		}
	}
	if c.ctrd != nil {
		out, _ := exec.Command("ctr", "--address", c.path("containerd.sock"), "-n", "k8s.io", "tasks", "ls", "-q").Output()
		for _, id := range strings.Fields(string(out)) {
			c.ctr("tasks", "kill", "-a", "-s", "SIGKILL", id)
			time.Sleep(200 * time.Millisecond)
			c.ctr("tasks", "delete", "-f", id)
		}
		c.stop(c.ctrd)
	}
	// Shims started by our containerd name its address on their command line.
	for _, pid := range pidsWith(c.path("containerd.sock")) {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	unmountUnder(c.Dir)
	removeCgroups()
	exec.Command("ip", "link", "del", c.bridge).Run()
	exec.Command("ip", "link", "del", c.veth).Run()
	exec.Command("iptables", "-D", "FORWARD", "-j", c.chain).Run()
	exec.Command("iptables", "-F", c.chain).Run()
	exec.Command("iptables", "-X", c.chain).Run()
	for _, p := range podLogs {
		os.RemoveAll(p)
	}
	sock := "/var/lib/kubelet/device-plugins/kubelet.sock"
	if fi, err := os.Lstat(sock); err == nil && fi.ModTime().After(c.started) {
		os.Remove(sock)
	}
	for _, p := range c.made {
		os.RemoveAll(p)
	}
	os.RemoveAll(c.Dir)
}

func (c *Cluster) running(name string) bool {
	for _, p := range c.procs {
		if p.name == name {
			select {
			case <-p.done:
				return false
			default:
				return true
			}
		}
	}
	return false
}

// stop ends one process by its pid: SIGTERM, then SIGKILL.
func (c *Cluster) stop(p *proc) {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}

// pidsWith lists processes whose command line contains s.
func pidsWith(s string) []int {
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.Contains(string(b), s) {
			out = append(out, pid)
		}
	}
	return out
}

// unmountUnder lazily unmounts every mount below dir, deepest first.
func unmountUnder(dir string) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return
	}
	defer f.Close()
	var mounts []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && strings.HasPrefix(fields[4], dir+"/") {
			mounts = append(mounts, fields[4])
		}
	}
	sort.Slice(mounts, func(i, j int) bool { return len(mounts[i]) > len(mounts[j]) })
	for _, m := range mounts {
		syscall.Unmount(m, syscall.MNT_DETACH)
	}
}

// removeCgroups removes the kubelet's pod cgroups (kubepods*) in every
// hierarchy, leaves first.
func removeCgroups() {
	roots, _ := filepath.Glob("/sys/fs/cgroup/*/kubepods*")
	more, _ := filepath.Glob("/sys/fs/cgroup/kubepods*")
	roots = append(roots, more...)
	for _, root := range roots {
		var dirs []string
		filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			os.Remove(dirs[i])
		}
	}
}
