package node

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/teeup/teeup/internal/fsutil"
	"github.com/teeup/teeup/internal/wire"
	"github.com/teeup/teeup/layout"
	"github.com/teeup/teeup/ledger"
	"github.com/teeup/teeup/tee"
)

// Keys are a node's application keys: its identity key (signs blocks) and
// the network's ledger key (encrypts block bodies and raft entries). They
// never leave an enclave unencrypted: on disk they are sealed to the
// node's MRENCLAVE, between enclaves they travel through the handover.
type Keys struct {
	ChainID   string
	NodeID    uint64
	NodeKey   ed25519.PrivateKey
	LedgerKey ledger.LedgerKey
}

const keysMagic = "TKEY"

// Encode serialises the keys (for sealing or handover only).
func (k *Keys) Encode() []byte {
	e := wire.NewEncoder(128)
	e.Fixed([]byte(keysMagic))
	e.U8(1)
	e.String(k.ChainID)
	e.U64(k.NodeID)
	e.Fixed(k.NodeKey.Seed())
	e.Fixed(k.LedgerKey[:])
	return e.Bytes()
}

// DecodeKeys parses keys encoded by Encode.
func DecodeKeys(b []byte) (*Keys, error) {
	d := wire.NewDecoder("keys", b)
	var magic [4]byte
	d.Fixed("magic", magic[:])
	ver := d.U8("version")
	k := &Keys{}
	k.ChainID = d.String("chain id", 64)
	k.NodeID = d.U64("node id")
	seed := make([]byte, ed25519.SeedSize)
	d.Fixed("node key", seed)
	d.Fixed("ledger key", k.LedgerKey[:])
	if err := d.Finish(); err != nil {
		return nil, err
	}
	if string(magic[:]) != keysMagic || ver != 1 {
		return nil, fmt.Errorf("decode keys: bad magic %q or version %d", magic[:], ver)
	}
	if k.LedgerKey.IsZero() {
		return nil, errors.New("decode keys: ledger key is all zeros")
	}
	k.NodeKey = ed25519.NewKeyFromSeed(seed)
	return k, nil
}

func sealAD(chainID string, nodeID uint64) []byte {
	return fmt.Appendf(nil, "teeup node keys v1|%s|%d", chainID, nodeID)
}

// SaveKeys seals keys under the enclave's MRENCLAVE and writes them
// atomically to the data dir's sealed key file for it (layout.Node.SealedKeys).
// Old versions' files stay until the upgrade agent finalizes, so a rollback
// can restart them.
func SaveKeys(e tee.Enclave, dataDir string, k *Keys) error {
	blob, err := tee.Seal(e, tee.SealUnique, k.Encode(), sealAD(k.ChainID, k.NodeID))
	if err != nil {
		return fmt.Errorf("seal keys: %w", err)
	}
	if err := os.MkdirAll(layout.Node(dataDir).Keys(), 0o700); err != nil {
		return fmt.Errorf("seal keys: %w", err)
	}
	if err := fsutil.WriteFileAtomic(layout.Node(dataDir).SealedKeys(e.Identity().UniqueID), blob, 0o600); err != nil {
		return fmt.Errorf("seal keys: %w", err)
	}
	// Read back: keys are only as safe as a blob that really unseals.
	got, err := LoadKeys(e, dataDir, k.ChainID, k.NodeID)
	if err != nil {
		return fmt.Errorf("seal keys: the sealed blob does not unseal: %w", err)
	}
	if !got.NodeKey.Equal(k.NodeKey) || got.LedgerKey != k.LedgerKey {
		return errors.New("seal keys: the sealed blob unseals to other keys")
	}
	return nil
}

// ErrNoKeys means no keys are sealed under this enclave's MRENCLAVE.
var ErrNoKeys = errors.New("no keys sealed for this enclave")

