package nodeapi

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/teeup/teeup/attest"
	"github.com/teeup/teeup/remoteadmin"
)

// maxResponse bounds a response body.
const maxResponse = 64 << 20

// caller performs JSON requests against a base URL.
type caller struct {
	base string
	http *http.Client
	what string
	// node, if not 0, is the node addressed: requests name it (a node of
	// another id refuses them) and an answer from another node is refused.
	node uint64
}

func (c *caller) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("%s %s: encode request: %w", method, path, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
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
		return fmt.Errorf("%s: %w: node %s answered, node %d was addressed", c.what, remoteadmin.ErrWrongNode, got, c.node)
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return fmt.Errorf("%s %s: read response: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		apiErr := &Error{}
		if json.Unmarshal(raw, apiErr) != nil || apiErr.Message == "" {
			return &Error{Code: CodeInternal, Message: fmt.Sprintf("%s %s: HTTP %d: %s", method, path, resp.StatusCode, bytes.TrimSpace(raw))}
		}
		return apiErr
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("%s %s: decode response: %w", method, path, err)
	}
	return nil
}

// IsCode reports whether err is an API error with the given code.
func IsCode(err error, code string) bool {
	var e *Error
	return errors.As(err, &e) && e.Code == code
}

// TxCode returns the ledger result code of a transaction rejection carried
// by err (an *Error with CodeRejected and a TxCode), or "".
func TxCode(err error) string {
	var e *Error
	if errors.As(err, &e) && e.Code == CodeRejected {
		return e.TxCode
	}
	return ""
}

// reads are the queries both the client API and the admin API answer.
type reads struct{ c caller }

