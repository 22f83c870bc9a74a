package remoteadmin

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/teeup/teeup/attest"
	"github.com/teeup/teeup/tee"
	"github.com/teeup/teeup/tee/sim"
)

const testChain = "testnet"

// world is a CA, two platforms (one under another root) and operator keys.
type world struct {
	root, otherRoot string
	plat, foreign   *sim.Platform
	id, otherID     tee.Identity
	own, reader     ed25519.PrivateKey
	stranger        ed25519.PrivateKey
}

func newWorld(t *testing.T) *world {
	t.Helper()
	dir := t.TempDir()
	ca, err := sim.InitCA(filepath.Join(dir, "ca"))
	if err != nil {
		t.Fatal(err)
	}
	other, err := sim.InitCA(filepath.Join(dir, "other"))
	if err != nil {
		t.Fatal(err)
	}
	w := &world{root: filepath.Join(dir, "ca", sim.RootCertFile), otherRoot: filepath.Join(dir, "other", sim.RootCertFile)}
	if w.plat, err = sim.InitPlatform(filepath.Join(dir, "p1"), ca); err != nil {
		t.Fatal(err)
	}
	if w.foreign, err = sim.InitPlatform(filepath.Join(dir, "p2"), other); err != nil {
		t.Fatal(err)
	}
	w.id.UniqueID[0], w.id.SignerID[0] = 0xaa, 0x51
	w.otherID.UniqueID[0], w.otherID.SignerID[0] = 0xbb, 0x51
	for _, k := range []*ed25519.PrivateKey{&w.own, &w.reader, &w.stranger} {
		if _, *k, err = ed25519.GenerateKey(rand.Reader); err != nil {
			t.Fatal(err)
		}
	}
	return w
}

