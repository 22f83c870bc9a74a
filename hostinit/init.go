package hostinit

import (
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/teeup/teeup/agent"
	"github.com/teeup/teeup/genesisdraft"
	"github.com/teeup/teeup/internal/fsutil"
	"github.com/teeup/teeup/internal/jsonutil"
	"github.com/teeup/teeup/keyfile"
	"github.com/teeup/teeup/ledger"
	"github.com/teeup/teeup/node"
	"github.com/teeup/teeup/tee/sim"
)

// HostFormat identifies a host.json file.
const HostFormat = "teeup-host/1"

// maxSocketPath bounds a unix socket path (the kernel's limit is 108
// bytes; node.Config.Validate allows 100).
const maxSocketPath = 100

// Outcomes. Errors wrap one of these where they apply.
var (
	// ErrExists: the directory already holds a host.
	ErrExists = errors.New("host already initialized")
	// ErrOptions: the options are incomplete or inconsistent.
	ErrOptions = errors.New("invalid host options")
)

// Options say how to prepare a host.
type Options struct {
	// Dir is the host directory (created 0700; made absolute).
	Dir string
	// Node is the node's genesis entry: id, name, peer and client
	// addresses. Its operator is this host's operator key.
	Node ledger.GenesisNode
	// Config shapes the node and agent configurations (its NodeID and
	// Platform are set from Node and the platform options below).
	Config ConfigOptions

	// The platform: exactly one of Platform (an existing platform
	// directory, certified or awaiting its certificate), CADir (a CA
	// directory: with root.key the platform is certified at once; with
	// only root.crt it requests its certificate) or RootCert (the root
	// certificate to pin; the platform requests its certificate).
	Platform string
	CADir    string
	RootCert string
	// RequestOut, when the platform requests its certificate, is a file
	// to write a copy of the request to (it is also in the platform
	// directory as attestation.csr).
	RequestOut string

	// Existing key files (private or public PEM, or hex) to use instead of
	// generating a key; a private key given here stays where it is.
	OperatorKey, NOGKey, AccountKey, KMGKey string
	// KMG generates a Key Management Group key for this operator (unless
	// KMGKey names one).
	KMG bool
}

// Host is host.json: the host's public description, from which its genesis
// bundle is made. It names key files but holds no private key.
type Host struct {
	// Format is HostFormat.
	Format string `json:"format"`
	// Node is the node's genesis entry, operator key included.
	Node ledger.GenesisNode `json:"node"`
	// NOGKey and KMGKey (optional) are the operator's group keys (hex).
	NOGKey string `json:"nog_key"`
	KMGKey string `json:"kmg_key,omitempty"`
	// Account is the operator test account's address.
	Account ledger.Address `json:"account"`
	// KeyFiles are where the keys are.
	KeyFiles KeyFiles `json:"key_files"`
	// Platform is the platform directory.
	Platform string `json:"platform"`
	// NodeConfig and AgentConfig are the configuration files.
	NodeConfig  string `json:"node_config"`
	AgentConfig string `json:"agent_config"`
}

// KeyFiles are the paths of a host's key files by role.
type KeyFiles struct {
	Operator string `json:"operator"`
	NOG      string `json:"nog"`
	Account  string `json:"account"`
	KMG      string `json:"kmg,omitempty"`
}

// Result is what Init prepared.
type Result struct {
	Host   *Host
	Layout Layout
	// PlatformID is the platform's public id.
	PlatformID string
	// PlatformPending is set when the platform awaits its certificate;
	// Request is then its certificate request file.
	PlatformPending bool
	Request         string
	// Generated lists the key files Init created.
	Generated []string
}

