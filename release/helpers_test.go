package release

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/teeup/teeup/tee"
	"github.com/teeup/teeup/tee/sim"
)

// testKeys returns n deterministic ed25519 keys; key i has seed byte i+1.
func testKeys(n int) []ed25519.PrivateKey {
	keys := make([]ed25519.PrivateKey, n)
	for i := range keys {
		seed := make([]byte, ed25519.SeedSize)
		for j := range seed {
			seed[j] = byte(i + 1)
		}
		keys[i] = ed25519.NewKeyFromSeed(seed)
	}
	return keys
}

// pubHex returns the public key of k as hex.
func pubHex(k ed25519.PrivateKey) string {
	return hex.EncodeToString(k.Public().(ed25519.PublicKey))
}

// groupOf returns the group of keys with threshold t.
func groupOf(keys []ed25519.PrivateKey, t int) Group {
	g := Group{Threshold: t}
	for _, k := range keys {
		g.Keys = append(g.Keys, pubHex(k))
	}
	return g
}

// sigBy signs msg with k.
func sigBy(k ed25519.PrivateKey, msg []byte) Signature {
	return Signature{Key: pubHex(k), Sig: hex.EncodeToString(ed25519.Sign(k, msg))}
}

// measurementOf returns SHA-256 of s as a measurement.
func measurementOf(s string) tee.Measurement { return sha256.Sum256([]byte(s)) }

// testManifest returns a fixed valid manifest.
func testManifest() Manifest {
	node, agent := measurementOf("node"), measurementOf("agent")
	signer := measurementOf("signer")
	return Manifest{
		NetworkID: "testnet-1",
		Version:   "1.2.3",
		Node: Component{
			MREnclave: node, SHA256: node.String(), SignerID: signer,
			ProductID: 1, SVN: 2, URL: "https://releases.example.com/1.2.3/teeup-node",
		},
		Agent: Component{
			MREnclave: agent, SHA256: agent.String(), SignerID: signer,
			ProductID: 2, SVN: 2, URL: "https://releases.example.com/1.2.3/teeup-agent",
		},
		Distribute:    &Artifact{SHA256: measurementOf("distribute").String(), URL: "file:///opt/teeup/teeup-distribute"},
		SchemaVersion: 2,
		Migrations:    []string{"account-tx-index"},
		Notes:         "adds <the> account index & more",
		CreatedAt:     time.Date(2026, 11, 2, 10, 30, 0, 0, time.UTC),
	}
}

// signedRelease returns testManifest signed by keys.
func signedRelease(t testing.TB, keys ...ed25519.PrivateKey) *SignedRelease {
	t.Helper()
	sr, err := New(testManifest())
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	for _, k := range keys {
		if err := Sign(sr, k); err != nil {
			t.Fatalf("Sign: %v", err)
		}
	}
	return sr
}

// writeSignedBinary writes a binary with content to dir/name and signs it
// with signer as product/svn.
func writeSignedBinary(t testing.TB, dir, name, content string, signer ed25519.PrivateKey, product, svn uint16) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := sim.SignBinary(p, product, svn, signer); err != nil {
		t.Fatalf("SignBinary: %v", err)
	}
	return p
}