// TxStatus returns the state of a transaction by id (hex).
func (r *reads) TxStatus(ctx context.Context, id string) (*TxStatus, error) {
	var s TxStatus
	if err := r.c.do(ctx, http.MethodGet, PathTx+"/"+id, nil, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// Account returns an account's committed balance and nonce.
func (r *reads) Account(ctx context.Context, address string) (*Account, error) {
	var a Account
	if err := r.c.do(ctx, http.MethodGet, PathAccounts+"/"+address, nil, &a); err != nil {
		return nil, err
	}
	return &a, nil
}

// Head returns the newest committed block's height and hash.
func (r *reads) Head(ctx context.Context) (*Head, error) {
	var h Head
	if err := r.c.do(ctx, http.MethodGet, PathHead, nil, &h); err != nil {
		return nil, err
	}
	return &h, nil
}

// Block returns a committed block, including its raw encoding.
func (r *reads) Block(ctx context.Context, height uint64) (*Block, error) {
	var b Block
	if err := r.c.do(ctx, http.MethodGet, PathBlocks+"/"+strconv.FormatUint(height, 10), nil, &b); err != nil {
		return nil, err
	}
	return &b, nil
}

// RawBlock returns a block's exact encoding.
func (r *reads) RawBlock(ctx context.Context, height uint64) ([]byte, error) {
	b, err := r.Block(ctx, height)
	if err != nil {
		return nil, err
	}
	raw, err := hex.DecodeString(b.Raw)
	if err != nil {
		return nil, fmt.Errorf("block %d: raw encoding: %w", height, err)
	}
	return raw, nil
}

// Client talks to a node's client API over attested TLS.
type Client struct {
	reads
	stats *connStats
}

// DefaultConns is how many idle connections a Client keeps for reuse when
// ClientOptions.Conns is 0.
const DefaultConns = 16

// ClientOptions tune a Client.
type ClientOptions struct {
	// Conns is how many connections to the node the client keeps open for
	// reuse between requests (default DefaultConns). More concurrent
	// requests than that open further connections, each with its own
	// attested handshake, and close them afterwards; a client that keeps
	// more requests in flight (a load generator) should set it to at
	// least its concurrency.
	Conns int
	// DialContext, if set, opens the TCP connections (for instance from
	// inside another network namespace); the attested TLS handshake runs
	// over what it returns. Default: a net.Dialer with a 3 s timeout.
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
}

// ConnStats counts a Client's connections.
type ConnStats struct {
	// Opened counts connections established (each an attested TLS
	// handshake); Resumed those that resumed an earlier TLS session.
	Opened, Resumed uint64
}

type connStats struct{ opened, resumed atomic.Uint64 }

// NewClient returns a client for the node at addr (host:port). Before any
// request is sent, the TLS handshake verifies the node's quote with v: its
// root and the expected MRENCLAVE.
func NewClient(addr string, v *attest.Verifier) *Client {
	return NewClientWithOptions(addr, v, ClientOptions{})
}

// NewClientWithOptions is NewClient with a tuned connection pool.
func NewClientWithOptions(addr string, v *attest.Verifier, o ClientOptions) *Client {
	conns := o.Conns
	if conns <= 0 {
		conns = DefaultConns
	}
	st := &connStats{}
	tlsConfig := attest.ClientConfig(nil, v)
	dial := o.DialContext
	if dial == nil {
		dial = (&net.Dialer{Timeout: 3 * time.Second}).DialContext
	}
	tr := &http.Transport{
		// The handshake is ours, to count connections and resumptions.
		DialTLSContext: func(ctx context.Context, network, address string) (net.Conn, error) {
			raw, err := dial(ctx, network, address)
			if err != nil {
				return nil, err
			}
			hctx, cancel := context.WithTimeout(ctx, handshakeTimeout)
			defer cancel()
			tc := tls.Client(raw, tlsConfig)
			if err := tc.HandshakeContext(hctx); err != nil {
				raw.Close()
				return nil, err
			}
			st.opened.Add(1)
			if tc.ConnectionState().DidResume {
				st.resumed.Add(1)
			}
			return tc, nil
		},
		ForceAttemptHTTP2:   false,
		MaxIdleConns:        conns,
		MaxIdleConnsPerHost: conns,
		IdleConnTimeout:     30 * time.Second,
	}
	return &Client{
		reads: reads{c: caller{base: "https://" + addr, http: &http.Client{Transport: tr, Timeout: 60 * time.Second}, what: "node " + addr}},
		stats: st,
	}
}

// handshakeTimeout bounds a Client's TLS handshake.
const handshakeTimeout = 10 * time.Second

// Stats returns how many connections the client opened so far.
func (c *Client) Stats() ConnStats {
	return ConnStats{Opened: c.stats.opened.Load(), Resumed: c.stats.resumed.Load()}
}

// Close releases idle connections.
func (c *Client) Close() { c.c.http.CloseIdleConnections() }

// Submit sends an encoded, signed transaction and waits until it is
// committed in a block (the receipt carries the height) or rejected.
func (c *Client) Submit(ctx context.Context, tx []byte) (*Receipt, error) {
	var r Receipt
	if err := c.c.do(ctx, http.MethodPost, PathTx, SubmitRequest{Tx: hex.EncodeToString(tx)}, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// AdminClient talks to a node's admin API: over its unix socket
// (NewAdminClient), or over TCP with mutual TLS as a remote operator
// (DialAdmin).
type AdminClient struct{ reads }

// DialAdmin returns a client of a host's remote admin API (the node's
// admin_listen): every connection verifies that the server is an attested
// node enclave of an expected measurement serving node t.NodeID of chain
// t.ChainID, and authenticates with t.OperatorKey. What the key may do is
// the host's decision (own operators write; the Node Operators Group and
// member operators read).
func DialAdmin(t remoteadmin.Target) (*AdminClient, error) {
	v, err := t.Verifier()
	if err != nil {
		return nil, fmt.Errorf("node %d admin API at %s: %w", t.NodeID, t.Addr, err)
	}
	return DialAdminWith(t, v)
}

// DialAdminWith is DialAdmin with a given verifier of the node's
// attestation (shared by the clients of several hosts).
func DialAdminWith(t remoteadmin.Target, v *attest.Verifier) (*AdminClient, error) {
	tr, err := t.TransportWith(remoteadmin.RoleNode, v)
	if err != nil {
		return nil, fmt.Errorf("node %d admin API at %s: %w", t.NodeID, t.Addr, err)
	}
	what := fmt.Sprintf("node %d admin API at %s", t.NodeID, t.Addr)
	return &AdminClient{reads{c: caller{base: t.BaseURL(), http: &http.Client{Transport: tr, Timeout: 60 * time.Second}, what: what, node: t.NodeID}}}, nil
}

// ExpectNode makes the client address node id: its requests name the node
// (a node of another id refuses them before acting) and an answer from
// another node is an error (remoteadmin.ErrWrongNode). It returns a.
func (a *AdminClient) ExpectNode(id uint64) *AdminClient {
	a.c.node = id
	return a
}

// NewAdminClient returns a client for the admin socket at path.
func NewAdminClient(socket string) *AdminClient {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
	}
	return &AdminClient{reads{c: caller{base: "http://admin", http: &http.Client{Transport: tr, Timeout: 60 * time.Second}, what: "admin socket " + socket}}}
}

// Close releases idle connections.
func (a *AdminClient) Close() { a.c.http.CloseIdleConnections() }

// Status returns the node's status.
func (a *AdminClient) Status(ctx context.Context) (*Status, error) {
	var s Status
	if err := a.c.do(ctx, http.MethodGet, PathStatus, nil, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// SetIngress opens or closes client ingress.
func (a *AdminClient) SetIngress(ctx context.Context, open bool, reason string) (*Status, error) {
	var s Status
	if err := a.c.do(ctx, http.MethodPost, PathIngress, IngressRequest{Open: open, Reason: reason}, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// Halt asks the network to commit no block past height (0 clears) and
// waits until the request is committed.
func (a *AdminClient) Halt(ctx context.Context, height uint64) (*Status, error) {
	var s Status
	if err := a.c.do(ctx, http.MethodPost, PathHalt, HaltRequest{Height: height}, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// Stop asks the node to stop gracefully.
func (a *AdminClient) Stop(ctx context.Context) error {
	return a.c.do(ctx, http.MethodPost, PathStop, struct{}{}, nil)
}

// Submit sends a transaction through the admin path, which works while
// client ingress is closed (operator test payments during an upgrade).
func (a *AdminClient) Submit(ctx context.Context, tx []byte) (*Receipt, error) {
	var r Receipt
	if err := a.c.do(ctx, http.MethodPost, PathAdminTx, SubmitRequest{Tx: hex.EncodeToString(tx)}, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// Get performs a GET on an admin path and decodes the JSON answer into out.
func (a *AdminClient) Get(ctx context.Context, path string, out any) error {
	return a.c.do(ctx, http.MethodGet, path, nil, out)
}

// Post performs a POST on an admin path.
func (a *AdminClient) Post(ctx context.Context, path string, in, out any) error {
	return a.c.do(ctx, http.MethodPost, path, in, out)
}

// Checkpoint asks the node for a Pebble checkpoint of its ledger in dir.
func (a *AdminClient) Checkpoint(ctx context.Context, dir string) error {
	return a.c.do(ctx, http.MethodPost, PathCheckpoint, CheckpointRequest{Dir: dir}, nil)
}

// TransferLeadership asks the node, which must lead, to hand leadership
// to node to (0: the most up-to-date other voter).
func (a *AdminClient) TransferLeadership(ctx context.Context, to uint64) (uint64, error) {
	var out LeadershipResponse
	if err := a.c.do(ctx, http.MethodPost, PathLeadership, LeadershipRequest{To: to}, &out); err != nil {
		return 0, err
	}
	return out.To, nil
}

// AttestPeers makes the node attest every peer afresh.
func (a *AdminClient) AttestPeers(ctx context.Context) ([]PeerAttestation, error) {
	var out []PeerAttestation
	if err := a.c.do(ctx, http.MethodPost, PathAttestPeers, struct{}{}, &out); err != nil {
		return nil, err
	}
	return out, nil
}