// Init prepares a host in opts.Dir: directories (0700), the platform, the
// operator's keys, node.json, agent.json and host.json (written last: its
// presence marks a prepared host). It refuses a directory that already
// holds host.json.
func Init(opts Options) (*Result, error) {
	dir, err := filepath.Abs(opts.Dir)
	if err != nil || opts.Dir == "" {
		return nil, fmt.Errorf("host init: %w: a host directory is required", ErrOptions)
	}
	l := Layout{Dir: dir}
	if _, err := os.Lstat(l.HostFile()); err == nil {
		return nil, fmt.Errorf("host init %s: %w (%s exists)", dir, ErrExists, l.HostFile())
	}
	if err := checkOptions(l, &opts); err != nil {
		return nil, fmt.Errorf("host init %s: %w", dir, err)
	}
	plat, err := choosePlatform(l, opts)
	if err != nil {
		return nil, fmt.Errorf("host init %s: %w", dir, err)
	}
	for _, d := range l.dirs() {
		if err := mkdirPrivate(d); err != nil {
			return nil, fmt.Errorf("host init %s: %w", dir, err)
		}
	}
	res := &Result{Layout: l}
	if err := plat.prepare(res); err != nil {
		return nil, fmt.Errorf("host init %s: %w", dir, err)
	}
	h := &Host{Format: HostFormat, Node: opts.Node, Platform: plat.dir, NodeConfig: l.NodeConfig(), AgentConfig: l.AgentConfig()}
	var accountHex string
	keys := []struct {
		given, file string
		gen         bool
		path, hex   *string
	}{
		{opts.OperatorKey, OperatorKeyFile, true, &h.KeyFiles.Operator, &h.Node.Operator},
		{opts.NOGKey, NOGKeyFile, true, &h.KeyFiles.NOG, &h.NOGKey},
		{opts.AccountKey, AccountKeyFile, true, &h.KeyFiles.Account, &accountHex},
		{opts.KMGKey, KMGKeyFile, opts.KMG, &h.KeyFiles.KMG, &h.KMGKey},
	}
	for _, k := range keys {
		if k.given == "" && !k.gen {
			continue
		}
		path, pubHex, generated, err := obtainKey(l, k.given, k.file)
		if err != nil {
			return nil, fmt.Errorf("host init %s: %w", dir, err)
		}
		if generated {
			res.Generated = append(res.Generated, path)
		}
		*k.path, *k.hex = path, pubHex
	}
	if h.Account, err = ledger.ParseAddress(accountHex); err != nil {
		return nil, fmt.Errorf("host init %s: test account: %w", dir, err)
	}
	cfg := opts.Config
	cfg.NodeID, cfg.Platform = opts.Node.ID, plat.dir
	// The host's own operator may use both admin APIs remotely.
	cfg.Operators = []string{h.Node.Operator}
	if err := writeConfigs(l, cfg); err != nil {
		return nil, fmt.Errorf("host init %s: %w", dir, err)
	}
	// The public bundle must be valid now (distinct keys per role, ...).
	if err := h.Bundle(0, "").Validate(); err != nil {
		return nil, fmt.Errorf("host init %s: %w", dir, err)
	}
	raw, err := encodeJSON(h)
	if err != nil {
		return nil, err
	}
	if err := fsutil.WriteFileAtomic(l.HostFile(), raw, 0o600); err != nil {
		return nil, fmt.Errorf("host init %s: %w", dir, err)
	}
	res.Host = h
	return res, nil
}

// checkOptions validates the options before anything is written.
func checkOptions(l Layout, opts *Options) error {
	n := opts.Node
	n.Operator = ""
	if err := n.Validate(); err != nil {
		return fmt.Errorf("%w: node: %w", ErrOptions, err)
	}
	if n.PeerAddr == n.ClientAddr {
		return fmt.Errorf("%w: node: peer and client address are both %q", ErrOptions, n.PeerAddr)
	}
	for _, s := range l.sockets() {
		if len(s) > maxSocketPath {
			return fmt.Errorf("%w: socket %s is longer than %d bytes, the most a unix socket path may be: choose a shorter host directory", ErrOptions, s, maxSocketPath)
		}
	}
	// Given keys must read, and no key may serve two roles.
	seen := map[string]string{}
	for _, k := range []struct{ role, path string }{
		{"operator", opts.OperatorKey}, {"NOG", opts.NOGKey}, {"account", opts.AccountKey}, {"KMG", opts.KMGKey},
	} {
		if k.path == "" {
			continue
		}
		pub, err := keyfile.ReadPublic(k.path)
		if err != nil {
			return fmt.Errorf("%w: %s key: %w", ErrOptions, k.role, err)
		}
		if other, dup := seen[string(pub)]; dup {
			return fmt.Errorf("%w: the %s and the %s key are the same key; each role needs its own", ErrOptions, other, k.role)
		}
		seen[string(pub)] = k.role
	}
	for _, l := range []struct{ flag, addr string }{{"admin listen", opts.Config.AdminListen}, {"agent listen", opts.Config.AgentListen}} {
		if l.addr == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(l.addr); err != nil {
			return fmt.Errorf("%w: %s address: %w", ErrOptions, l.flag, err)
		}
	}
	if a := opts.Config.AdminListen; a != "" && a == opts.Config.AgentListen {
		return fmt.Errorf("%w: the node's and the agent's admin APIs cannot both listen on %s", ErrOptions, a)
	}
	set := 0
	for _, p := range []string{opts.Platform, opts.CADir, opts.RootCert} {
		if p != "" {
			set++
		}
	}
	if set != 1 {
		return fmt.Errorf("%w: say how the platform is certified: --root ROOT.crt (request a certificate from the CA holder), --ca CADIR, or --platform DIR (an existing platform)", ErrOptions)
	}
	return nil
}

