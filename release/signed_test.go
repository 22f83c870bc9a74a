package release

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestSignAndVerify(t *testing.T) {
	keys := testKeys(3)
	sr := signedRelease(t, keys[0], keys[2])
	if err := sr.Verify(groupOf(keys, 2)); err != nil {
		t.Fatalf("Verify 2 of 3 with t=2: %v", err)
	}
	for _, set := range [][]Signature{sr.Signatures, sr.NodeID.Signatures, sr.AgentID.Signatures} {
		if len(set) != 2 {
			t.Fatalf("signature set has %d entries, want 2", len(set))
		}
	}
	err := sr.Verify(groupOf(keys, 3))
	var te *ThresholdError
	if !errors.As(err, &te) || te.Have != 2 || te.Need != 3 {
		t.Fatalf("Verify with t=3 = %v, want 2 of 3 required signatures", err)
	}
}

func TestSignIsIdempotent(t *testing.T) {
	keys := testKeys(2)
	sr := signedRelease(t, keys[0], keys[0], keys[1], keys[0])
	for _, set := range [][]Signature{sr.Signatures, sr.NodeID.Signatures, sr.AgentID.Signatures} {
		if len(set) != 2 {
			t.Fatalf("after signing with key 0 three times and key 1 once: %d signatures, want 2", len(set))
		}
	}
	if err := sr.Verify(groupOf(keys, 2)); err != nil {
		t.Fatal(err)
	}
}

func TestSignRefreshesStaleSignature(t *testing.T) {
	keys := testKeys(2)
	sr := signedRelease(t, keys[0], keys[1])
	sr.Manifest.Notes = "edited after signing"
	if err := sr.Verify(groupOf(keys, 2)); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("Verify of edited manifest = %v, want ErrBadSignature", err)
	}
	if err := Sign(sr, keys[0]); err != nil {
		t.Fatal(err)
	}
	// Key 1's signature is still over the old manifest.
	if err := sr.Verify(groupOf(keys, 1)); !errors.Is(err, ErrBadSignature) || !strings.Contains(err.Error(), pubHex(keys[1])) {
		t.Fatalf("Verify with a stale signature by key 1 = %v, want ErrBadSignature naming key 1", err)
	}
	if err := Sign(sr, keys[1]); err != nil {
		t.Fatal(err)
	}
	if err := sr.Verify(groupOf(keys, 2)); err != nil {
		t.Fatalf("Verify after both re-signed: %v", err)
	}
}

func TestSignRejects(t *testing.T) {
	keys := testKeys(1)
	cases := []struct {
		name string
		sr   func() *SignedRelease
		key  ed25519.PrivateKey
		want string
	}{
		{"short key", func() *SignedRelease { return signedRelease(t) }, keys[0][:32], "private key is 32 bytes"},
		{"nil key", func() *SignedRelease { return signedRelease(t) }, nil, "private key is 0 bytes"},
		{"invalid manifest", func() *SignedRelease {
			sr := signedRelease(t)
			sr.Manifest.Version = "latest"
			return sr
		}, keys[0], "want MAJOR.MINOR.PATCH"},
		{"inconsistent node id", func() *SignedRelease {
			sr := signedRelease(t)
			sr.NodeID.MREnclave = measurementOf("other")
			return sr
		}, keys[0], "node enclave id is for MRENCLAVE"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sr := tc.sr()
			before := *sr
			err := Sign(sr, tc.key)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Sign = %v, want error containing %q", err, tc.want)
			}
			if len(sr.Signatures) != len(before.Signatures) || len(sr.NodeID.Signatures) != 0 || len(sr.AgentID.Signatures) != 0 {
				t.Fatalf("a refused Sign added signatures")
			}
		})
	}
}

