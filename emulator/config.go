// Package emulator owns the data dir and the life of `malocal up`: it binds
// the listeners of the API, the S3 API and the registry, serves them until
// the context ends, and shuts them down gracefully.
package emulator

import (
	"io"
	"log/slog"
	"net/http"
	"time"
)

// Default listen addresses: loopback only.
const (
	DefaultAPIAddr      = "127.0.0.1:7080"
	DefaultS3Addr       = "127.0.0.1:7081"
	DefaultRegistryAddr = "127.0.0.1:7082"
)

// Config is what `malocal up` needs.
type Config struct {
	DataDir         string
	APIAddr         string
	S3Addr          string
	RegistryAddr    string
	ShutdownTimeout time.Duration
	Version         string
	Logger          *slog.Logger
	// RegistryQuota bounds the registry's disk use in bytes; 0 is unbounded.
	RegistryQuota int64
	// GPUs are the device IDs jobs may use; nil detects them with nvidia-smi.
	GPUs []string
	// CapacityCPUs and CapacityMemory bound what running jobs ask for
	// together; 0 is unbounded.
	CapacityCPUs   float64
	CapacityMemory int64
	// StopGrace is how long a stopped task gets between SIGTERM and SIGKILL.
	StopGrace time.Duration
	// PidsLimit bounds the processes of each job container; 0: no bound
	// (`malocal up` defaults to 4096).
	PidsLimit int64
	// DefaultMemory bounds a job container's memory when its flavor gives
	// none; 0: no bound (`malocal up` defaults to the host's memory).
	DefaultMemory int64
	// Backend is where jobs run: "docker" (default) or "kubernetes".
	Backend string
	// Kubeconfig and Namespace choose the cluster for the kubernetes
	// backend; empty: the kubeconfig's defaults.
	Kubeconfig string
	Namespace  string
	// AdvertiseOBS (URL) and AdvertiseRegistry (host:port) are where the
	// cluster's nodes reach the S3 API and the registry.
	AdvertiseOBS      string
	AdvertiseRegistry string
	// ExternalOBS (URL, with its keys) and ExternalRegistry (host:port)
	// name an existing S3 store and registry that jobs use instead of
	// this emulator's; kubernetes backend only.
	ExternalOBS              string
	ExternalOBSKeys          ExternalKeys
	ExternalRegistry         string
	ExternalRegistryInsecure bool
	// ExternalRegistryUsername and ExternalRegistryPassword log in to
	// ExternalRegistry, for the audit's reads and the pods' pulls.
	ExternalRegistryUsername, ExternalRegistryPassword string
	// PendingLimit is how long a job's pods may wait to be scheduled
	// before the job fails with the scheduler's reason; 0: 5 minutes.
	PendingLimit time.Duration

	// IdleTimeout closes a connection of any listener that sends no
	// request for so long; 0: netguard.DefaultIdleTimeout. MaxConns bounds
	// each listener's open connections; 0: a share of the open-file limit.
	IdleTimeout time.Duration
	MaxConns    int

	// handlers replaces a service's handler by name; tests use it to serve
	// slow requests during shutdown.
	handlers map[string]http.Handler
}

// ExternalKeys sign requests to the external S3 store; they come from the
// environment only, so they never show in a process list.
type ExternalKeys struct {
	AccessKey, SecretKey, Region string
}

func (c *Config) defaults() {
	if c.APIAddr == "" {
		c.APIAddr = DefaultAPIAddr
	}
	if c.S3Addr == "" {
		c.S3Addr = DefaultS3Addr
	}
	if c.RegistryAddr == "" {
		c.RegistryAddr = DefaultRegistryAddr
	}
	if c.ShutdownTimeout <= 0 {
		c.ShutdownTimeout = 10 * time.Second
	}
	if c.StopGrace <= 0 {
		c.StopGrace = 10 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if c.Version == "" {
		c.Version = "dev"
	}
}
