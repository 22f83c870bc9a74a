package remoteadmin

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/teeup/teeup/attest"
	"github.com/teeup/teeup/tee"
	"github.com/teeup/teeup/tee/boot"
)

// Target is a host's remote admin API as an operator's client reaches it.
type Target struct {
	// Addr is the server's address (host:port).
	Addr string
	// NodeID and ChainID are the node addressed and its chain: the server
	// must prove it serves exactly them (its quote binds Binding).
	NodeID  uint64
	ChainID string
	// RootPath is the attestation root certificate to pin (an EGo build
	// verifies SGX quotes against Intel's root instead).
	RootPath string
	// MREnclaves are the measurements to accept (hex; each entry may be a
	// comma-separated list): the node's for the node API, the agent's for
	// the agent API.
	MREnclaves []string
	// AllowDebug accepts a DEBUG enclave (development only).
	AllowDebug bool
	// OperatorKey is the operator's ed25519 key the client authenticates
	// with.
	OperatorKey ed25519.PrivateKey
	// DialContext, if set, opens the TCP connections (for instance from
	// another network namespace). Default: a net.Dialer with a 3 s timeout.
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
}

// handshakeTimeout bounds a client's TLS handshake.
const handshakeTimeout = 10 * time.Second

// Verifier returns the verifier of the server's attestation: the pinned
// root and the expected measurements.
func (t Target) Verifier() (*attest.Verifier, error) {
	if t.RootPath == "" || len(t.MREnclaves) == 0 {
		return nil, errors.New("an attestation root and at least one expected MRENCLAVE are required")
	}
	pemBytes, err := os.ReadFile(t.RootPath)
	if err != nil {
		return nil, fmt.Errorf("attestation root: %w", err)
	}
	qv, err := boot.NewQuoteVerifier(pemBytes)
	if err != nil {
		return nil, fmt.Errorf("attestation root %s: %w", t.RootPath, err)
	}
	want, err := parseMeasurements(t.MREnclaves)
	if err != nil {
		return nil, fmt.Errorf("expected MRENCLAVE: %w", err)
	}
	policy := attest.Exact(want...)
	if t.AllowDebug {
		policy = policy.AllowingDebug()
	}
	return &attest.Verifier{Quotes: qv, Policy: policy}, nil
}

// Transport returns an HTTP transport to the role's admin API at t: every
// connection verifies the server (attestation and Binding(role, ChainID,
// NodeID)) and authenticates with the operator key.
func (t Target) Transport(role Role) (*http.Transport, error) {
	v, err := t.Verifier()
	if err != nil {
		return nil, err
	}
	return t.TransportWith(role, v)
}

// TransportWith is Transport with a given server verifier (several
// targets may share one, and its cache of verified certificates).
func (t Target) TransportWith(role Role, v *attest.Verifier) (*http.Transport, error) {
	if t.Addr == "" || t.NodeID == 0 || t.ChainID == "" {
		return nil, errors.New("remote admin: the host's address, its node id and the chain id are required")
	}
	if len(t.OperatorKey) != ed25519.PrivateKeySize {
		return nil, errors.New("remote admin: an operator's ed25519 key is required")
	}
	cfg, err := ClientConfig(t.OperatorKey, v, Binding(role, t.ChainID, t.NodeID))
	if err != nil {
		return nil, err
	}
	dial := t.DialContext
	if dial == nil {
		dial = (&net.Dialer{Timeout: 3 * time.Second}).DialContext
	}
	return &http.Transport{
		DialTLSContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			raw, err := dial(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			hctx, cancel := context.WithTimeout(ctx, handshakeTimeout)
			defer cancel()
			tc := tls.Client(raw, cfg)
			if err := tc.HandshakeContext(hctx); err != nil {
				raw.Close()
				return nil, err // the API client names the host
			}
			return tc, nil
		},
		MaxIdleConns:        2,
		MaxIdleConnsPerHost: 2,
		IdleConnTimeout:     30 * time.Second,
	}, nil
}

// BaseURL is the URL prefix of requests through Transport.
func (t Target) BaseURL() string { return "https://" + t.Addr }

func parseMeasurements(values []string) ([]tee.Measurement, error) {
	var out []tee.Measurement
	for _, v := range values {
		for _, p := range splitComma(v) {
			m, err := tee.ParseMeasurement(p)
			if err != nil {
				return nil, err
			}
			out = append(out, m)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("none given")
	}
	return out, nil
}
