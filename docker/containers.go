package docker

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// ContainerConfig is the body of POST /containers/create: the subset of
// the engine's fields malocal sets.
type ContainerConfig struct {
	Image        string
	Hostname     string              `json:",omitempty"`
	Domainname   string              `json:",omitempty"`
	User         string              `json:",omitempty"`
	Env          []string            `json:",omitempty"`
	Cmd          []string            `json:",omitempty"`
	Entrypoint   []string            `json:",omitempty"`
	WorkingDir   string              `json:",omitempty"`
	Labels       map[string]string   `json:",omitempty"`
	ExposedPorts map[string]struct{} `json:",omitempty"`
	HostConfig   HostConfig
	// NetworkingConfig attaches the container to its job's network with aliases.
	NetworkingConfig *NetworkingConfig `json:",omitempty"`
}

// HostConfig is the part of ContainerConfig about resources and isolation.
type HostConfig struct {
	NetworkMode    string          `json:",omitempty"`
	NanoCPUs       int64           `json:",omitempty"`
	Memory         int64           `json:",omitempty"`
	ShmSize        int64           `json:",omitempty"`
	DeviceRequests []DeviceRequest `json:",omitempty"`
	ExtraHosts     []string        `json:",omitempty"`
	Init           *bool           `json:",omitempty"`
	SecurityOpt    []string        `json:",omitempty"`
	CapDrop        []string        `json:",omitempty"`
}

// DeviceRequest asks for GPUs by explicit device ID.
type DeviceRequest struct {
	Driver       string
	DeviceIDs    []string
	Capabilities [][]string
}

// NetworkingConfig names the networks a container joins at creation.
type NetworkingConfig struct {
	EndpointsConfig map[string]EndpointSettings
}

// EndpointSettings is one network attachment.
type EndpointSettings struct {
	Aliases []string `json:",omitempty"`
}

// ContainerCreate creates a container and returns its id.
func (c *Client) ContainerCreate(ctx context.Context, name string, cfg ContainerConfig) (string, error) {
	var out struct{ Id string }
	if err := c.call(ctx, http.MethodPost, "/containers/create", url.Values{"name": {name}}, cfg, &out); err != nil {
		return "", fmt.Errorf("creating container %s: %w", name, err)
	}
	return out.Id, nil
}

// ContainerStart starts a created container.
func (c *Client) ContainerStart(ctx context.Context, id string) error {
	if err := c.call(ctx, http.MethodPost, "/containers/"+id+"/start", nil, nil, nil); err != nil {
		return fmt.Errorf("starting container %s: %w", id, err)
	}
	return nil
}

// ContainerStop stops a container: SIGTERM, then SIGKILL after grace.
func (c *Client) ContainerStop(ctx context.Context, id string, grace time.Duration) error {
	q := url.Values{"t": {strconv.Itoa(int(grace.Seconds()))}}
	if err := c.call(ctx, http.MethodPost, "/containers/"+id+"/stop", q, nil, nil); err != nil {
		return fmt.Errorf("stopping container %s: %w", id, err)
	}
	return nil
}

// ContainerRemove removes a container, killing it if it runs.
func (c *Client) ContainerRemove(ctx context.Context, id string) error {
	err := c.call(ctx, http.MethodDelete, "/containers/"+id, url.Values{"force": {"1"}, "v": {"1"}}, nil, nil)
	if err != nil {
		return fmt.Errorf("removing container %s: %w", id, err)
	}
	return nil
}

// ContainerWait blocks until the container stops and returns its exit code.
func (c *Client) ContainerWait(ctx context.Context, id string) (int, error) {
	var out struct {
		StatusCode int
		Error      *struct{ Message string }
	}
	if err := c.call(ctx, http.MethodPost, "/containers/"+id+"/wait", url.Values{"condition": {"not-running"}}, nil, &out); err != nil {
		return -1, fmt.Errorf("waiting for container %s: %w", id, err)
	}
	if out.Error != nil && out.Error.Message != "" {
		return out.StatusCode, fmt.Errorf("waiting for container %s: %s", id, out.Error.Message)
	}
	return out.StatusCode, nil
}

// ContainerState is what malocal reads of a container's inspect.
type ContainerState struct {
	ID    string `json:"Id"`
	Name  string
	State struct {
		Status     string
		Running    bool
		ExitCode   int
		OOMKilled  bool
		Error      string
		StartedAt  time.Time
		FinishedAt time.Time
	}
	Config struct {
		Hostname string
		Labels   map[string]string
	}
	NetworkSettings struct {
		Networks map[string]struct{ IPAddress string }
	}
}

// ContainerInspect returns a container's state.
func (c *Client) ContainerInspect(ctx context.Context, id string) (ContainerState, error) {
	var s ContainerState
	if err := c.call(ctx, http.MethodGet, "/containers/"+id+"/json", nil, nil, &s); err != nil {
		return s, fmt.Errorf("inspecting container %s: %w", id, err)
	}
	return s, nil
}

// ContainerSummary is one entry of a container list.
type ContainerSummary struct {
	ID     string `json:"Id"`
	Names  []string
	State  string
	Labels map[string]string
}

// ContainerList lists all containers (running or not) with every label.
func (c *Client) ContainerList(ctx context.Context, labels ...string) ([]ContainerSummary, error) {
	q := labelFilter(labels...)
	q.Set("all", "1")
	var out []ContainerSummary
	if err := c.call(ctx, http.MethodGet, "/containers/json", q, nil, &out); err != nil {
		return nil, fmt.Errorf("listing containers: %w", err)
	}
	return out, nil
}

// ContainerLogs streams a container's stdout and stderr, demultiplexed,
// into out, from since (zero: from the start), following while it runs.
// It returns when the stream ends (the container stopped) or ctx ends.
func (c *Client) ContainerLogs(ctx context.Context, id string, since time.Time, follow bool, out StreamWriter) error {
	q := url.Values{"stdout": {"1"}, "stderr": {"1"}, "timestamps": {"1"}}
	if follow {
		q.Set("follow", "1")
	}
	if !since.IsZero() {
		q.Set("since", strconv.FormatFloat(float64(since.UnixNano())/1e9, 'f', 9, 64))
	}
	resp, err := c.request(ctx, http.MethodGet, "/containers/"+id+"/logs", q, nil)
	if err != nil {
		return fmt.Errorf("reading logs of %s: %w", id, err)
	}
	defer resp.Body.Close()
	return demux(resp.Body, out)
}

// StreamWriter receives demultiplexed log frames.
type StreamWriter interface {
	WriteFrame(stream Stream, p []byte) error
}

// Stream says where a log frame came from.
type Stream byte

// The multiplexed stream's ids.
const (
	Stdout Stream = 1
	Stderr Stream = 2
)

// demux reads the engine's 8-byte-header framing of non-TTY streams.
func demux(r io.Reader, out StreamWriter) error {
	var hdr [8]byte
	buf := make([]byte, 32<<10)
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			if err == io.EOF {
				return nil
			}
			return fmt.Errorf("reading log frame header: %w", err)
		}
		n := int(uint32(hdr[4])<<24 | uint32(hdr[5])<<16 | uint32(hdr[6])<<8 | uint32(hdr[7]))
		if n > len(buf) {
			buf = make([]byte, n)
		}
		if _, err := io.ReadFull(r, buf[:n]); err != nil {
			return fmt.Errorf("reading log frame: %w", err)
		}
		s := Stream(hdr[0])
		if s != Stderr {
			s = Stdout
		}
		if err := out.WriteFrame(s, buf[:n]); err != nil {
			return err
		}
	}
}
