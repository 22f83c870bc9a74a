package remoteadmin

import (
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/teeup/teeup/attest"
)

// Errors a client reports about the server it reached.
var (
	// ErrServerNotAttested: the server's certificate is not an attested
	// enclave's that the client's root and expected measurements accept.
	ErrServerNotAttested = errors.New("the host is not an attested enclave of an expected measurement")
	// ErrWrongNode: the server is a genuine enclave, but it serves
	// another node (or another role or chain) than the one addressed.
	ErrWrongNode = errors.New("the host answers for another node than the one addressed")
)

// ServerConfig returns the TLS 1.3 configuration of a remote admin server
// presenting creds (from NewServerCredentials). It requires a client
// certificate carrying an ed25519 key (ParseOperatorCertificate); which key
// may do what is decided per request (Handler). Session tickets are off:
// every connection is a full handshake in which the client signs its
// transcript afresh.
func ServerConfig(creds *attest.Credentials) *tls.Config {
	return &tls.Config{
		MinVersion:             tls.VersionTLS13,
		Certificates:           []tls.Certificate{creds.Certificate},
		ClientAuth:             tls.RequireAnyClientCert,
		SessionTicketsDisabled: true,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) != 1 {
				return ErrNoOperatorCert
			}
			_, err := ParseOperatorCertificate(raw[0])
			return err
		},
	}
}

// ClientConfig returns the TLS 1.3 configuration of an operator's client:
// it presents key's certificate and accepts only a server whose attested
// certificate server verifies (pinned root, expected measurements) and
// whose quote binds want (Binding of the role, chain and node addressed).
// The check runs inside the handshake, before the client sends its
// certificate or any request. No session is cached: every connection
// verifies the server.
func ClientConfig(key ed25519.PrivateKey, server *attest.Verifier, want [attest.ExtraSize]byte) (*tls.Config, error) {
	if server == nil {
		return nil, errors.New("remote admin client: no verifier for the server")
	}
	cert, err := OperatorCertificate(key)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		// Replaced by VerifyPeerCertificate: attestation, not a CA and a
		// name, authenticates the server.
		InsecureSkipVerify: true,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			return verifyServer(server, raw, want)
		},
	}, nil
}

// verifyServer checks the server's attested certificate and its binding.
func verifyServer(v *attest.Verifier, raw [][]byte, want [attest.ExtraSize]byte) error {
	if len(raw) == 0 {
		return fmt.Errorf("%w: it presented no certificate", ErrServerNotAttested)
	}
	p, err := v.VerifyCertificate(raw[0])
	if err != nil {
		return fmt.Errorf("%w: %w", ErrServerNotAttested, err)
	}
	if p.Extra != want {
		return fmt.Errorf("%w: the enclave (MRENCLAVE %s) is genuine, but its attested admin binding is not the one of the role, chain id and node id addressed", ErrWrongNode, p.Identity.UniqueID.Short())
	}
	return nil
}
