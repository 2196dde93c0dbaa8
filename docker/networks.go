package docker

import (
	"context"
	"fmt"
	"net/http"
)

// NetworkCreate creates a bridge network and returns its id.
func (c *Client) NetworkCreate(ctx context.Context, name string, labels map[string]string) (string, error) {
	body := map[string]any{"Name": name, "Driver": "bridge", "CheckDuplicate": true, "Labels": labels}
	var out struct{ Id string }
	if err := c.call(ctx, http.MethodPost, "/networks/create", nil, body, &out); err != nil {
		return "", fmt.Errorf("creating network %s: %w", name, err)
	}
	return out.Id, nil
}

// Network is what malocal reads of a network's inspect.
type Network struct {
	ID     string `json:"Id"`
	Name   string
	Labels map[string]string
	IPAM   struct {
		Config []struct{ Subnet, Gateway string }
	}
}

// Gateway returns the network's first gateway address.
func (n Network) Gateway() string {
	for _, c := range n.IPAM.Config {
		if c.Gateway != "" {
			return c.Gateway
		}
	}
	return ""
}

// NetworkInspect returns a network.
func (c *Client) NetworkInspect(ctx context.Context, id string) (Network, error) {
	var n Network
	if err := c.call(ctx, http.MethodGet, "/networks/"+id, nil, nil, &n); err != nil {
		return n, fmt.Errorf("inspecting network %s: %w", id, err)
	}
	return n, nil
}

// NetworkRemove removes a network.
func (c *Client) NetworkRemove(ctx context.Context, id string) error {
	if err := c.call(ctx, http.MethodDelete, "/networks/"+id, nil, nil, nil); err != nil {
		return fmt.Errorf("removing network %s: %w", id, err)
	}
	return nil
}

// NetworkList lists networks with every label.
func (c *Client) NetworkList(ctx context.Context, labels ...string) ([]Network, error) {
	var out []Network
	if err := c.call(ctx, http.MethodGet, "/networks", labelFilter(labels...), nil, &out); err != nil {
		return nil, fmt.Errorf("listing networks: %w", err)
	}
	return out, nil
}
