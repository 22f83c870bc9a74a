// Package sim is a software TEE platform with SGX semantics. It offers no
// hardware protection: every secret lives in ordinary files and process
// memory. It exists so that the security logic built on top of it (local
// attestation, quotes, sealing by policy, measurement checks) is real and
// testable without SGX hardware.
//
// A simulated host is a platform directory holding
//
//	secret           32 random bytes: the root of report and seal keys
//	attestation.key  ECDSA P-256 key that signs quotes
//	attestation.crt  its certificate, issued by the simulated root CA
//	root.crt         the simulated root CA certificate verifiers pin
//
// all with mode 0600, in a directory of mode 0700. The root CA (root.key, root.crt) lives in its own
// directory so several platforms can share one root, as all SGX machines
// share Intel's.
package sim

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"time"

	"github.com/teeup/teeup/internal/fsutil"
)

// File names inside CA and platform directories.
const (
	CAKeyFile          = "root.key"
	RootCertFile       = "root.crt"
	SecretFile         = "secret"
	AttestationKeyFile = "attestation.key"
	AttestationCrtFile = "attestation.crt"
)

const secretSize = 32

// CA is the simulated root certificate authority, standing in for the
// hardware vendor's attestation root.
type CA struct {
	key  *ecdsa.PrivateKey
	cert *x509.Certificate
}

// Certificate returns the root certificate verifiers pin.
func (ca *CA) Certificate() *x509.Certificate { return ca.cert }

