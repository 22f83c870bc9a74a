package release

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"time"
	"unicode/utf8"

	"github.com/teeup/teeup/tee"
)

// ManifestDomain prefixes the canonical JSON of a manifest in the bytes the
// Key Management Group signs, so that a manifest signature can never be
// taken for a signature over anything else teeup signs.
const ManifestDomain = "teeup release manifest v1"

// Limits on manifest fields.
const (
	maxNetworkIDLen = 64
	maxURLLen       = 2048
	maxNotesLen     = 16 << 10
	maxMigrations   = 64
	maxMigrationLen = 64
)

// Component is an enclave binary of a release: the node or the agent.
type Component struct {
	// MREnclave is the enclave measurement; in simulation, the SHA-256 of
	// the binary.
	MREnclave tee.Measurement `json:"mrenclave"`
	// SHA256 is the lower-case hex SHA-256 of the artifact's bytes.
	SHA256 string `json:"sha256"`
	// SignerID is MRSIGNER: the hash of the enclave signer's public key.
	SignerID tee.Measurement `json:"mrsigner"`
	// ProductID is the signer-assigned product ID of the enclave.
	ProductID uint16 `json:"product_id"`
	// SVN is the signer-assigned security version of the enclave.
	SVN uint16 `json:"svn"`
	// URL is where the binary is fetched from: http://, https:// or file://.
	// Its signature structure is at URL+".sig" (see SigStructURL).
	URL string `json:"url"`
}

// SigStructURL returns where the component's signature structure is
// fetched from: the binary's URL with ".sig" appended.
func (c Component) SigStructURL() string { return c.URL + ".sig" }

// Artifact is a release file that is not an enclave, such as the
// teeup-distribute binary.
type Artifact struct {
	// SHA256 is the lower-case hex SHA-256 of the file's bytes.
	SHA256 string `json:"sha256"`
	// URL is where the file is fetched from: http://, https:// or file://.
	URL string `json:"url"`
}

// Manifest describes one release of a network's software. The Key
// Management Group signs it; see SigningBytes.
type Manifest struct {
	// NetworkID is the chain id of the network the release is for.
	NetworkID string `json:"network_id"`
	// Version is the semantic version "MAJOR.MINOR.PATCH[-PRERELEASE]".
	Version string `json:"version"`
	// Node is the consensus node enclave.
	Node Component `json:"node"`
	// Agent is the upgrade agent enclave.
	Agent Component `json:"agent"`
	// Distribute is the ledger distribution program, if the release ships one.
	Distribute *Artifact `json:"distribute,omitempty"`
	// SchemaVersion is the ledger schema the node migrates to; 0 means the
	// newest schema the node binary knows (which its MRENCLAVE pins).
	SchemaVersion int `json:"schema_version"`
	// Migrations names the ledger migrations the upgrade runs, for operators.
	Migrations []string `json:"migrations,omitempty"`
	// Notes are free-form release notes.
	Notes string `json:"notes,omitempty"`
	// CreatedAt is when the manifest was made.
	CreatedAt time.Time `json:"created_at"`
}

// Validate checks the manifest's content: a network id like a genesis chain
// id ([a-z0-9-], 1 to 64 bytes), a semantic version, complete node and agent
// components with distinct measurements, URLs with an http, https or file
// scheme, a well-formed distribute artifact if present, a schema version of
// at least 0, sane migration names and notes, and a creation time.
func (m *Manifest) Validate() error {
	if err := validateNetworkID(m.NetworkID); err != nil {
		return fmt.Errorf("manifest: %w", err)
	}
	if err := ValidateVersion(m.Version); err != nil {
		return fmt.Errorf("manifest: %w", err)
	}
	if err := m.Node.Validate(); err != nil {
		return fmt.Errorf("manifest: node: %w", err)
	}
	if err := m.Agent.Validate(); err != nil {
		return fmt.Errorf("manifest: agent: %w", err)
	}
	if m.Node.MREnclave == m.Agent.MREnclave {
		// The handover tells the agent from a node by measurement: one binary
		// in both roles would let a node pose as the agent.
		return fmt.Errorf("manifest: node and agent have the same MRENCLAVE %s; they must be different binaries", m.Node.MREnclave)
	}
	if m.Distribute != nil {
		if err := m.Distribute.Validate(); err != nil {
			return fmt.Errorf("manifest: distribute: %w", err)
		}
	}
	if m.SchemaVersion < 0 {
		return fmt.Errorf("manifest: schema version %d is negative", m.SchemaVersion)
	}
	if len(m.Migrations) > maxMigrations {
		return fmt.Errorf("manifest: %d migrations, at most %d", len(m.Migrations), maxMigrations)
	}
	seen := make(map[string]bool, len(m.Migrations))
	for i, name := range m.Migrations {
		if err := validateMigrationName(name); err != nil {
			return fmt.Errorf("manifest: migration %d: %w", i, err)
		}
		if seen[name] {
			return fmt.Errorf("manifest: migration %q is listed twice", name)
		}
		seen[name] = true
	}
	if len(m.Notes) > maxNotesLen {
		return fmt.Errorf("manifest: notes are %d bytes, at most %d", len(m.Notes), maxNotesLen)
	}
	if !utf8.ValidString(m.Notes) {
		return errors.New("manifest: notes are not valid UTF-8")
	}
	if m.CreatedAt.IsZero() {
		return errors.New("manifest: created_at is missing")
	}
	if y := m.CreatedAt.Year(); y < 2000 || y > 9999 {
		return fmt.Errorf("manifest: created_at year %d is implausible", y)
	}
	return nil
}

