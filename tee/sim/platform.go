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
//
// A platform is certified either at once by a CA at hand (InitPlatform) or
// by request, so that the platform secret and the attestation key never
// leave the host: RequestPlatform creates the secret and the key, pins
// root.crt and writes attestation.csr (a PKCS #10 request signed by the
// attestation key) in place of attestation.crt; the CA holder issues the
// certificate (CA.CertifyRequest) and the host installs it
// (InstallCertificate). Until then OpenPlatform refuses the platform with
// ErrPlatformPending.
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
	"github.com/teeup/teeup/layout"
)

// File names inside CA and platform directories. The root certificate's
// name belongs to package layout, which programs that do not link tee/sim
// (the agent, clients) read it from.
const (
	CAKeyFile          = "root.key"
	RootCertFile       = layout.RootCertFile
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
// overwrite an existing CA: when dir holds root.key or root.crt it writes
// nothing and returns an error wrapping os.ErrExist.
func InitCA(dir string) (*CA, error) {
	if err := fsutil.PrivateDir(dir); err != nil {
		return nil, fmt.Errorf("init CA %s: %w", dir, err)
	}
	// Check both files before writing either, so that a refused InitCA
	// never leaves a root.key beside a root.crt it does not belong to.
	for _, name := range []string{CAKeyFile, RootCertFile} {
		if err := refuseExisting(filepath.Join(dir, name)); err != nil {
			return nil, fmt.Errorf("init CA %s: %w", dir, err)
		}
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

// OpenOrInitCA opens the CA in dir, creating it when dir holds neither
// root.key nor root.crt. A dir holding only root.crt (the root verifiers
// pin, its key kept elsewhere) is left untouched: the error wraps
// ErrNoCAKey, and such a root can still pin a platform that requests its
// certificate (RequestPlatform).
func OpenOrInitCA(dir string) (*CA, error) {
	_, keyErr := os.Stat(filepath.Join(dir, CAKeyFile))
	_, crtErr := os.Stat(filepath.Join(dir, RootCertFile))
	switch {
	case errors.Is(keyErr, os.ErrNotExist) && errors.Is(crtErr, os.ErrNotExist):
		return InitCA(dir)
	case errors.Is(keyErr, os.ErrNotExist) && crtErr == nil:
		return nil, fmt.Errorf("open CA %s: %w: it holds %s but not %s, so it can pin a root but not certify", dir, ErrNoCAKey, RootCertFile, CAKeyFile)
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
	if err := prepareNewPlatform(dir); err != nil {
		return nil, fmt.Errorf("init platform %s: %w", dir, err)
	}
	secret := make([]byte, secretSize)
	if _, err := rand.Read(secret); err != nil {
		return nil, fmt.Errorf("init platform %s: secret: %w", dir, err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("init platform %s: attestation key: %w", dir, err)
	}
	der, err := ca.issue(&key.PublicKey, platformID(secret))
	if err != nil {
		return nil, fmt.Errorf("init platform %s: %w", dir, err)
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

// issue certifies an attestation key for the platform with the id: the
// certificate every platform of the CA carries, whether certified at once
// or by request.
func (ca *CA) issue(pub *ecdsa.PublicKey, pid [8]byte) ([]byte, error) {
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: platformCommonName(pid)},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().AddDate(30, 0, 0),
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, pub, ca.key)
	if err != nil {
		return nil, fmt.Errorf("certify attestation key: %w", err)
	}
	return der, nil
}

// platformCommonName is the subject common name of a platform's
// attestation certificate and certificate request.
func platformCommonName(pid [8]byte) string {
	return fmt.Sprintf("%s%x", platformCNPrefix, pid)
}

const platformCNPrefix = "teeup simulated platform "

// OpenPlatform loads the platform in dir and checks that its files are
// consistent: the attestation certificate chains to root.crt and matches
// the attestation key. A platform still waiting for its certificate is
// refused with an error wrapping ErrPlatformPending.
func OpenPlatform(dir string) (*Platform, error) {
	secret, err := os.ReadFile(filepath.Join(dir, SecretFile))
	if err != nil {
		return nil, fmt.Errorf("open platform %s: %w (run 'teeup platform init %s' first)", dir, err, dir)
	}
	if len(secret) != secretSize {
		return nil, fmt.Errorf("open platform %s: secret is %d bytes, want %d", dir, len(secret), secretSize)
	}
	if pendingCertificate(dir) {
		return nil, fmt.Errorf("open platform %s: %w: send %s to the CA holder ('teeup platform certify'), then run 'teeup platform install-cert %s CERT'",
			dir, ErrPlatformPending, filepath.Join(dir, AttestationCSRFile), dir)
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

// prepareNewPlatform creates dir (0700) for a new platform. It refuses a
// dir that already holds a platform secret (complete or awaiting its
// certificate): losing the secret loses every sealed key. Files an
// interrupted earlier attempt left behind (everything is written before the
// secret) are removed.
func prepareNewPlatform(dir string) error {
	if err := fsutil.PrivateDir(dir); err != nil {
		return err
	}
	if _, err := os.Lstat(filepath.Join(dir, SecretFile)); err == nil {
		return fmt.Errorf("%w: a platform already exists there (its secret protects sealed data; remove the directory by hand if you mean it)", os.ErrExist)
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	for _, name := range []string{AttestationCrtFile, AttestationCSRFile} {
		if err := os.Remove(filepath.Join(dir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

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
