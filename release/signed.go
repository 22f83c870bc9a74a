package release

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/teeup/teeup/keyfile"
)

// MaxFileSize bounds a signed release file, which is read from untrusted
// sources.
const MaxFileSize = 1 << 20

// Signature is one group member's ed25519 signature.
type Signature struct {
	// Key is the member's public key as hex.
	Key string `json:"key"`
	// Sig is the signature as hex.
	Sig string `json:"sig"`
}

// decode parses the key and signature, refusing malformed hex or lengths.
func (s Signature) decode() (ed25519.PublicKey, []byte, error) {
	pub, err := keyfile.ParsePublicHex(s.Key)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrBadSignature, err)
	}
	sig, err := hex.DecodeString(s.Sig)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: by %s: not hex", ErrBadSignature, hex.EncodeToString(pub))
	}
	if len(sig) != ed25519.SignatureSize {
		return nil, nil, fmt.Errorf("%w: by %s: %d bytes, want %d", ErrBadSignature, hex.EncodeToString(pub), len(sig), ed25519.SignatureSize)
	}
	return pub, sig, nil
}

// SignedRelease is a manifest with the Key Management Group's signatures and
// the network-signed enclave IDs of its node and agent. It is the file
// operators pass around (manifest.json) and the content of a release
// proposal on chain.
type SignedRelease struct {
	// Manifest describes the release.
	Manifest Manifest `json:"manifest"`
	// Signatures are the group's signatures over Manifest.SigningBytes.
	Signatures []Signature `json:"signatures"`
	// NodeID is the signed enclave ID of Manifest.Node.
	NodeID EnclaveID `json:"node_enclave_id"`
	// AgentID is the signed enclave ID of Manifest.Agent.
	AgentID EnclaveID `json:"agent_enclave_id"`
}

// New returns an unsigned release for m, with the node's and agent's
// enclave IDs derived from it. It fails if m is not valid.
func New(m Manifest) (*SignedRelease, error) {
	sr := &SignedRelease{
		Manifest:   m,
		Signatures: []Signature{},
		NodeID:     EnclaveID{NetworkID: m.NetworkID, Role: RoleNode, MREnclave: m.Node.MREnclave, Signatures: []Signature{}},
		AgentID:    EnclaveID{NetworkID: m.NetworkID, Role: RoleAgent, MREnclave: m.Agent.MREnclave, Signatures: []Signature{}},
	}
	if err := sr.Check(); err != nil {
		return nil, err
	}
	return sr, nil
}

// Check validates everything but the signatures: the manifest, and that the
// enclave IDs are the node's and the agent's of the manifest's network.
func (sr *SignedRelease) Check() error {
	if err := sr.Manifest.Validate(); err != nil {
		return err
	}
	m := &sr.Manifest
	for _, c := range []struct {
		id   *EnclaveID
		role Role
		comp *Component
	}{{&sr.NodeID, RoleNode, &m.Node}, {&sr.AgentID, RoleAgent, &m.Agent}} {
		if c.id.NetworkID != m.NetworkID {
			return fmt.Errorf("%s enclave id is for network %q, the manifest for %q", c.role, c.id.NetworkID, m.NetworkID)
		}
		if c.id.Role != c.role {
			return fmt.Errorf("%s enclave id names role %q", c.role, c.id.Role)
		}
		if c.id.MREnclave != c.comp.MREnclave {
			return fmt.Errorf("%s enclave id is for MRENCLAVE %s, the manifest's %s is %s", c.role, c.id.MREnclave, c.role, c.comp.MREnclave)
		}
	}
	return nil
}

// Verify checks the release against the Key Management Group: the manifest
// and enclave IDs are valid and consistent (Check), and the manifest and
// both enclave IDs each carry the group's threshold of signatures (see
// Group.VerifyThreshold for what makes a signature set invalid).
func (sr *SignedRelease) Verify(kmg Group) error {
	if err := kmg.Validate(); err != nil {
		return fmt.Errorf("verify release: key management group: %w", err)
	}
	if err := sr.Check(); err != nil {
		return fmt.Errorf("verify release: %w", err)
	}
	msg, err := sr.Manifest.SigningBytes()
	if err != nil {
		return fmt.Errorf("verify release: %w", err)
	}
	if err := kmg.VerifyThreshold(msg, sr.Signatures); err != nil {
		return fmt.Errorf("verify release %s manifest: %w", sr.Manifest.Version, err)
	}
	m := &sr.Manifest
	if err := sr.NodeID.Verify(kmg, m.NetworkID, RoleNode, m.Node.MREnclave); err != nil {
		return fmt.Errorf("verify release %s: %w", m.Version, err)
	}
	if err := sr.AgentID.Verify(kmg, m.NetworkID, RoleAgent, m.Agent.MREnclave); err != nil {
		return fmt.Errorf("verify release %s: %w", m.Version, err)
	}
	return nil
}

