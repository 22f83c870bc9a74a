// Package keyfile reads and writes the ed25519 key files teeup uses for
// enclave signers, Key Management Group and Node Operators Group members,
// and payment accounts.
//
// Format: a private key file holds one PEM block of type "PRIVATE KEY"
// containing the PKCS #8 encoding of the ed25519 key (as written by
// `openssl genpkey -algorithm ed25519`), mode 0600. Its public key is
// written beside it as FILE.pub: one PEM block of type "PUBLIC KEY"
// containing the PKIX encoding, mode 0644. Public keys are also accepted as
// 64 hex digits wherever a public key file is.
package keyfile

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// PublicSuffix is appended to a private key file's path for its public key.
const PublicSuffix = ".pub"

// Generate creates a new ed25519 key, writes it to path (0600) and its
// public key to path+".pub". It refuses to overwrite either file.
func Generate(path string) (ed25519.PublicKey, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	if err := Write(path, priv); err != nil {
		return nil, err
	}
	return pub, nil
}

// Write writes priv to path (0600) and its public key to path+".pub"
// (0644). It refuses to overwrite either file.
func Write(path string, priv ed25519.PrivateKey) error {
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return fmt.Errorf("write key %s: %w", path, err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(priv.Public())
	if err != nil {
		return fmt.Errorf("write key %s: %w", path, err)
	}
	for _, p := range []string{path, path + PublicSuffix} {
		if _, err := os.Lstat(p); err == nil {
			return fmt.Errorf("write key %s: %s already exists; refusing to overwrite a key", path, p)
		}
	}
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("write key %s: %w", path, err)
		}
	}
	if err := writeNew(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return fmt.Errorf("write key %s: %w", path, err)
	}
	if err := writeNew(path+PublicSuffix, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), 0o644); err != nil {
		return fmt.Errorf("write key %s: %w", path, err)
	}
	return nil
}

func writeNew(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// ReadPrivate reads an ed25519 private key file.
func ReadPrivate(path string) (ed25519.PrivateKey, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read private key: %w", err)
	}
	k, err := ParsePrivate(raw)
	if err != nil {
		return nil, fmt.Errorf("read private key %s: %w", path, err)
	}
	return k, nil
}

// ParsePrivate parses a PEM PKCS #8 ed25519 private key.
func ParsePrivate(pemBytes []byte) (ed25519.PrivateKey, error) {
	blk, _ := pem.Decode(pemBytes)
	if blk == nil {
		return nil, errors.New("no PEM block")
	}
	if blk.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("PEM block is %q, want \"PRIVATE KEY\"", blk.Type)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse PKCS #8: %w", err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("key is %T, want ed25519", k)
	}
	return priv, nil
}

// ReadPublic reads an ed25519 public key from a file holding a PEM PUBLIC
// KEY, a PEM PRIVATE KEY (its public half is returned) or 64 hex digits.
func ReadPublic(path string) (ed25519.PublicKey, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read public key: %w", err)
	}
	k, err := ParsePublic(raw)
	if err != nil {
		return nil, fmt.Errorf("read public key %s: %w", path, err)
	}
	return k, nil
}

// ParsePublic parses a public key given as PEM PUBLIC KEY, PEM PRIVATE KEY
// or 64 hex digits.
func ParsePublic(raw []byte) (ed25519.PublicKey, error) {
	s := strings.TrimSpace(string(raw))
	if len(s) == 2*ed25519.PublicKeySize && !strings.Contains(s, "-") {
		return ParsePublicHex(s)
	}
	blk, _ := pem.Decode(raw)
	if blk == nil {
		return nil, errors.New("neither PEM nor 64 hex digits")
	}
	switch blk.Type {
	case "PUBLIC KEY":
		k, err := x509.ParsePKIXPublicKey(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse PKIX: %w", err)
		}
		pub, ok := k.(ed25519.PublicKey)
		if !ok {
			return nil, fmt.Errorf("key is %T, want ed25519", k)
		}
		return pub, nil
	case "PRIVATE KEY":
		priv, err := ParsePrivate(raw)
		if err != nil {
			return nil, err
		}
		return priv.Public().(ed25519.PublicKey), nil
	default:
		return nil, fmt.Errorf("PEM block is %q, want \"PUBLIC KEY\"", blk.Type)
	}
}

// ParsePublicHex parses 64 hex digits as an ed25519 public key.
func ParsePublicHex(s string) (ed25519.PublicKey, error) {
	b, err := hex.DecodeString(strings.TrimSpace(s))
	if err != nil {
		return nil, fmt.Errorf("public key %q: not hex: %w", s, err)
	}
	if len(b) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("public key %q: %d bytes, want %d", s, len(b), ed25519.PublicKeySize)
	}
	return ed25519.PublicKey(b), nil
}