// LoadKeys unseals this enclave's keys. It returns ErrNoKeys when none
// exist; the error also names measurements that do have sealed keys, which
// only a handover can move to this enclave.
func LoadKeys(e tee.Enclave, dataDir, chainID string, nodeID uint64) (*Keys, error) {
	path := layout.Node(dataDir).SealedKeys(e.Identity().UniqueID)
	blob, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		others := OtherSealedKeys(dataDir, e.Identity().UniqueID)
		if len(others) > 0 {
			return nil, fmt.Errorf("%w: keys are sealed by other enclave versions (%s); only a key handover through teeup-agent can move them to MRENCLAVE %s",
				ErrNoKeys, strings.Join(others, ", "), e.Identity().UniqueID.Short())
		}
		return nil, ErrNoKeys
	}
	if err != nil {
		return nil, fmt.Errorf("load keys: %w", err)
	}
	plain, err := tee.Unseal(e, blob, sealAD(chainID, nodeID))
	if err != nil {
		return nil, fmt.Errorf("load keys %s: %w", path, err)
	}
	k, err := DecodeKeys(plain)
	if err != nil {
		return nil, fmt.Errorf("load keys %s: %w", path, err)
	}
	if k.ChainID != chainID || k.NodeID != nodeID {
		return nil, fmt.Errorf("load keys %s: keys belong to node %d of chain %q, not node %d of %q", path, k.NodeID, k.ChainID, nodeID, chainID)
	}
	return k, nil
}

// OtherSealedKeys lists the short measurements of key blobs sealed by
// enclaves other than m.
func OtherSealedKeys(dataDir string, m tee.Measurement) []string {
	ents, err := os.ReadDir(layout.Node(dataDir).Keys())
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range ents {
		sealedTo, ok := layout.SealedKeysMeasurement(e.Name())
		if !ok || sealedTo == m {
			continue
		}
		out = append(out, sealedTo.Short())
	}
	return out
}

// pendingIdentityPath is where a node that has no ledger key yet keeps its
// sealed identity key, so that a restart keeps the key its operator may
// already have registered.
func pendingIdentityPath(dataDir string, m tee.Measurement) string {
	return layout.Node(dataDir).PendingIdentity(m)
}

func identityAD(chainID string, nodeID uint64) []byte {
	return fmt.Appendf(nil, "teeup pending node identity v1|%s|%d", chainID, nodeID)
}

// SavePendingIdentity seals a node identity key alone, under the
// enclave's MRENCLAVE, until the node has the ledger key too.
func SavePendingIdentity(e tee.Enclave, dataDir, chainID string, nodeID uint64, key ed25519.PrivateKey) error {
	blob, err := tee.Seal(e, tee.SealUnique, key.Seed(), identityAD(chainID, nodeID))
	if err != nil {
		return fmt.Errorf("seal node identity: %w", err)
	}
	if err := os.MkdirAll(layout.Node(dataDir).Keys(), 0o700); err != nil {
		return fmt.Errorf("seal node identity: %w", err)
	}
	if err := fsutil.WriteFileAtomic(pendingIdentityPath(dataDir, e.Identity().UniqueID), blob, 0o600); err != nil {
		return fmt.Errorf("seal node identity: %w", err)
	}
	return nil
}

// LoadPendingIdentity unseals the pending identity key; ErrNoKeys if none.
func LoadPendingIdentity(e tee.Enclave, dataDir, chainID string, nodeID uint64) (ed25519.PrivateKey, error) {
	path := pendingIdentityPath(dataDir, e.Identity().UniqueID)
	blob, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, ErrNoKeys
	}
	if err != nil {
		return nil, fmt.Errorf("load node identity: %w", err)
	}
	seed, err := tee.Unseal(e, blob, identityAD(chainID, nodeID))
	if err != nil {
		return nil, fmt.Errorf("load node identity %s: %w", path, err)
	}
	if len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("load node identity %s: %d bytes, want %d", path, len(seed), ed25519.SeedSize)
	}
	return ed25519.NewKeyFromSeed(seed), nil
}

// RemovePendingIdentity deletes the pending identity once the complete
// keys are sealed.
func RemovePendingIdentity(dataDir string, m tee.Measurement) error {
	if err := os.Remove(pendingIdentityPath(dataDir, m)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove pending node identity: %w", err)
	}
	return nil
}
