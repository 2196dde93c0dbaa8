// Package api is malocal's REST API under /api/v1: the wire types, the
// server (over a Backend interface, so it imports none of the services) and
// the Go client that the CLI, the web UI's tests and the e2e tests use.
package api

import "time"

// Prefix is the path every API route starts with.
const Prefix = "/api/v1"

// Status is the answer of GET /api/v1/status.
type Status struct {
	Version  string          `json:"version"`
	DataDir  string          `json:"data_dir"`
	PID      int             `json:"pid"`
	Started  time.Time       `json:"started"`
	Services []ServiceStatus `json:"services"`
}

// ServiceStatus is one listener of the emulator.
type ServiceStatus struct {
	Name    string `json:"name"`
	Address string `json:"address"`
	URL     string `json:"url"`
	Ready   bool   `json:"ready"`
	Message string `json:"message,omitempty"`
}

// ErrorBody is the JSON body of every API error.
type ErrorBody struct {
	Code    string   `json:"code"`
	Message string   `json:"message"`
	Audit   []string `json:"audit,omitempty"` // audit_failed: the stored report
}
