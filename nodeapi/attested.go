package nodeapi

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/teeup/teeup/attest"
	"github.com/teeup/teeup/tee"
	"github.com/teeup/teeup/tee/sim"
)

// ParseMeasurements parses MRENCLAVE values given as hex, each entry
// possibly a comma-separated list.
func ParseMeasurements(values []string) ([]tee.Measurement, error) {
	var out []tee.Measurement
	for _, v := range values {
		for _, p := range strings.Split(v, ",") {
			p = strings.TrimSpace(p)
			if p == "" {
				continue
			}
			m, err := tee.ParseMeasurement(p)
			if err != nil {
				return nil, err
			}
			out = append(out, m)
		}
	}
	return out, nil
}

// DialConfig says how to reach a node's client API and what to expect of
// its attestation.
type DialConfig struct {
	// Addr is the node's client API address (host:port).
	Addr string
	// RootPath is the simulated attestation root certificate to pin.
	RootPath string
	// MREnclaves are the node measurements to accept (hex).
	MREnclaves []string
	// AllowDebug accepts a DEBUG node enclave (development only).
	AllowDebug bool
	// Conns is how many connections the client keeps for reuse (see
	// ClientOptions; default DefaultConns).
	Conns int
	// DialContext, if set, opens the TCP connections (for instance from
	// inside another network namespace); the attested TLS handshake runs
	// over what it returns. Default: a net.Dialer with a 3 s timeout.
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Dial returns a client whose every connection verifies the node's quote
// against the pinned root and the expected measurements.
func Dial(c DialConfig) (*Client, error) {
	if c.Addr == "" || c.RootPath == "" || len(c.MREnclaves) == 0 {
		return nil, errors.New("a node address, an attestation root and at least one expected MRENCLAVE are required")
	}
	pemBytes, err := os.ReadFile(c.RootPath)
	if err != nil {
		return nil, fmt.Errorf("attestation root: %w", err)
	}
	qv, err := sim.NewVerifierFromPEM(pemBytes)
	if err != nil {
		return nil, fmt.Errorf("attestation root %s: %w", c.RootPath, err)
	}
	want, err := ParseMeasurements(c.MREnclaves)
	if err != nil {
		return nil, fmt.Errorf("expected MRENCLAVE: %w", err)
	}
	policy := attest.Exact(want...)
	if c.AllowDebug {
		policy = policy.AllowingDebug()
	}
	return NewClientWithOptions(c.Addr, &attest.Verifier{Quotes: qv, Policy: policy}, ClientOptions{Conns: c.Conns, DialContext: c.DialContext}), nil
}