func TestVerifyRejectsEdits(t *testing.T) {
	keys := testKeys(4)
	members, outsider := keys[:3], keys[3]
	kmg := groupOf(members, 2)
	corrupt := func(s []Signature, i int) {
		b, _ := hex.DecodeString(s[i].Sig)
		b[0] ^= 0x80
		s[i].Sig = hex.EncodeToString(b)
	}
	cases := []struct {
		name   string
		edit   func(sr *SignedRelease)
		wantIs error
		want   string
	}{
		// Manifest edited after signing: the signatures no longer verify.
		{"version", func(sr *SignedRelease) { sr.Manifest.Version = "1.2.4" }, ErrBadSignature, "manifest"},
		{"node url", func(sr *SignedRelease) { sr.Manifest.Node.URL = "https://evil.example.com/teeup-node" }, ErrBadSignature, "manifest"},
		{"agent url", func(sr *SignedRelease) { sr.Manifest.Agent.URL = "file:///tmp/teeup-agent" }, ErrBadSignature, "manifest"},
		{"node sha256", func(sr *SignedRelease) { sr.Manifest.Node.SHA256 = measurementOf("x").String() }, ErrBadSignature, "manifest"},
		{"node svn", func(sr *SignedRelease) { sr.Manifest.Node.SVN++ }, ErrBadSignature, "manifest"},
		{"agent product", func(sr *SignedRelease) { sr.Manifest.Agent.ProductID++ }, ErrBadSignature, "manifest"},
		{"node signer", func(sr *SignedRelease) { sr.Manifest.Node.SignerID = measurementOf("other signer") }, ErrBadSignature, "manifest"},
		{"schema", func(sr *SignedRelease) { sr.Manifest.SchemaVersion = 3 }, ErrBadSignature, "manifest"},
		{"migrations", func(sr *SignedRelease) { sr.Manifest.Migrations = nil }, ErrBadSignature, "manifest"},
		{"notes", func(sr *SignedRelease) { sr.Manifest.Notes += "!" }, ErrBadSignature, "manifest"},
		{"created_at", func(sr *SignedRelease) { sr.Manifest.CreatedAt = sr.Manifest.CreatedAt.Add(time.Second) }, ErrBadSignature, "manifest"},
		{"distribute removed", func(sr *SignedRelease) { sr.Manifest.Distribute = nil }, ErrBadSignature, "manifest"},
		{"distribute url", func(sr *SignedRelease) { sr.Manifest.Distribute.URL = "https://evil.example.com/d" }, ErrBadSignature, "manifest"},
		{"node mrenclave and its id", func(sr *SignedRelease) {
			m := measurementOf("evil node")
			sr.Manifest.Node.MREnclave, sr.Manifest.Node.SHA256, sr.NodeID.MREnclave = m, m.String(), m
		}, ErrBadSignature, "manifest"},
		{"node mrenclave and its id, manifest re-signed by one", func(sr *SignedRelease) {
			m := measurementOf("evil node")
			sr.Manifest.Node.MREnclave, sr.NodeID.MREnclave = m, m
			msg, _ := sr.Manifest.SigningBytes()
			sr.Signatures = []Signature{sigBy(members[0], msg), sigBy(members[1], msg)}
		}, ErrBadSignature, "node enclave id"},
		{"network id everywhere", func(sr *SignedRelease) {
			sr.Manifest.NetworkID, sr.NodeID.NetworkID, sr.AgentID.NetworkID = "othernet", "othernet", "othernet"
		}, ErrBadSignature, "manifest"},

		// Enclave IDs that do not match the manifest.
		{"node id for another network", func(sr *SignedRelease) { sr.NodeID.NetworkID = "othernet" }, nil, `node enclave id is for network "othernet"`},
		{"agent id for another network", func(sr *SignedRelease) { sr.AgentID.NetworkID = "othernet" }, nil, `agent enclave id is for network "othernet"`},
		{"node id with agent role", func(sr *SignedRelease) { sr.NodeID.Role = RoleAgent }, nil, `node enclave id names role "agent"`},
		{"ids swapped", func(sr *SignedRelease) { sr.NodeID, sr.AgentID = sr.AgentID, sr.NodeID }, nil, `node enclave id names role "agent"`},
		{"node id for another mrenclave", func(sr *SignedRelease) { sr.NodeID.MREnclave = measurementOf("x") }, nil, "node enclave id is for MRENCLAVE"},
		{"agent id for the node's mrenclave", func(sr *SignedRelease) { sr.AgentID.MREnclave = sr.Manifest.Node.MREnclave }, nil, "agent enclave id is for MRENCLAVE"},

		// Signature sets.
		{"manifest signature dropped", func(sr *SignedRelease) { sr.Signatures = sr.Signatures[:1] }, nil, "1 of 2 required signatures"},
		{"node id signature dropped", func(sr *SignedRelease) { sr.NodeID.Signatures = sr.NodeID.Signatures[1:] }, nil, "node enclave id"},
		{"agent id signatures dropped", func(sr *SignedRelease) { sr.AgentID.Signatures = nil }, nil, "0 of 2 required signatures"},
		{"manifest signature duplicated", func(sr *SignedRelease) {
			sr.Signatures = []Signature{sr.Signatures[0], sr.Signatures[0]}
		}, nil, "1 of 2 required signatures"},
		{"agent id signature duplicated", func(sr *SignedRelease) {
			sr.AgentID.Signatures = []Signature{sr.AgentID.Signatures[1], sr.AgentID.Signatures[1]}
		}, nil, "agent enclave id"},
		{"outsider signature on manifest", func(sr *SignedRelease) {
			msg, _ := sr.Manifest.SigningBytes()
			sr.Signatures = append(sr.Signatures, sigBy(outsider, msg))
		}, ErrNotMember, "signed by " + pubHex(outsider) + ", which is not a member of the group"},
		{"outsider signature on node id", func(sr *SignedRelease) {
			sr.NodeID.Signatures = append(sr.NodeID.Signatures, sigBy(outsider, sr.NodeID.SigningBytes()))
		}, ErrNotMember, "not a member"},
		{"corrupted manifest signature", func(sr *SignedRelease) { corrupt(sr.Signatures, 1) }, ErrBadSignature, "manifest"},
		{"corrupted agent id signature", func(sr *SignedRelease) { corrupt(sr.AgentID.Signatures, 0) }, ErrBadSignature, "agent enclave id"},
		{"manifest signatures copied onto node id", func(sr *SignedRelease) {
			sr.NodeID.Signatures = append([]Signature(nil), sr.Signatures...)
		}, ErrBadSignature, "node enclave id"},
		{"node id signatures copied onto agent id", func(sr *SignedRelease) {
			sr.AgentID.Signatures = append([]Signature(nil), sr.NodeID.Signatures...)
		}, ErrBadSignature, "agent enclave id"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sr := signedRelease(t, members[0], members[1])
			if err := sr.Verify(kmg); err != nil {
				t.Fatalf("Verify before the edit: %v", err)
			}
			tc.edit(sr)
			err := sr.Verify(kmg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Verify = %v, want error containing %q", err, tc.want)
			}
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Fatalf("Verify = %v, want errors.Is %v", err, tc.wantIs)
			}
		})
	}
}

