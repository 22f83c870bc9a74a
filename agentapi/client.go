package agentapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/teeup/teeup/attest"
	"github.com/teeup/teeup/remoteadmin"
)

// Client talks to an agent: over its unix socket (NewClient), or over TCP
// with mutual TLS as a remote operator (DialRemote).
type Client struct {
	http *http.Client
	base string
	what string
	// node, if not 0, is the host addressed: requests name it (an agent of
	// another node refuses them) and an answer from another is refused.
	node uint64
}

// clientTimeout bounds a request: an upgrade answers when it ends.
const clientTimeout = 10 * time.Minute

// NewClient returns a client for the agent socket at path.
func NewClient(socket string) *Client {
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", socket)
	}}
	return &Client{http: &http.Client{Transport: tr, Timeout: clientTimeout}, base: "http://agent", what: "agent socket " + socket}
}

// DialRemote returns a client of a host's remote agent API (the agent's
// admin_listen): every connection verifies that the server is an attested
// agent enclave of an expected measurement (t.MREnclaves are the agent's)
// serving node t.NodeID of chain t.ChainID, and authenticates with
// t.OperatorKey. Only the host's own operators may act; the Node Operators
// Group and member operators may read the status.
func DialRemote(t remoteadmin.Target) (*Client, error) {
	v, err := t.Verifier()
	if err != nil {
		return nil, fmt.Errorf("agent of node %d at %s: %w", t.NodeID, t.Addr, err)
	}
	return DialRemoteWith(t, v)
}

// DialRemoteWith is DialRemote with a given verifier of the agent's
// attestation (shared by the clients of several hosts).
func DialRemoteWith(t remoteadmin.Target, v *attest.Verifier) (*Client, error) {
	tr, err := t.TransportWith(remoteadmin.RoleAgent, v)
	if err != nil {
		return nil, fmt.Errorf("agent of node %d at %s: %w", t.NodeID, t.Addr, err)
	}
	return &Client{http: &http.Client{Transport: tr, Timeout: clientTimeout}, base: t.BaseURL(),
		what: fmt.Sprintf("agent of node %d at %s", t.NodeID, t.Addr), node: t.NodeID}, nil
}

// ExpectNode makes the client address the agent of node id (see
// nodeapi.AdminClient.ExpectNode). It returns c.
func (c *Client) ExpectNode(id uint64) *Client {
	c.node = id
	return c
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
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return err
	}
	if c.node != 0 {
		req.Header.Set(remoteadmin.HeaderNodeID, strconv.FormatUint(c.node, 10))
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("%s: %w", c.what, err)
	}
	defer resp.Body.Close()
	if got := resp.Header.Get(remoteadmin.HeaderNodeID); c.node != 0 && got != "" && got != strconv.FormatUint(c.node, 10) {
		return fmt.Errorf("%s: %w: the agent of node %s answered, node %d was addressed", c.what, remoteadmin.ErrWrongNode, got, c.node)
	}
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