// SigningBytes returns the bytes the Key Management Group signs for the
// manifest: ManifestDomain followed by the manifest's canonical JSON.
//
// The canonical JSON is encoding/json's encoding of the Manifest struct. It
// is deterministic: fields are written in declaration order, there are no
// maps, strings are escaped one way, measurements are lower-case hex and
// times RFC 3339. Decoding a manifest and encoding it again yields the same
// bytes, so a verifier signs and checks exactly the meaning it decoded, not
// the file's layout. A test pins these bytes for a fixed manifest, so a
// change of the encoder would be caught before it invalidates signatures.
func (m *Manifest) SigningBytes() ([]byte, error) {
	js, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode manifest: %w", err)
	}
	b := make([]byte, 0, len(ManifestDomain)+len(js))
	b = append(b, ManifestDomain...)
	return append(b, js...), nil
}

// Validate checks that the component is complete: non-zero MRENCLAVE and
// MRSIGNER, a SHA-256 of 64 lower-case hex digits and a fetchable URL.
func (c *Component) Validate() error {
	if c.MREnclave.IsZero() {
		return errors.New("mrenclave is missing")
	}
	if c.SignerID.IsZero() {
		return errors.New("mrsigner is missing")
	}
	if err := validateSHA256(c.SHA256); err != nil {
		return err
	}
	return validateURL(c.URL)
}

// Validate checks that the artifact has a SHA-256 of 64 lower-case hex
// digits and a fetchable URL.
func (a *Artifact) Validate() error {
	if err := validateSHA256(a.SHA256); err != nil {
		return err
	}
	return validateURL(a.URL)
}

func validateNetworkID(id string) error {
	if id == "" {
		return errors.New("network id is missing")
	}
	if len(id) > maxNetworkIDLen {
		return fmt.Errorf("network id is %d bytes long, at most %d", len(id), maxNetworkIDLen)
	}
	for _, c := range []byte(id) {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return fmt.Errorf("network id %q has character %q; want [a-z0-9-]", id, c)
		}
	}
	return nil
}

func validateMigrationName(name string) error {
	if name == "" {
		return errors.New("name is empty")
	}
	if len(name) > maxMigrationLen {
		return fmt.Errorf("name is %d bytes long, at most %d", len(name), maxMigrationLen)
	}
	for _, c := range []byte(name) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return fmt.Errorf("name %q has character %q; want [A-Za-z0-9._-]", name, c)
		}
	}
	return nil
}

func validateSHA256(s string) error {
	if s == "" {
		return errors.New("sha256 is missing")
	}
	if len(s) != 64 {
		return fmt.Errorf("sha256 %q is %d characters, want 64 hex digits", s, len(s))
	}
	if _, err := hex.DecodeString(s); err != nil {
		return fmt.Errorf("sha256 %q is not hex", s)
	}
	for _, c := range []byte(s) {
		if c >= 'A' && c <= 'F' {
			return fmt.Errorf("sha256 %q must be lower-case hex", s)
		}
	}
	return nil
}

// validateURL accepts absolute http(s) URLs with a host and file URLs with an
// absolute path and no host (or "localhost"). Queries and fragments are
// refused because the signature structure's URL is formed by appending
// ".sig", which only works on a plain path.
func validateURL(raw string) error {
	if raw == "" {
		return errors.New("url is missing")
	}
	if len(raw) > maxURLLen {
		return fmt.Errorf("url is %d bytes long, at most %d", len(raw), maxURLLen)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("url %q: %w", raw, err)
	}
	if u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || u.RawFragment != "" {
		return fmt.Errorf("url %q: a query or fragment is not allowed", raw)
	}
	if u.User != nil {
		return fmt.Errorf("url %q: credentials in a URL are not allowed", raw)
	}
	switch u.Scheme {
	case "http", "https":
		if u.Host == "" || u.Opaque != "" {
			return fmt.Errorf("url %q: no host", raw)
		}
	case "file":
		if u.Opaque != "" || u.Path == "" || u.Path[0] != '/' {
			return fmt.Errorf("url %q: a file URL needs an absolute path (file:///dir/name)", raw)
		}
		if u.Host != "" && u.Host != "localhost" {
			return fmt.Errorf("url %q: a file URL cannot name a remote host", raw)
		}
	default:
		return fmt.Errorf("url %q: scheme %q is not http, https or file", raw, u.Scheme)
	}
	return nil
}