func TestVerifyRejectsInvalidGroup(t *testing.T) {
	keys := testKeys(2)
	sr := signedRelease(t, keys...)
	for _, g := range []Group{{}, {Keys: []string{pubHex(keys[0])}, Threshold: 2}, {Keys: []string{"nothex"}, Threshold: 1}} {
		if err := sr.Verify(g); err == nil || !strings.Contains(err.Error(), "key management group") {
			t.Errorf("Verify with group %+v = %v, want a group error", g, err)
		}
	}
}

func TestSaveLoadRoundTrip(t *testing.T) {
	keys := testKeys(3)
	sr := signedRelease(t, keys[1], keys[2])
	// A time in a non-UTC zone, with a monotonic reading, must survive too.
	sr.Manifest.CreatedAt = time.Now().In(time.FixedZone("", -5*3600))
	if err := Sign(sr, keys[1]); err != nil {
		t.Fatal(err)
	}
	if err := Sign(sr, keys[2]); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "manifest.json")
	if err := sr.Save(path); err != nil {
		t.Fatalf("Save: %v", err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, want 0644", st.Mode().Perm())
	}
	got, err := Load(path)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if err := got.Verify(groupOf(keys, 2)); err != nil {
		t.Fatalf("Verify after Save/Load: %v", err)
	}
	a, _ := sr.Marshal()
	b, _ := got.Marshal()
	if !bytes.Equal(a, b) {
		t.Fatalf("re-encoding differs:\n%s\n%s", a, b)
	}
	want := *sr
	want.Manifest.CreatedAt = want.Manifest.CreatedAt.Round(0)
	if !want.Manifest.CreatedAt.Equal(got.Manifest.CreatedAt) {
		t.Fatalf("created_at %v, want %v", got.Manifest.CreatedAt, want.Manifest.CreatedAt)
	}
	want.Manifest.CreatedAt, got.Manifest.CreatedAt = time.Time{}, time.Time{}
	if !reflect.DeepEqual(&want, got) {
		t.Fatalf("Load returned %+v, want %+v", got, want)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("directory holds %d entries after Save, want only the file", len(entries))
	}
}

