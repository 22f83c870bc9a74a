package release

import (
	"bytes"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/teeup/teeup/tee"
)

func TestManifestValidateAccepts(t *testing.T) {
	cases := map[string]func(m *Manifest){
		"as is":                       func(m *Manifest) {},
		"no distribute":               func(m *Manifest) { m.Distribute = nil },
		"no migrations or notes":      func(m *Manifest) { m.Migrations, m.Notes = nil, "" },
		"schema 0":                    func(m *Manifest) { m.SchemaVersion = 0 },
		"pre-release version":         func(m *Manifest) { m.Version = "2.0.0-rc.1" },
		"http URL with port":          func(m *Manifest) { m.Node.URL = "http://127.0.0.1:8080/teeup-node" },
		"file URL":                    func(m *Manifest) { m.Node.URL = "file:///opt/teeup/teeup-node" },
		"file URL on localhost":       func(m *Manifest) { m.Node.URL = "file://localhost/opt/teeup/teeup-node" },
		"escaped space in file URL":   func(m *Manifest) { m.Agent.URL = "file:///opt/my%20dir/teeup-agent" },
		"network id of 64 characters": func(m *Manifest) { m.NetworkID = strings.Repeat("a", 64) },
	}
	for name, edit := range cases {
		t.Run(name, func(t *testing.T) {
			m := testManifest()
			edit(&m)
			if err := m.Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
		})
	}
}

func TestManifestValidateRejects(t *testing.T) {
	cases := []struct {
		name string
		edit func(m *Manifest)
		want string
	}{
		{"no network id", func(m *Manifest) { m.NetworkID = "" }, "network id is missing"},
		{"upper-case network id", func(m *Manifest) { m.NetworkID = "Testnet" }, "want [a-z0-9-]"},
		{"network id with space", func(m *Manifest) { m.NetworkID = "test net" }, "want [a-z0-9-]"},
		{"network id too long", func(m *Manifest) { m.NetworkID = strings.Repeat("a", 65) }, "at most 64"},
		{"no version", func(m *Manifest) { m.Version = "" }, "version is empty"},
		{"version not semver", func(m *Manifest) { m.Version = "1.2" }, "want MAJOR.MINOR.PATCH"},
		{"version with v", func(m *Manifest) { m.Version = "v1.2.3" }, "leading v"},
		{"node mrenclave missing", func(m *Manifest) { m.Node.MREnclave = tee.Measurement{} }, "node: mrenclave is missing"},
		{"agent mrsigner missing", func(m *Manifest) { m.Agent.SignerID = tee.Measurement{} }, "agent: mrsigner is missing"},
		{"node sha256 missing", func(m *Manifest) { m.Node.SHA256 = "" }, "node: sha256 is missing"},
		{"node sha256 short", func(m *Manifest) { m.Node.SHA256 = "abcd" }, "want 64 hex digits"},
		{"node sha256 not hex", func(m *Manifest) { m.Node.SHA256 = strings.Repeat("g", 64) }, "is not hex"},
		{"node sha256 upper case", func(m *Manifest) { m.Node.SHA256 = strings.ToUpper(m.Node.SHA256) }, "lower-case"},
		{"node url missing", func(m *Manifest) { m.Node.URL = "" }, "url is missing"},
		{"node url ftp", func(m *Manifest) { m.Node.URL = "ftp://example.com/teeup-node" }, `scheme "ftp" is not http, https or file`},
		{"node url relative path", func(m *Manifest) { m.Node.URL = "bin/teeup-node" }, `scheme "" is not`},
		{"node url javascript", func(m *Manifest) { m.Node.URL = "javascript:alert(1)" }, `scheme "javascript"`},
		{"node url s3", func(m *Manifest) { m.Node.URL = "s3://bucket/teeup-node" }, `scheme "s3"`},
		{"http url without host", func(m *Manifest) { m.Node.URL = "http:///teeup-node" }, "no host"},
		{"https opaque", func(m *Manifest) { m.Node.URL = "https:example.com" }, "no host"},
		{"file url relative", func(m *Manifest) { m.Node.URL = "file:teeup-node" }, "absolute path"},
		{"file url without path", func(m *Manifest) { m.Node.URL = "file://" }, "absolute path"},
		{"file url remote host", func(m *Manifest) { m.Node.URL = "file://server/share/teeup-node" }, "remote host"},
		{"url with query", func(m *Manifest) { m.Agent.URL = "https://example.com/teeup-agent?x=1" }, "query or fragment"},
		{"url with empty query", func(m *Manifest) { m.Agent.URL = "https://example.com/teeup-agent?" }, "query or fragment"},
		{"url with fragment", func(m *Manifest) { m.Agent.URL = "https://example.com/teeup-agent#x" }, "query or fragment"},
		{"url with credentials", func(m *Manifest) { m.Agent.URL = "https://user:pw@example.com/teeup-agent" }, "credentials"},
		{"url unparsable", func(m *Manifest) { m.Agent.URL = "https://exa mple.com/%zz" }, "url"},
		{"url too long", func(m *Manifest) { m.Agent.URL = "https://example.com/" + strings.Repeat("a", 2048) }, "at most 2048"},
		{"node and agent same mrenclave", func(m *Manifest) { m.Agent.MREnclave = m.Node.MREnclave }, "the same MRENCLAVE"},
		{"distribute sha256 missing", func(m *Manifest) { m.Distribute.SHA256 = "" }, "distribute: sha256 is missing"},
		{"distribute url bad scheme", func(m *Manifest) { m.Distribute.URL = "gopher://x/y" }, "distribute: url"},
		{"negative schema", func(m *Manifest) { m.SchemaVersion = -1 }, "schema version -1 is negative"},
		{"empty migration name", func(m *Manifest) { m.Migrations = []string{""} }, "migration 0: name is empty"},
		{"migration name with space", func(m *Manifest) { m.Migrations = []string{"a b"} }, "want [A-Za-z0-9._-]"},
		{"migration name too long", func(m *Manifest) { m.Migrations = []string{strings.Repeat("m", 65)} }, "at most 64"},
		{"migration twice", func(m *Manifest) { m.Migrations = []string{"a", "b", "a"} }, `"a" is listed twice`},
		{"too many migrations", func(m *Manifest) { m.Migrations = make([]string, 65) }, "65 migrations, at most 64"},
		{"notes too long", func(m *Manifest) { m.Notes = strings.Repeat("n", 16<<10+1) }, "notes are 16385 bytes"},
		{"notes not UTF-8", func(m *Manifest) { m.Notes = "\xff" }, "not valid UTF-8"},
		{"no created_at", func(m *Manifest) { m.CreatedAt = time.Time{} }, "created_at is missing"},
		{"created_at in year 1999", func(m *Manifest) { m.CreatedAt = time.Date(1999, 1, 1, 0, 0, 0, 0, time.UTC) }, "year 1999 is implausible"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := testManifest()
			tc.edit(&m)
			err := m.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate = %v, want error containing %q", err, tc.want)
			}
			if _, err := New(m); err == nil {
				t.Errorf("New accepted the invalid manifest")
			}
		})
	}
}

