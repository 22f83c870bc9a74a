// Package genesisdraft assembles a network's genesis from public parts
// only. Each operator makes a host bundle on its own host (its node's id,
// name and addresses, its operator key, its NOG key, optionally a KMG key,
// and its operator test account); the group starts a draft with the chain
// id, parameters and thresholds, adds every bundle and finalizes it into a
// genesis. No private key is ever involved.
//
// The construction is deterministic: nodes are ordered by id and the group
// keys and accounts by the node they came from, whatever order the bundles
// were added in, so any operator who builds the genesis from the same draft
// parameters and bundles gets the same genesis hash.
package genesisdraft

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/teeup/teeup/internal/fsutil"
	"github.com/teeup/teeup/keyfile"
	"github.com/teeup/teeup/ledger"
)

// BundleFormat identifies a host bundle file.
const BundleFormat = "teeup-host-bundle/1"

// MaxBundleSize is the largest bundle file ParseBundle reads.
const MaxBundleSize = 64 << 10

// Outcomes. Errors wrap one of these where they apply.
var (
	// ErrMalformed: a bundle or draft that does not parse or does not
	// validate on its own.
	ErrMalformed = errors.New("malformed")
	// ErrConflict: a bundle that clashes with the draft (a node id,
	// address, key or account already there).
	ErrConflict = errors.New("conflicts with the draft")
	// ErrIncomplete: the draft cannot be finalized yet.
	ErrIncomplete = errors.New("draft incomplete")
)

// Bundle is the public part of one host, made on that host: everything
// the genesis needs from its operator.
type Bundle struct {
	// Format is BundleFormat.
	Format string `json:"format"`
	// Node is the host's genesis node entry; its operator key is required.
	Node ledger.GenesisNode `json:"node"`
	// NOGKey is the operator's Node Operators Group key (hex).
	NOGKey string `json:"nog_key"`
	// KMGKey is the operator's Key Management Group key (hex), when the
	// operator is a KMG member.
	KMGKey string `json:"kmg_key,omitempty"`
	// Account is the operator test account with its proposed balance.
	Account ledger.GenesisAccount `json:"account"`
}

// ParseBundle parses a bundle strictly (no unknown fields, nothing after
// the object, at most MaxBundleSize bytes) and validates it.
func ParseBundle(raw []byte) (*Bundle, error) {
	if len(raw) > MaxBundleSize {
		return nil, fmt.Errorf("parse bundle: %w: %d bytes, more than %d", ErrMalformed, len(raw), MaxBundleSize)
	}
	var b Bundle
	if err := decodeStrict(raw, &b); err != nil {
		return nil, fmt.Errorf("parse bundle: %w: %w", ErrMalformed, err)
	}
	if err := b.Validate(); err != nil {
		return nil, err
	}
	return &b, nil
}

// LoadBundle reads and parses a bundle file.
func LoadBundle(path string) (*Bundle, error) {
	raw, err := readLimited(path, MaxBundleSize)
	if err != nil {
		return nil, fmt.Errorf("load bundle: %w", err)
	}
	b, err := ParseBundle(raw)
	if err != nil {
		return nil, fmt.Errorf("load bundle %s: %w", path, err)
	}
	return b, nil
}

// Validate checks a bundle on its own: the format, a valid node entry with
// an operator key, lower-case hex NOG (and KMG) keys, a non-zero account
// address, and no key used for two roles.
func (b *Bundle) Validate() error {
	if b.Format != BundleFormat {
		return fmt.Errorf("bundle: %w: format %q, want %q", ErrMalformed, b.Format, BundleFormat)
	}
	if err := b.Node.Validate(); err != nil {
		return fmt.Errorf("bundle of node %d: %w: %w", b.Node.ID, ErrMalformed, err)
	}
	if b.Node.PeerAddr == b.Node.ClientAddr {
		return fmt.Errorf("bundle of node %d: %w: peer_addr and client_addr are both %q", b.Node.ID, ErrMalformed, b.Node.PeerAddr)
	}
	if b.Node.Operator == "" {
		return fmt.Errorf("bundle of node %d: %w: no operator key", b.Node.ID, ErrMalformed)
	}
	if err := checkKey(b.NOGKey); err != nil {
		return fmt.Errorf("bundle of node %d: %w: nog_key: %w", b.Node.ID, ErrMalformed, err)
	}
	if b.KMGKey != "" {
		if err := checkKey(b.KMGKey); err != nil {
			return fmt.Errorf("bundle of node %d: %w: kmg_key: %w", b.Node.ID, ErrMalformed, err)
		}
	}
	if b.Account.Address.IsZero() {
		return fmt.Errorf("bundle of node %d: %w: no account address", b.Node.ID, ErrMalformed)
	}
	if len(b.Account.Label) > 128 {
		return fmt.Errorf("bundle of node %d: %w: account label longer than 128 bytes", b.Node.ID, ErrMalformed)
	}
	seen := map[string]string{}
	for _, k := range b.keys() {
		if other, dup := seen[k.hex]; dup {
			return fmt.Errorf("bundle of node %d: %w: the %s and the %s are the same key %s; each role needs its own key", b.Node.ID, ErrMalformed, other, k.role, k.hex)
		}
		seen[k.hex] = k.role
	}
	return nil
}

// roleKey is one public key of a bundle and the role it has there.
type roleKey struct{ role, hex string }

// keys returns the bundle's public keys with their roles.
func (b *Bundle) keys() []roleKey {
	ks := []roleKey{{"operator key", b.Node.Operator}, {"NOG key", b.NOGKey}}
	if b.KMGKey != "" {
		ks = append(ks, roleKey{"KMG key", b.KMGKey})
	}
	return append(ks, roleKey{"test account", b.Account.Address.String()})
}

// Marshal returns the bundle as indented JSON with a final newline.
func (b *Bundle) Marshal() ([]byte, error) {
	raw, err := json.MarshalIndent(b, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode bundle: %w", err)
	}
	return append(raw, '\n'), nil
}

// Save writes the bundle to path (0644: it is public).
func (b *Bundle) Save(path string) error {
	raw, err := b.Marshal()
	if err != nil {
		return err
	}
	if err := fsutil.WriteFileAtomic(path, raw, 0o644); err != nil {
		return fmt.Errorf("save bundle: %w", err)
	}
	return nil
}

// checkKey checks a public key given as 64 lower-case hex digits (the form
// genesis group keys must have to compare equal).
func checkKey(k string) error {
	if _, err := keyfile.ParsePublicHex(k); err != nil {
		return err
	}
	if k != strings.ToLower(k) || k != strings.TrimSpace(k) {
		return fmt.Errorf("key %q is not lower-case hex", k)
	}
	return nil
}

// decodeStrict decodes one JSON value into v, refusing unknown fields and
// anything after the value.
func decodeStrict(raw []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("data after the JSON object")
	}
	return nil
}

// readLimited reads a file of at most limit bytes.
func readLimited(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	raw, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if int64(len(raw)) > limit {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, limit)
	}
	return raw, nil
}