func TestSaveReplacesSaveNewRefuses(t *testing.T) {
	keys := testKeys(1)
	dir := t.TempDir()
	path := filepath.Join(dir, "manifest.json")
	sr := signedRelease(t)
	if err := sr.SaveNew(path); err != nil {
		t.Fatalf("SaveNew: %v", err)
	}
	before, _ := os.ReadFile(path)
	if err := Sign(sr, keys[0]); err != nil {
		t.Fatal(err)
	}
	err := sr.SaveNew(path)
	if !errors.Is(err, os.ErrExist) {
		t.Fatalf("SaveNew over an existing file = %v, want os.ErrExist", err)
	}
	after, _ := os.ReadFile(path)
	if !bytes.Equal(before, after) {
		t.Fatalf("a refused SaveNew changed the file")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("a refused SaveNew left %d entries", len(entries))
	}
	if err := sr.Save(path); err != nil {
		t.Fatalf("Save: %v", err)
	}
	got, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Signatures) != 1 {
		t.Fatalf("Save did not replace the file")
	}
}

func TestSaveIntoMissingDirectory(t *testing.T) {
	sr := signedRelease(t)
	path := filepath.Join(t.TempDir(), "no", "such", "manifest.json")
	if err := sr.Save(path); err == nil {
		t.Fatal("Save into a missing directory succeeded")
	}
}