// TestManifestSigningBytesGolden pins the signed encoding of a fixed
// manifest: if encoding/json or the struct ever changes its output, every
// existing signature would break, and this test says so first.
func TestManifestSigningBytesGolden(t *testing.T) {
	m := testManifest()
	got, err := m.SigningBytes()
	if err != nil {
		t.Fatal(err)
	}
	want := ManifestDomain + `{"network_id":"testnet-1","version":"1.2.3",` +
		`"node":{"mrenclave":"` + measurementOf("node").String() + `","sha256":"` + measurementOf("node").String() + `",` +
		`"mrsigner":"` + measurementOf("signer").String() + `","product_id":1,"svn":2,"url":"https://releases.example.com/1.2.3/teeup-node"},` +
		`"agent":{"mrenclave":"` + measurementOf("agent").String() + `","sha256":"` + measurementOf("agent").String() + `",` +
		`"mrsigner":"` + measurementOf("signer").String() + `","product_id":2,"svn":2,"url":"https://releases.example.com/1.2.3/teeup-agent"},` +
		`"distribute":{"sha256":"` + measurementOf("distribute").String() + `","url":"file:///opt/teeup/teeup-distribute"},` +
		`"schema_version":2,"migrations":["account-tx-index"],"notes":"adds \u003cthe\u003e account index \u0026 more",` +
		`"created_at":"2026-11-02T10:30:00Z"}`
	if string(got) != want {
		t.Fatalf("signing bytes changed:\n got %s\nwant %s", got, want)
	}
	// The prefix is the same whatever the manifest.
	m.Version = "1.2.4"
	got2, err := m.SigningBytes()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(got2, []byte(ManifestDomain+"{")) || bytes.Equal(got, got2) {
		t.Fatalf("signing bytes of an edited manifest: %s", got2)
	}
}

func TestManifestSigningBytesTimeZone(t *testing.T) {
	m := testManifest()
	utc, err := m.SigningBytes()
	if err != nil {
		t.Fatal(err)
	}
	// Same instant in another zone is a different text and must be a
	// different signed statement: the bytes are what was signed.
	m.CreatedAt = m.CreatedAt.In(time.FixedZone("x", 3600))
	zoned, err := m.SigningBytes()
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(utc, zoned) {
		t.Fatalf("a zone change did not change the signing bytes")
	}
	if !bytes.Contains(zoned, []byte(`"created_at":"2026-11-02T11:30:00+01:00"`)) {
		t.Fatalf("unexpected time encoding: %s", zoned)
	}
}

func TestComponentSigStructURL(t *testing.T) {
	c := testManifest().Node
	if got, want := c.SigStructURL(), "https://releases.example.com/1.2.3/teeup-node.sig"; got != want {
		t.Fatalf("SigStructURL = %q, want %q", got, want)
	}
}

// hexOf is hex.EncodeToString, short for golden tests.
func hexOf(b []byte) string { return hex.EncodeToString(b) }