// platformPlan is how Init obtains the host's platform.
type platformPlan struct {
	dir     string
	existed bool
	ca      *sim.CA           // certify at once
	root    *x509.Certificate // pin this root and request a certificate
	reqOut  string            // copy of the request
	opened  *sim.Platform
}

// requestPlan is the plan of a platform that pins the root in rootFile and
// requests its certificate.
func requestPlan(l Layout, rootFile, reqOut string) (*platformPlan, error) {
	root, err := sim.ReadCertificate(rootFile)
	if err != nil {
		return nil, fmt.Errorf("%w: root to pin: %w", ErrOptions, err)
	}
	if !root.IsCA {
		return nil, fmt.Errorf("%w: root to pin: %s is not a CA certificate", ErrOptions, rootFile)
	}
	return &platformPlan{dir: l.Platform(), root: root, reqOut: reqOut}, nil
}

// choosePlatform decides, reading but writing nothing, how the platform
// comes to be.
func choosePlatform(l Layout, opts Options) (*platformPlan, error) {
	switch {
	case opts.Platform != "":
		dir, err := filepath.Abs(opts.Platform)
		if err != nil {
			return nil, err
		}
		p, err := sim.OpenPlatform(dir)
		if err != nil && !errors.Is(err, sim.ErrPlatformPending) {
			return nil, fmt.Errorf("%w: --platform: %w", ErrOptions, err)
		}
		return &platformPlan{dir: dir, existed: true, opened: p, reqOut: opts.RequestOut}, nil
	case opts.CADir != "":
		// Unlike 'teeup platform init', never create a CA here: every
		// host of a network must chain to the one root.
		_, keyErr := os.Stat(filepath.Join(opts.CADir, sim.CAKeyFile))
		_, crtErr := os.Stat(filepath.Join(opts.CADir, sim.RootCertFile))
		switch {
		case keyErr == nil:
			ca, err := sim.OpenCA(opts.CADir)
			if err != nil {
				return nil, fmt.Errorf("%w: --ca: %w", ErrOptions, err)
			}
			return &platformPlan{dir: l.Platform(), ca: ca}, nil
		case crtErr == nil:
			return requestPlan(l, filepath.Join(opts.CADir, sim.RootCertFile), opts.RequestOut)
		default:
			return nil, fmt.Errorf("%w: --ca %s holds neither %s nor %s (the CA holder creates the CA with 'teeup platform ca-init')", ErrOptions, opts.CADir, sim.CAKeyFile, sim.RootCertFile)
		}
	default:
		return requestPlan(l, opts.RootCert, opts.RequestOut)
	}
}

// prepare makes (or inspects) the platform and records it in res.
func (p *platformPlan) prepare(res *Result) error {
	switch {
	case p.existed:
	case p.ca != nil:
		if err := mkdirPrivate(p.dir); err != nil {
			return err
		}
		opened, err := sim.InitPlatform(p.dir, p.ca)
		if err != nil {
			return err
		}
		p.opened = opened
	default:
		if err := mkdirPrivate(p.dir); err != nil {
			return err
		}
		csr, err := sim.RequestPlatform(p.dir, p.root)
		if err != nil {
			return err
		}
		if p.reqOut != "" {
			if err := fsutil.WriteFileAtomic(p.reqOut, csr, 0o644); err != nil {
				return fmt.Errorf("write certificate request: %w", err)
			}
		}
	}
	if p.opened != nil {
		res.PlatformID = p.opened.ID()
		return nil
	}
	res.PlatformPending = true
	res.Request = filepath.Join(p.dir, sim.AttestationCSRFile)
	if p.reqOut != "" {
		res.Request = p.reqOut
	}
	raw, ok, err := sim.PendingRequest(p.dir)
	if err != nil || !ok {
		return fmt.Errorf("platform %s: neither certified nor requesting: %v", p.dir, err)
	}
	if p.existed && p.reqOut != "" {
		if err := fsutil.WriteFileAtomic(p.reqOut, raw, 0o644); err != nil {
			return fmt.Errorf("write certificate request: %w", err)
		}
	}
	req, err := sim.ParseRequest(raw)
	if err != nil {
		return fmt.Errorf("platform %s: %w", p.dir, err)
	}
	res.PlatformID = req.PlatformID
	return nil
}

