package docker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
)

// ImageInspect reports whether the engine has the image, and its id.
func (c *Client) ImageInspect(ctx context.Context, ref string) (string, error) {
	var out struct{ Id string }
	if err := c.call(ctx, http.MethodGet, "/images/"+ref+"/json", nil, nil, &out); err != nil {
		return "", fmt.Errorf("inspecting image %s: %w", ref, err)
	}
	return out.Id, nil
}

// PullProgress is one line of the engine's pull progress.
type PullProgress struct {
	Status   string
	ID       string `json:"id"`
	Progress string
	Error    string
}

// ImagePull pulls ref ("host:port/repo@sha256:…" or ":tag") into the engine,
// reporting progress to fn (may be nil). An error in the stream fails it.
func (c *Client) ImagePull(ctx context.Context, ref string, fn func(PullProgress)) error {
	resp, err := c.request(ctx, http.MethodPost, "/images/create", url.Values{"fromImage": {ref}}, nil)
	if err != nil {
		return fmt.Errorf("pulling %s: %w", ref, err)
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(resp.Body)
	for {
		var p PullProgress
		if err := dec.Decode(&p); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("pulling %s: reading progress: %w", ref, err)
		}
		if p.Error != "" {
			return fmt.Errorf("pulling %s: %s", ref, p.Error)
		}
		if fn != nil {
			fn(p)
		}
	}
}
