// Package jobs is malocal's training jobs: validation of what users
// submit, the FIFO queue with capacity, the store of jobs and their
// timestamped status changes, per-task logs on disk, and the Backend seam
// with its Docker implementation. The wire types live in package api.
package jobs

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/malocal/malocal/api"
)

// HostName is task i's hostname on the job's network.
func HostName(j *api.Job, i int) string { return fmt.Sprintf("%s-%d", dnsName(j.Spec.Name), i) }

// ContainerName is task i's container name, unique across jobs.
func ContainerName(j *api.Job, i int) string { return fmt.Sprintf("malocal-%s-%d", j.ID, i) }

// NetworkName is the job's private network.
func NetworkName(j *api.Job) string { return "malocal-" + j.ID }

var nonDNS = regexp.MustCompile(`[^a-z0-9-]+`)

// dnsName turns a job's name into a DNS label.
func dnsName(name string) string {
	n := strings.Trim(nonDNS.ReplaceAllString(strings.ToLower(name), "-"), "-")
	if n == "" {
		n = "job"
	}
	if len(n) > 40 {
		n = strings.TrimRight(n[:40], "-")
	}
	return n
}