func keyOf(t *testing.T, k ed25519.PrivateKey) Key {
	t.Helper()
	key, err := KeyOf(k.Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// server is a remote admin server of node 1 whose API counts the requests
// that reached it.
type server struct {
	addr    string
	reached atomic.Int32
}

func (w *world) serve(t *testing.T, creds *attest.Credentials, policy func(context.Context) (Policy, error)) *server {
	t.Helper()
	s := &server{}
	api := http.NewServeMux()
	ok := func(w http.ResponseWriter, r *http.Request) {
		s.reached.Add(1)
		_, _ = io.WriteString(w, `{"ok":true}`)
	}
	api.HandleFunc("GET /v1/status", ok)
	api.HandleFunc("POST /v1/ingress", ok)
	api.HandleFunc("POST /v1/attest-peers", ok)
	h := Handler(api, HandlerOptions{Role: RoleNode, NodeID: 1, Required: ReadsAre("/v1/attest-peers"), Policy: policy})
	addr, stop, err := Serve("127.0.0.1:0", creds, h, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	s.addr = addr
	return s
}

func (w *world) nodeCreds(t *testing.T, p *sim.Platform, id tee.Identity, role Role, chain string, nodeID uint64) *attest.Credentials {
	t.Helper()
	c, err := NewServerCredentials(p.NewEnclave(id), role, chain, nodeID)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// call makes one request through a Target and returns the HTTP status, or
// the error.
func call(t *testing.T, tg Target, method, path string) (int, error) {
	t.Helper()
	tr, err := tg.Transport(RoleNode)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, tg.BaseURL()+path, strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set(HeaderNodeID, strconv.FormatUint(tg.NodeID, 10))
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var e apiError
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		if json.Unmarshal(raw, &e) != nil {
			return resp.StatusCode, fmt.Errorf("HTTP %d: %s", resp.StatusCode, raw)
		}
		if s := CodeError(e.Code); s != nil {
			return resp.StatusCode, fmt.Errorf("%w (%s)", s, e.Message)
		}
		return resp.StatusCode, errors.New(e.Message)
	}
	if got := resp.Header.Get(HeaderNodeID); got != strconv.FormatUint(tg.NodeID, 10) {
		return resp.StatusCode, fmt.Errorf("answered by node %q", got)
	}
	return resp.StatusCode, nil
}

// TestAuthorization is the table of who may do what on a host over the
// remote admin API, and of which servers a client refuses.
func TestAuthorization(t *testing.T) {
	w := newWorld(t)
	policy := Policy{Own: []Key{keyOf(t, w.own)}, Readers: []Key{keyOf(t, w.reader)}}
	good := w.serve(t, w.nodeCreds(t, w.plat, w.id, RoleNode, testChain, 1), func(context.Context) (Policy, error) { return policy, nil })
	debugID := w.id
	debugID.Debug = true
	servers := map[string]*server{
		"good":          good,
		"other-mr":      w.serve(t, w.nodeCreds(t, w.plat, w.otherID, RoleNode, testChain, 1), func(context.Context) (Policy, error) { return policy, nil }),
		"foreign-root":  w.serve(t, w.nodeCreds(t, w.foreign, w.id, RoleNode, testChain, 1), func(context.Context) (Policy, error) { return policy, nil }),
		"debug":         w.serve(t, w.nodeCreds(t, w.plat, debugID, RoleNode, testChain, 1), func(context.Context) (Policy, error) { return policy, nil }),
		"agent-role":    w.serve(t, w.nodeCreds(t, w.plat, w.id, RoleAgent, testChain, 1), func(context.Context) (Policy, error) { return policy, nil }),
		"other-chain":   w.serve(t, w.nodeCreds(t, w.plat, w.id, RoleNode, "othernet", 1), func(context.Context) (Policy, error) { return policy, nil }),
		"node-2":        w.serve(t, w.nodeCreds(t, w.plat, w.id, RoleNode, testChain, 2), func(context.Context) (Policy, error) { return policy, nil }),
		"not-attested":  w.serve(t, plainCreds(t), func(context.Context) (Policy, error) { return policy, nil }),
		"policy-broken": w.serve(t, w.nodeCreds(t, w.plat, w.id, RoleNode, testChain, 1), func(context.Context) (Policy, error) { return Policy{}, errors.New("ledger closed") }),
	}
	mr := w.id.UniqueID.String()

	tests := []struct {
		name         string
		server       string
		key          ed25519.PrivateKey
		nodeID       uint64
		root         string
		method, path string
		wantStatus   int
		wantErr      error
	}{
		{"own operator writes", "good", w.own, 1, w.root, "POST", "/v1/ingress", 200, nil},
		{"own operator reads", "good", w.own, 1, w.root, "GET", "/v1/status", 200, nil},
		{"NOG member or member operator reads", "good", w.reader, 1, w.root, "GET", "/v1/status", 200, nil},
		{"reader probes attestation (a read)", "good", w.reader, 1, w.root, "POST", "/v1/attest-peers", 200, nil},
		{"another operator's write refused", "good", w.reader, 1, w.root, "POST", "/v1/ingress", 403, ErrForbidden},
		{"a write to an unknown path is a write", "good", w.reader, 1, w.root, "POST", "/v1/anything", 403, ErrForbidden},
		{"stranger's read refused", "good", w.stranger, 1, w.root, "GET", "/v1/status", 403, ErrForbidden},
		{"stranger's write refused", "good", w.stranger, 1, w.root, "POST", "/v1/ingress", 403, ErrForbidden},
		{"host 1 addressed as node 2 refused", "good", w.own, 2, w.root, "GET", "/v1/status", 0, ErrWrongNode},
		{"a node-2 server addressed as node 1 refused", "node-2", w.own, 1, w.root, "GET", "/v1/status", 0, ErrWrongNode},
		{"the agent's API addressed as the node's refused", "agent-role", w.own, 1, w.root, "GET", "/v1/status", 0, ErrWrongNode},
		{"another chain's node refused", "other-chain", w.own, 1, w.root, "GET", "/v1/status", 0, ErrWrongNode},
		{"non-attested server refused", "not-attested", w.own, 1, w.root, "GET", "/v1/status", 0, ErrServerNotAttested},
		{"server of another measurement refused", "other-mr", w.own, 1, w.root, "GET", "/v1/status", 0, ErrServerNotAttested},
		{"server under another root refused", "foreign-root", w.own, 1, w.root, "GET", "/v1/status", 0, ErrServerNotAttested},
		{"debug enclave refused", "debug", w.own, 1, w.root, "GET", "/v1/status", 0, ErrServerNotAttested},
		{"client pinning another root refuses the server", "good", w.own, 1, w.otherRoot, "GET", "/v1/status", 0, ErrServerNotAttested},
		{"unreadable policy: unavailable, not allowed", "policy-broken", w.own, 1, w.root, "GET", "/v1/status", 503, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := servers[tt.server]
			before := s.reached.Load()
			tg := Target{Addr: s.addr, NodeID: tt.nodeID, ChainID: testChain, RootPath: tt.root, MREnclaves: []string{mr}, OperatorKey: tt.key}
			status, err := call(t, tg, tt.method, tt.path)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
			} else if tt.wantStatus == 200 && err != nil {
				t.Fatalf("err = %v", err)
			}
			if status != tt.wantStatus {
				t.Fatalf("status %d, want %d (err %v)", status, tt.wantStatus, err)
			}
			reached := s.reached.Load() - before
			if want := int32(0); tt.wantStatus == 200 {
				if reached != 1 {
					t.Fatalf("the API saw %d requests, want 1", reached)
				}
			} else if reached != want {
				t.Fatalf("a refused request reached the API (%d)", reached)
			}
		})
	}
}

// TestClientWithoutOperatorKey: a client that presents no certificate, or
// a non-ed25519 one, fails the handshake and reaches nothing.
func TestClientWithoutOperatorKey(t *testing.T) {
	w := newWorld(t)
	s := w.serve(t, w.nodeCreds(t, w.plat, w.id, RoleNode, testChain, 1), func(context.Context) (Policy, error) { return Policy{}, nil })
	ecCert := plainCreds(t).Certificate
	for name, certs := range map[string][]tls.Certificate{"no certificate": nil, "ECDSA certificate": {ecCert}} {
		t.Run(name, func(t *testing.T) {
			cfg := &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true, Certificates: certs}
			tr := &http.Transport{TLSClientConfig: cfg}
			defer tr.CloseIdleConnections()
			resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get("https://" + s.addr + "/v1/status")
			if err == nil {
				resp.Body.Close()
				t.Fatalf("a request without an operator key got HTTP %d", resp.StatusCode)
			}
			if s.reached.Load() != 0 {
				t.Fatal("the request reached the API")
			}
		})
	}
}

