package consensus

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"

	"github.com/teeup/teeup/internal/wire"
)

// BootInfo describes a node process: a random incarnation chosen at start
// and what its raft log held then. A leader that sees a peer's new
// incarnation whose log is shorter than what the peer acknowledged before
// knows the peer lost state (wiped, restored from an older copy) and must
// not trust its old replication progress.
type BootInfo struct {
	Incarnation [16]byte
	LastIndex   uint64
	Commit      uint64
}

// NewIncarnation returns a random incarnation.
func NewIncarnation() ([16]byte, error) {
	var inc [16]byte
	if _, err := rand.Read(inc[:]); err != nil {
		return inc, fmt.Errorf("incarnation: %w", err)
	}
	return inc, nil
}

// hello is the first frame in each direction on a peer connection: the
// sender's node id, its node identity key (the key registered on chain),
// its boot info, and a signature by that key over the TLS session's
// exported keying material, so a hello cannot be replayed on another
// connection or reflected back.
type hello struct {
	Purpose Purpose
	NodeID  uint64
	Key     ed25519.PublicKey
	Boot    BootInfo
	Sig     []byte
}

const (
	helloVersion       = 2
	helloDomain        = "teeup peer hello v2"
	exporterLabel      = "EXPORTER-teeup-peer-hello"
	roleDialer    byte = 'D'
	roleListener  byte = 'L'
)

// ErrBadHello is wrapped by errors about a hello that does not verify.
var ErrBadHello = errors.New("bad peer hello")

func (h *hello) body() []byte {
	e := wire.NewEncoder(96)
	e.U8(helloVersion)
	e.U8(uint8(h.Purpose))
	e.U64(h.NodeID)
	e.Fixed(h.Key)
	e.Fixed(h.Boot.Incarnation[:])
	e.U64(h.Boot.LastIndex)
	e.U64(h.Boot.Commit)
	return e.Bytes()
}

func signingBytes(exported []byte, role byte, body []byte) []byte {
	out := make([]byte, 0, len(helloDomain)+1+len(exported)+1+len(body))
	out = append(out, helloDomain...)
	out = append(out, 0)
	out = append(out, exported...)
	out = append(out, role)
	return append(out, body...)
}

func exported(cs tls.ConnectionState) ([]byte, error) {
	km, err := cs.ExportKeyingMaterial(exporterLabel, nil, 32)
	if err != nil {
		return nil, fmt.Errorf("hello: export keying material: %w", err)
	}
	return km, nil
}

// signHello builds the encoded, signed hello for this side of a connection.
func signHello(cs tls.ConnectionState, role byte, purpose Purpose, id uint64, key ed25519.PrivateKey, boot BootInfo) ([]byte, error) {
	if len(key) != ed25519.PrivateKeySize {
		return nil, errors.New("hello: no node identity key")
	}
	h := &hello{Purpose: purpose, NodeID: id, Key: key.Public().(ed25519.PublicKey), Boot: boot}
	km, err := exported(cs)
	if err != nil {
		return nil, err
	}
	body := h.body()
	sig := ed25519.Sign(key, signingBytes(km, role, body))
	e := wire.NewEncoder(len(body) + 64)
	e.Fixed(body)
	e.Fixed(sig)
	return e.Bytes(), nil
}

// decodeHello parses a hello without checking its signature.
func decodeHello(b []byte) (*hello, []byte, error) {
	d := wire.NewDecoder("peer hello", b)
	ver := d.U8("version")
	purpose := Purpose(d.U8("purpose"))
	h := &hello{Purpose: purpose, NodeID: d.U64("node id")}
	key := make([]byte, ed25519.PublicKeySize)
	d.Fixed("key", key)
	h.Key = key
	d.Fixed("incarnation", h.Boot.Incarnation[:])
	h.Boot.LastIndex = d.U64("last index")
	h.Boot.Commit = d.U64("commit")
	sig := make([]byte, ed25519.SignatureSize)
	d.Fixed("signature", sig)
	if err := d.Finish(); err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrBadHello, err)
	}
	if ver != helloVersion {
		return nil, nil, fmt.Errorf("%w: version %d, want %d", ErrBadHello, ver, helloVersion)
	}
	if h.Purpose < PurposeRaft || h.Purpose > PurposeForward {
		return nil, nil, fmt.Errorf("%w: unknown purpose %d", ErrBadHello, h.Purpose)
	}
	if h.NodeID == 0 {
		return nil, nil, fmt.Errorf("%w: node id 0", ErrBadHello)
	}
	h.Sig = sig
	return h, b[:len(b)-ed25519.SignatureSize], nil
}

// verifyHello parses and checks a hello sent by the other side (role is the
// sender's role) of the connection whose state is cs.
func verifyHello(cs tls.ConnectionState, role byte, b []byte) (*hello, error) {
	h, body, err := decodeHello(b)
	if err != nil {
		return nil, err
	}
	km, err := exported(cs)
	if err != nil {
		return nil, err
	}
	if !ed25519.Verify(h.Key, signingBytes(km, role, body), h.Sig) {
		return nil, fmt.Errorf("%w: signature of node %d does not verify", ErrBadHello, h.NodeID)
	}
	return h, nil
}