// Sign adds key's signatures to the manifest and both enclave IDs. Signing
// again with the same key replaces that key's earlier signatures instead of
// adding duplicates, so it is idempotent and also refreshes a signature made
// before an edit. It refuses a release that does not pass Check.
func Sign(sr *SignedRelease, key ed25519.PrivateKey) error {
	if len(key) != ed25519.PrivateKeySize {
		return fmt.Errorf("sign release: private key is %d bytes, want %d", len(key), ed25519.PrivateKeySize)
	}
	if err := sr.Check(); err != nil {
		return fmt.Errorf("sign release: %w", err)
	}
	msg, err := sr.Manifest.SigningBytes()
	if err != nil {
		return fmt.Errorf("sign release: %w", err)
	}
	pub := key.Public().(ed25519.PublicKey)
	sr.Signatures = withSignature(sr.Signatures, pub, ed25519.Sign(key, msg))
	sr.NodeID.Signatures = withSignature(sr.NodeID.Signatures, pub, ed25519.Sign(key, sr.NodeID.SigningBytes()))
	sr.AgentID.Signatures = withSignature(sr.AgentID.Signatures, pub, ed25519.Sign(key, sr.AgentID.SigningBytes()))
	return nil
}

// withSignature returns sigs without any entry by pub, plus pub's sig.
func withSignature(sigs []Signature, pub ed25519.PublicKey, sig []byte) []Signature {
	out := make([]Signature, 0, len(sigs)+1)
	for _, s := range sigs {
		if k, err := keyfile.ParsePublicHex(s.Key); err == nil && bytes.Equal(k, pub) {
			continue
		}
		out = append(out, s)
	}
	return append(out, Signature{Key: hex.EncodeToString(pub), Sig: hex.EncodeToString(sig)})
}

// Parse decodes a signed release from JSON strictly: unknown fields,
// duplicate or non-lower-case object keys, and trailing data are refused,
// so that every JSON reader sees the same release as teeup does (Go's
// decoder alone matches keys case-insensitively and lets a repeated key
// win). It does not verify anything; call Verify.
func Parse(data []byte) (*SignedRelease, error) {
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("parse release: %d bytes, at most %d", len(data), MaxFileSize)
	}
	if err := checkKeys(data); err != nil {
		return nil, fmt.Errorf("parse release: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var sr SignedRelease
	if err := dec.Decode(&sr); err != nil {
		return nil, fmt.Errorf("parse release: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("parse release: data after the JSON object")
	}
	return &sr, nil
}

// checkKeys walks the JSON tokens and refuses object keys that are not
// lower-case ASCII names (every field name of a release is one) or that
// appear twice in one object.
func checkKeys(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	var stack []*jsonFrame
	for first := true; ; first = false {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if first && tok != json.Delim('{') {
			return errors.New("not a JSON object")
		}
		if n := len(stack); n > 0 && stack[n-1].keys != nil && stack[n-1].atKey {
			top := stack[n-1]
			if tok == json.Delim('}') {
				stack = endValue(stack[:n-1])
				continue
			}
			key, _ := tok.(string) // in key position the decoder yields only strings
			if !isFieldName(key) {
				return fmt.Errorf("object key %q is not a lower-case field name", key)
			}
			if top.keys[key] {
				return fmt.Errorf("object key %q appears twice", key)
			}
			top.keys[key] = true
			top.atKey = false
			continue
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, &jsonFrame{keys: map[string]bool{}, atKey: true})
		case json.Delim('['):
			stack = append(stack, &jsonFrame{})
		case json.Delim(']'):
			stack = endValue(stack[:len(stack)-1])
		default:
			stack = endValue(stack)
		}
	}
}

// jsonFrame is an open JSON object (keys != nil) or array during checkKeys.
type jsonFrame struct {
	keys  map[string]bool
	atKey bool // the object's next token is a key or its end
}

// endValue notes that a value inside the innermost open object is complete.
func endValue(stack []*jsonFrame) []*jsonFrame {
	if n := len(stack); n > 0 && stack[n-1].keys != nil {
		stack[n-1].atKey = true
	}
	return stack
}

// isFieldName reports whether key is a non-empty [a-z0-9_] name.
func isFieldName(key string) bool {
	for _, c := range []byte(key) {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return key != ""
}

// Load reads and parses a signed release file (see Parse). It does not
// verify anything; call Verify.
func Load(path string) (*SignedRelease, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("load release: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("load release %s: %w", path, err)
	}
	sr, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("load release %s: %w", path, err)
	}
	return sr, nil
}

// Marshal encodes the release as indented JSON with a final newline, the
// form Save writes.
func (sr *SignedRelease) Marshal() ([]byte, error) {
	data, err := json.MarshalIndent(sr, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode release: %w", err)
	}
	return append(data, '\n'), nil
}

// Save writes the release to path atomically (temporary file, fsync,
// rename), mode 0644, replacing any existing file.
func (sr *SignedRelease) Save(path string) error {
	data, err := sr.Marshal()
	if err != nil {
		return fmt.Errorf("save release %s: %w", path, err)
	}
	if err := writeFileAtomic(path, data, 0o644, false); err != nil {
		return fmt.Errorf("save release: %w", err)
	}
	return nil
}

// SaveNew is Save that refuses to replace an existing file; the check and
// the creation are one atomic step.
func (sr *SignedRelease) SaveNew(path string) error {
	data, err := sr.Marshal()
	if err != nil {
		return fmt.Errorf("save release %s: %w", path, err)
	}
	if err := writeFileAtomic(path, data, 0o644, true); err != nil {
		return fmt.Errorf("save release: %w", err)
	}
	return nil
}

// SignatureOf signs msg with key as a group member's signature.
func SignatureOf(key ed25519.PrivateKey, msg []byte) Signature {
	return Signature{Key: hex.EncodeToString(key.Public().(ed25519.PublicKey)), Sig: hex.EncodeToString(ed25519.Sign(key, msg))}
}