func TestParseRejects(t *testing.T) {
	good, err := signedRelease(t, testKeys(1)...).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	replace := func(old, new string) []byte {
		if !bytes.Contains(good, []byte(old)) {
			t.Fatalf("test data does not contain %q", old)
		}
		return bytes.Replace(good, []byte(old), []byte(new), 1)
	}
	cases := []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "EOF"},
		{"not JSON", []byte("manifest"), "invalid character"},
		{"null", []byte("null"), "not a JSON object"},
		{"array", []byte("[]"), "not a JSON object"},
		{"string", []byte(`"x"`), "not a JSON object"},
		{"truncated", good[:len(good)/2], "unexpected EOF"},
		{"unknown top-level field", replace(`"manifest": {`, `"extra": 1, "manifest": {`), `unknown field "extra"`},
		{"unknown nested field", replace(`"network_id": "testnet-1",`, `"network_id": "testnet-1", "channel": "beta",`), `unknown field "channel"`},
		{"duplicate key", replace(`"version": "1.2.3",`, `"version": "1.2.3", "version": "9.9.9",`), `"version" appears twice`},
		{"upper-case key", replace(`"version": "1.2.3",`, `"VERSION": "1.2.3",`), `"VERSION" is not a lower-case field name`},
		{"case variant of a key", replace(`"version": "1.2.3",`, `"version": "1.2.3", "Version": "9.9.9",`), `"Version" is not a lower-case field name`},
		{"unicode-folded key", replace(`"svn": 2`, `"\u017fvn": 2`), "is not a lower-case field name"},
		{"trailing object", append(append([]byte(nil), good...), "{}"...), "data after the JSON object"},
		{"trailing garbage", append(append([]byte(nil), good...), "x"...), "invalid character"},
		{"measurement not hex", replace(`"mrenclave": "`, `"mrenclave": "zz`), "not hex"},
		{"measurement short", replace(`"mrsigner": "`, `"mrsigner": "00`), "33 bytes, want 32"},
		{"product id too big", replace(`"product_id": 1`, `"product_id": 65536`), "cannot unmarshal"},
		{"product id negative", replace(`"product_id": 1`, `"product_id": -1`), "cannot unmarshal"},
		{"product id float", replace(`"product_id": 1`, `"product_id": 1.5`), "cannot unmarshal"},
		{"bad time", replace(`"created_at": "2026`, `"created_at": "x2026`), "cannot parse"},
		{"signatures not an array", replace(`"signatures": [`, `"signatures": 5, "x": [`), "cannot unmarshal"},
		{"too large", append(append([]byte(nil), good[:len(good)-2]...), []byte(`,"notes":"`+strings.Repeat("a", MaxFileSize)+`"}`)...), "at most 1048576"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sr, err := Parse(tc.data)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Parse = %v, %v; want error containing %q", sr, err, tc.want)
			}
			path := filepath.Join(t.TempDir(), "manifest.json")
			if err := os.WriteFile(path, tc.data, 0o644); err != nil {
				t.Fatal(err)
			}
			if _, err := Load(path); err == nil || !strings.Contains(err.Error(), path) {
				t.Fatalf("Load = %v, want an error naming the file", err)
			}
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "missing.json"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Load of a missing file = %v, want os.ErrNotExist", err)
	}
}

func FuzzParse(f *testing.F) {
	keys := testKeys(3)
	kmg := groupOf(keys, 2)
	signed, err := signedRelease(f, keys[0], keys[1]).Marshal()
	if err != nil {
		f.Fatal(err)
	}
	unsigned, err := signedRelease(f).Marshal()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(signed)
	f.Add(unsigned)
	f.Add(bytes.ReplaceAll(signed, []byte("\n"), nil))
	f.Add([]byte(`{"manifest":{},"signatures":null}`))
	f.Add([]byte(`{"manifest":{"version":"1.2.3","version":"2.0.0"}}`))
	f.Add([]byte(`{"node_enclave_id":{"signatures":[{"key":"00","sig":"00"}]}}`))
	f.Add([]byte("[]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		sr, err := Parse(data)
		if err != nil {
			return
		}
		verifyErr := sr.Verify(kmg)
		_ = sr.Check()
		_, _ = sr.NodeID.MarshalBinary()
		// The canonical encoding must be stable: what Parse accepts
		// re-encodes to bytes that parse to the same encoding, and the
		// verdict of Verify does not change.
		enc, err := sr.Marshal()
		if err != nil {
			t.Fatalf("Marshal of a parsed release: %v", err)
		}
		sr2, err := Parse(enc)
		if err != nil {
			t.Fatalf("Parse of a re-encoded release: %v\n%s", err, enc)
		}
		enc2, err := sr2.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding not stable:\n%s\n%s", enc, enc2)
		}
		if verifyErr2 := sr2.Verify(kmg); (verifyErr == nil) != (verifyErr2 == nil) {
			t.Fatalf("Verify changed after a round trip: %v then %v", verifyErr, verifyErr2)
		}
	})
}

func BenchmarkVerify(b *testing.B) {
	keys := testKeys(5)
	sr := signedRelease(b, keys[0], keys[2], keys[4])
	kmg := groupOf(keys, 3)
	b.ReportAllocs()
	for b.Loop() {
		if err := sr.Verify(kmg); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParse(b *testing.B) {
	keys := testKeys(5)
	data, err := signedRelease(b, keys[0], keys[2], keys[4]).Marshal()
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(data); err != nil {
			b.Fatal(err)
		}
	}
}
