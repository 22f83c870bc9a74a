package release

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/teeup/teeup/tee"
	"github.com/teeup/teeup/tee/boot"
)

// ErrMismatch is wrapped by the errors of VerifyBinary and VerifyArtifact
// when a file is not the one the release describes.
var ErrMismatch = errors.New("does not match the release")

// VerifyBinary checks that the enclave binary at path is the release's
// component c: its SHA-256 equals c.SHA256, the platform chosen at build
// time measures it as c.MREnclave (tee/boot; in simulation MRENCLAVE is the
// SHA-256 of the binary) with a signature structure (path+".sig") that
// verifies and declares that measurement, and the signer, product ID and
// SVN it declares equal the release's. Each mismatch is a distinct error
// wrapping ErrMismatch. It returns the binary's identity.
//
// The check is only as good as the caller's hold on the file: verify a copy
// in a directory only the caller writes, and run that copy.
func VerifyBinary(path string, c Component) (tee.Identity, error) {
	sum, err := fileSHA256(path)
	if err != nil {
		return tee.Identity{}, fmt.Errorf("verify binary: %w", err)
	}
	if sum != c.SHA256 {
		return tee.Identity{}, fmt.Errorf("verify binary %s: its SHA-256 is %s, the release says %s: %w", path, sum, c.SHA256, ErrMismatch)
	}
	id, err := boot.VerifyBinary(path)
	if err != nil {
		return tee.Identity{}, fmt.Errorf("verify binary: %w", err)
	}
	if id.UniqueID != c.MREnclave {
		return tee.Identity{}, fmt.Errorf("verify binary %s: it measures MRENCLAVE %s, the release says %s: %w", path, id.UniqueID, c.MREnclave, ErrMismatch)
	}
	if id.SignerID != c.SignerID {
		return tee.Identity{}, fmt.Errorf("verify binary %s: signed by MRSIGNER %s, the release says %s: %w", path, id.SignerID, c.SignerID, ErrMismatch)
	}
	if id.ProductID != c.ProductID {
		return tee.Identity{}, fmt.Errorf("verify binary %s: product ID is %d, the release says %d: %w", path, id.ProductID, c.ProductID, ErrMismatch)
	}
	if id.SecurityVersion != c.SVN {
		return tee.Identity{}, fmt.Errorf("verify binary %s: SVN is %d, the release says %d: %w", path, id.SecurityVersion, c.SVN, ErrMismatch)
	}
	return id, nil
}

// VerifyArtifact checks that the file at path has the artifact's SHA-256.
func VerifyArtifact(path string, a Artifact) error {
	sum, err := fileSHA256(path)
	if err != nil {
		return fmt.Errorf("verify artifact: %w", err)
	}
	if sum != a.SHA256 {
		return fmt.Errorf("verify artifact %s: its SHA-256 is %s, the release says %s: %w", path, sum, a.SHA256, ErrMismatch)
	}
	return nil
}

// ComponentFromBinary describes the enclave binary at path, to be fetched
// from url, for a new manifest. The binary must carry a valid signature
// structure (path+".sig") for its current bytes.
func ComponentFromBinary(path, url string) (Component, error) {
	sum, err := fileSHA256(path)
	if err != nil {
		return Component{}, fmt.Errorf("describe binary: %w", err)
	}
	id, err := boot.VerifyBinary(path)
	if err != nil {
		return Component{}, fmt.Errorf("describe binary: %w", err)
	}
	c := Component{MREnclave: id.UniqueID, SHA256: sum, SignerID: id.SignerID, ProductID: id.ProductID, SVN: id.SecurityVersion, URL: url}
	if err := c.Validate(); err != nil {
		return Component{}, fmt.Errorf("describe binary %s: %w", path, err)
	}
	return c, nil
}

// ArtifactFromFile describes the file at path, to be fetched from url, for a
// new manifest.
func ArtifactFromFile(path, url string) (Artifact, error) {
	sum, err := fileSHA256(path)
	if err != nil {
		return Artifact{}, fmt.Errorf("describe artifact: %w", err)
	}
	a := Artifact{SHA256: sum, URL: url}
	if err := a.Validate(); err != nil {
		return Artifact{}, fmt.Errorf("describe artifact %s: %w", path, err)
	}
	return a, nil
}

// fileSHA256 returns the lower-case hex SHA-256 of a regular file.
func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("hash: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("hash %s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return "", fmt.Errorf("hash %s: not a regular file", path)
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hash %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