// TestCheckNodeID: on any transport (the unix socket too), a request for
// another node is refused before it does anything; every answer names the
// node.
func TestCheckNodeID(t *testing.T) {
	reached := 0
	h := CheckNodeID(3, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { reached++ }))
	for _, tt := range []struct {
		header string
		status int
	}{{"", 200}, {"3", 200}, {"4", http.StatusMisdirectedRequest}, {"x", http.StatusMisdirectedRequest}} {
		rec := &recorder{header: http.Header{}}
		req, _ := http.NewRequest("POST", "/v1/stop", nil)
		if tt.header != "" {
			req.Header.Set(HeaderNodeID, tt.header)
		}
		before := reached
		h.ServeHTTP(rec, req)
		if rec.status == 0 {
			rec.status = 200
		}
		if rec.status != tt.status || rec.header.Get(HeaderNodeID) != "3" {
			t.Errorf("header %q: status %d, answered as %q", tt.header, rec.status, rec.header.Get(HeaderNodeID))
		}
		if (tt.status == 200) != (reached == before+1) {
			t.Errorf("header %q: reached %v", tt.header, reached != before)
		}
	}
}

type recorder struct {
	header http.Header
	status int
}

func (r *recorder) Header() http.Header         { return r.header }
func (r *recorder) Write(b []byte) (int, error) { return len(b), nil }
func (r *recorder) WriteHeader(s int)           { r.status = s }

func TestPolicyAccess(t *testing.T) {
	a, b, c := Key{1}, Key{2}, Key{3}
	p := Policy{Own: []Key{a}, Readers: []Key{b, a}}
	for _, tt := range []struct {
		key  Key
		want Access
	}{{a, AccessWrite}, {b, AccessRead}, {c, AccessNone}, {Key{}, AccessNone}} {
		if got := p.AccessOf(tt.key); got != tt.want {
			t.Errorf("AccessOf(%s) = %s, want %s", tt.key.Short(), got, tt.want)
		}
	}
	if got := (Policy{Own: []Key{{}}}).AccessOf(Key{}); got != AccessNone {
		t.Errorf("the zero key has %s access", got)
	}
	q := p.Add([]Key{c, {}}, []Key{c, b})
	if len(q.Own) != 2 || len(q.Readers) != 3 || len(p.Own) != 1 {
		t.Errorf("Add: %+v (from %+v)", q, p)
	}
}

