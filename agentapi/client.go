package agentapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// Client talks to an agent over its unix socket.
type Client struct {
	http   *http.Client
	socket string
}

// NewClient returns a client for the agent socket at path.
func NewClient(socket string) *Client {
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", socket)
	}}
	return &Client{http: &http.Client{Transport: tr, Timeout: 10 * time.Minute}, socket: socket}
}

// Close releases idle connections.
func (c *Client) Close() { c.http.CloseIdleConnections() }

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://agent"+path, body)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("agent socket %s: %w", c.socket, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		e := &Error{}
		if json.Unmarshal(raw, e) != nil || e.Message == "" {
			return fmt.Errorf("agent %s %s: HTTP %d: %s", method, path, resp.StatusCode, bytes.TrimSpace(raw))
		}
		return e
	}
	if out != nil {
		return json.Unmarshal(raw, out)
	}
	return nil
}

// Status returns the agent's state.
func (c *Client) Status(ctx context.Context) (*Status, error) {
	var s Status
	return &s, c.do(ctx, http.MethodGet, PathStatus, nil, &s)
}

// Stage downloads and verifies a signed release.
func (c *Client) Stage(ctx context.Context, releaseJSON []byte) (*Installation, error) {
	var i Installation
	return &i, c.do(ctx, http.MethodPost, PathStage, StageRequest{Release: releaseJSON}, &i)
}

// Upgrade performs a handover upgrade to a staged version now.
func (c *Client) Upgrade(ctx context.Context, req UpgradeRequest) (*UpgradeRecord, error) {
	var r UpgradeRecord
	return &r, c.do(ctx, http.MethodPost, PathUpgrade, req, &r)
}

// Rollback undoes the current upgrade.
func (c *Client) Rollback(ctx context.Context, req RollbackRequest) (*UpgradeRecord, error) {
	var r UpgradeRecord
	return &r, c.do(ctx, http.MethodPost, PathRollback, req, &r)
}

// Finalize makes a completed upgrade permanent.
func (c *Client) Finalize(ctx context.Context) (*UpgradeRecord, error) {
	var r UpgradeRecord
	return &r, c.do(ctx, http.MethodPost, PathFinalize, struct{}{}, &r)
}

// SetDistribution starts or stops ledger distribution.
func (c *Client) SetDistribution(ctx context.Context, running bool) (*Status, error) {
	var s Status
	return &s, c.do(ctx, http.MethodPost, PathDistribution, DistributionRequest{Running: running}, &s)
}

// Rollout installs a staged non-enclave release on this host.
func (c *Client) Rollout(ctx context.Context, version string) (*Installation, error) {
	var i Installation
	return &i, c.do(ctx, http.MethodPost, PathRollout, RolloutRequest{Version: version}, &i)
}