// obtainKey returns the key file and public key of a role: the given file,
// or a new key in the keys directory.
func obtainKey(l Layout, given, name string) (path, pubHex string, generated bool, err error) {
	if given != "" {
		abs, err := filepath.Abs(given)
		if err != nil {
			return "", "", false, err
		}
		pub, err := keyfile.ReadPublic(abs)
		if err != nil {
			return "", "", false, fmt.Errorf("%w: %w", ErrOptions, err)
		}
		return abs, hex.EncodeToString(pub), false, nil
	}
	path = l.Key(name)
	pub, err := keyfile.Generate(path)
	if err != nil {
		return "", "", false, err
	}
	return path, hex.EncodeToString(pub), true, nil
}

// writeConfigs writes node.json and agent.json (0600) and checks them with
// the programs' own loaders.
func writeConfigs(l Layout, o ConfigOptions) error {
	nc, err := EncodeNodeConfig(NodeConfig(l, o))
	if err != nil {
		return err
	}
	ac, err := EncodeAgentConfig(AgentConfig(l, o))
	if err != nil {
		return err
	}
	for _, f := range []struct {
		path string
		raw  []byte
	}{{l.NodeConfig(), nc}, {l.AgentConfig(), ac}} {
		if err := fsutil.WriteFileAtomic(f.path, f.raw, 0o600); err != nil {
			return err
		}
	}
	return CheckConfigs(l.NodeConfig(), l.AgentConfig())
}

// CheckConfigs loads a node and an agent configuration file with the
// programs' own loaders and validates them.
func CheckConfigs(nodeConfig, agentConfig string) error {
	nc, err := node.LoadConfig(nodeConfig)
	if err != nil {
		return err
	}
	if err := nc.WithDefaults().Validate(); err != nil {
		return fmt.Errorf("%s: %w", nodeConfig, err)
	}
	ac, err := agent.LoadConfig(agentConfig)
	if err != nil {
		return err
	}
	if err := ac.WithDefaults().Validate(); err != nil {
		return fmt.Errorf("%s: %w", agentConfig, err)
	}
	if nc.NodeID != ac.NodeID || nc.DataDir != ac.NodeDataDir || nc.Platform != ac.Platform || nc.Genesis != ac.Genesis {
		return fmt.Errorf("%s and %s disagree on node id, data dir, platform or genesis", nodeConfig, agentConfig)
	}
	return nil
}

// mkdirPrivate creates dir (and missing parents) and makes dir itself
// mode 0700 even when it existed: a host's directories hold its keys,
// platform secret and sockets and are for its operator only.
func mkdirPrivate(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return os.Chmod(dir, 0o700)
}

// LoadHost reads a host directory's host.json strictly.
func LoadHost(dir string) (*Host, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	var h Host
	if err := jsonutil.LoadStrict(Layout{Dir: abs}.HostFile(), &h); err != nil {
		return nil, fmt.Errorf("load host %s: %w (run 'teeup host init %s' first)", abs, err, dir)
	}
	if h.Format != HostFormat {
		return nil, fmt.Errorf("load host %s: format %q, want %q", abs, h.Format, HostFormat)
	}
	return &h, nil
}

// Bundle returns the host's genesis bundle: its node entry, NOG and KMG
// keys and test account with the proposed balance and label (default
// "operator-test-<id>").
func (h *Host) Bundle(balance uint64, label string) *genesisdraft.Bundle {
	if label == "" {
		label = fmt.Sprintf("operator-test-%d", h.Node.ID)
	}
	return &genesisdraft.Bundle{
		Format:  genesisdraft.BundleFormat,
		Node:    h.Node,
		NOGKey:  h.NOGKey,
		KMGKey:  h.KMGKey,
		Account: ledger.GenesisAccount{Address: h.Account, Balance: balance, Label: label},
	}
}