func TestReadsAre(t *testing.T) {
	req := ReadsAre("/v1/attest-peers")
	for _, tt := range []struct {
		method, path string
		want         Access
	}{
		{"GET", "/v1/status", AccessRead},
		{"HEAD", "/v1/status", AccessRead},
		{"POST", "/v1/attest-peers", AccessRead},
		{"POST", "/v1/attest-peers/x", AccessWrite},
		{"POST", "/v1/ingress", AccessWrite},
		{"PUT", "/v1/status", AccessWrite},
		{"DELETE", "/v1/attest-peers", AccessWrite},
	} {
		r, _ := http.NewRequest(tt.method, tt.path, nil)
		if got := req(r); got != tt.want {
			t.Errorf("%s %s needs %s, want %s", tt.method, tt.path, got, tt.want)
		}
	}
}

func TestBindingSeparates(t *testing.T) {
	seen := map[[32]byte]string{}
	for _, c := range []struct {
		role  Role
		chain string
		id    uint64
	}{{RoleNode, "a", 1}, {RoleAgent, "a", 1}, {RoleNode, "a", 2}, {RoleNode, "b", 1}, {RoleNode, "a\x00", 1}, {RoleNode, "", 1}} {
		b := Binding(c.role, c.chain, c.id)
		name := fmt.Sprintf("%v", c)
		if prev, dup := seen[b]; dup {
			t.Fatalf("%s and %s bind the same", prev, name)
		}
		seen[b] = name
	}
}

func TestParseOperatorCertificate(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	good, err := OperatorCertificate(key)
	if err != nil {
		t.Fatal(err)
	}
	k, err := ParseOperatorCertificate(good.Certificate[0])
	if err != nil || k != Key(key.Public().(ed25519.PublicKey)) {
		t.Fatalf("own certificate: %v, %v", k, err)
	}
	// An ed25519 certificate signed by another key: not self-signed.
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "x"}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	foreignSigned, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), other)
	if err != nil {
		t.Fatal(err)
	}
	for name, der := range map[string][]byte{
		"garbage":         []byte("not a certificate"),
		"empty":           nil,
		"ECDSA key":       plainCreds(t).Certificate.Certificate[0],
		"not self-signed": foreignSigned,
		"too large":       make([]byte, maxOperatorCert+1),
	} {
		if _, err := ParseOperatorCertificate(der); !errors.Is(err, ErrNotOperatorCert) {
			t.Errorf("%s: %v, want ErrNotOperatorCert", name, err)
		}
	}
}

func TestParseKey(t *testing.T) {
	k := Key{0xab}
	if got, err := ParseKey(k.String()); err != nil || got != k {
		t.Fatalf("round trip: %v %v", got, err)
	}
	for _, s := range []string{"", "zz", k.String()[:62], k.String() + "00"} {
		if _, err := ParseKey(s); err == nil {
			t.Errorf("ParseKey(%q) accepted", s)
		}
	}
}

// plainCreds are TLS credentials without a quote (an ordinary server).
func plainCreds(t testing.TB) *attest.Credentials {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "plain"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &attest.Credentials{Certificate: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}}
}

// TestPolicyWithChain is the table of who may use node 1's remote admin
// APIs given its configuration and what the chain records.
func TestPolicyWithChain(t *testing.T) {
	configured, op1, op2, nog, stranger := Key{1}, Key{2}, Key{3}, Key{5}, Key{6}
	members := []MemberOperator{{Node: 1, Operator: op1}, {Node: 2, Operator: op2}, {Node: 4}}
	p, err := Policy{Own: []Key{configured}}.WithChain(1, members, []string{nog.String()})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		key  Key
		want Access
	}{
		{"configured operator writes", configured, AccessWrite},
		{"the chain's operator of this node writes", op1, AccessWrite},
		{"another member's operator reads", op2, AccessRead},
		{"a NOG member reads", nog, AccessRead},
		{"a stranger: nothing", stranger, AccessNone},
		{"the zero key: nothing", Key{}, AccessNone},
	} {
		if got := p.AccessOf(tt.key); got != tt.want {
			t.Errorf("%s: %s, want %s", tt.name, got, tt.want)
		}
	}
	if _, err := (Policy{}).WithChain(1, nil, []string{"zz"}); err == nil {
		t.Error("a malformed NOG key was accepted")
	}
}