// InitCA creates a new simulated root CA in dir (mode 0700; an existing
// dir that grants its group or others access is refused). It refuses to
// overwrite an existing CA.
func InitCA(dir string) (*CA, error) {
	if err := fsutil.PrivateDir(dir); err != nil {
		return nil, fmt.Errorf("init CA %s: %w", dir, err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("init CA %s: generate key: %w", dir, err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, fmt.Errorf("init CA %s: %w", dir, err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "teeup simulated attestation root (NO HARDWARE PROTECTION)"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().AddDate(30, 0, 0),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLen:            1,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("init CA %s: create certificate: %w", dir, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("init CA %s: %w", dir, err)
	}
	keyPEM, err := encodeECKey(key)
	if err != nil {
		return nil, fmt.Errorf("init CA %s: %w", dir, err)
	}
	if err := createExclusive(filepath.Join(dir, CAKeyFile), keyPEM); err != nil {
		return nil, fmt.Errorf("init CA %s: %w", dir, err)
	}
	if err := createExclusive(filepath.Join(dir, RootCertFile), encodeCert(der)); err != nil {
		return nil, fmt.Errorf("init CA %s: %w", dir, err)
	}
	return &CA{key: key, cert: cert}, nil
}

// OpenCA loads the simulated root CA in dir.
func OpenCA(dir string) (*CA, error) {
	key, err := readECKey(filepath.Join(dir, CAKeyFile))
	if err != nil {
		return nil, fmt.Errorf("open CA %s: %w", dir, err)
	}
	cert, err := readCert(filepath.Join(dir, RootCertFile))
	if err != nil {
		return nil, fmt.Errorf("open CA %s: %w", dir, err)
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("open CA %s: %s does not belong to %s", dir, CAKeyFile, RootCertFile)
	}
	return &CA{key: key, cert: cert}, nil
}

// OpenOrInitCA opens the CA in dir, creating it when dir holds none.
func OpenOrInitCA(dir string) (*CA, error) {
	if _, err := os.Stat(filepath.Join(dir, CAKeyFile)); errors.Is(err, os.ErrNotExist) {
		return InitCA(dir)
	}
	return OpenCA(dir)
}

// Platform is one simulated host.
type Platform struct {
	dir      string
	secret   []byte
	attKey   *ecdsa.PrivateKey
	attCert  *x509.Certificate
	rootCert *x509.Certificate
	id       [8]byte
}

// InitPlatform creates a platform in dir (mode 0700), certified by ca. It
// refuses to overwrite an existing platform: losing the secret loses every
// sealed key. It refuses an existing dir that grants its group or others
// access (fsutil.ErrNotPrivate): the platform secret is every enclave's
// seal and report key.
func InitPlatform(dir string, ca *CA) (*Platform, error) {
	if err := fsutil.PrivateDir(dir); err != nil {
		return nil, fmt.Errorf("init platform %s: %w", dir, err)
	}
	if _, err := os.Stat(filepath.Join(dir, SecretFile)); err == nil {
		return nil, fmt.Errorf("init platform %s: a platform already exists there (its secret protects sealed data; remove the directory by hand if you mean it)", dir)
	}
	secret := make([]byte, secretSize)
	if _, err := rand.Read(secret); err != nil {
		return nil, fmt.Errorf("init platform %s: secret: %w", dir, err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("init platform %s: attestation key: %w", dir, err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, fmt.Errorf("init platform %s: %w", dir, err)
	}
	pid := platformID(secret)
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: fmt.Sprintf("teeup simulated platform %x", pid)},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().AddDate(30, 0, 0),
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return nil, fmt.Errorf("init platform %s: certify attestation key: %w", dir, err)
	}
	keyPEM, err := encodeECKey(key)
	if err != nil {
		return nil, fmt.Errorf("init platform %s: %w", dir, err)
	}
	files := []struct {
		name string
		data []byte
	}{
		{AttestationKeyFile, keyPEM},
		{AttestationCrtFile, encodeCert(der)},
		{RootCertFile, encodeCert(ca.cert.Raw)},
		{SecretFile, secret}, // last: its presence marks a complete platform
	}
	for _, f := range files {
		if err := writeFileAtomic(filepath.Join(dir, f.name), f.data); err != nil {
			return nil, fmt.Errorf("init platform %s: %w", dir, err)
		}
	}
	return OpenPlatform(dir)
}

// OpenPlatform loads the platform in dir and checks that its files are
// consistent: the attestation certificate chains to root.crt and matches
// the attestation key.
func OpenPlatform(dir string) (*Platform, error) {
	secret, err := os.ReadFile(filepath.Join(dir, SecretFile))
	if err != nil {
		return nil, fmt.Errorf("open platform %s: %w (run 'teeup platform init %s' first)", dir, err, dir)
	}
	if len(secret) != secretSize {
		return nil, fmt.Errorf("open platform %s: secret is %d bytes, want %d", dir, len(secret), secretSize)
	}
	attKey, err := readECKey(filepath.Join(dir, AttestationKeyFile))
	if err != nil {
		return nil, fmt.Errorf("open platform %s: %w", dir, err)
	}
	attCert, err := readCert(filepath.Join(dir, AttestationCrtFile))
	if err != nil {
		return nil, fmt.Errorf("open platform %s: %w", dir, err)
	}
	root, err := readCert(filepath.Join(dir, RootCertFile))
	if err != nil {
		return nil, fmt.Errorf("open platform %s: %w", dir, err)
	}
	if !attKey.PublicKey.Equal(attCert.PublicKey) {
		return nil, fmt.Errorf("open platform %s: %s does not belong to %s", dir, AttestationKeyFile, AttestationCrtFile)
	}
	if err := attCert.CheckSignatureFrom(root); err != nil {
		return nil, fmt.Errorf("open platform %s: attestation certificate is not issued by %s: %w", dir, RootCertFile, err)
	}
	return &Platform{dir: dir, secret: secret, attKey: attKey, attCert: attCert, rootCert: root, id: platformID(secret)}, nil
}

// Dir returns the platform directory.
func (p *Platform) Dir() string { return p.dir }

// ID returns a short public identifier of the platform, derived one-way
// from its secret.
func (p *Platform) ID() string { return fmt.Sprintf("%x", p.id) }

// RootCertificate returns the root CA certificate this platform chains to.
func (p *Platform) RootCertificate() *x509.Certificate { return p.rootCert }

// Verifier returns a quote verifier pinned to this platform's root.
func (p *Platform) Verifier() *Verifier { return NewVerifier(p.rootCert) }

func platformID(secret []byte) [8]byte {
	k, _ := hkdf.Key(sha256.New, secret, []byte("teeup-sim platform id v1"), "", 8)
	var id [8]byte
	copy(id[:], k)
	return id
}

func randomSerial() (*big.Int, error) {
	s, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("serial number: %w", err)
	}
	return s.Add(s, big.NewInt(1)), nil
}
