package genesisdraft

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/teeup/teeup/internal/fsutil"
	"github.com/teeup/teeup/ledger"
	"github.com/teeup/teeup/release"
)

// DraftFormat identifies a genesis draft file.
const DraftFormat = "teeup-genesis-draft/1"

// ErrMismatch: a genesis does not contain a bundle as it was made.
var ErrMismatch = errors.New("genesis does not match the bundle")

// Draft is a genesis being assembled: the group's parameters and the host
// bundles added so far. It is public.
type Draft struct {
	// Format is DraftFormat.
	Format  string        `json:"format"`
	ChainID string        `json:"chain_id"`
	Time    time.Time     `json:"time"`
	Params  ledger.Params `json:"params"`
	// KMG and NOG hold the thresholds and the keys of members that bring
	// no bundle; bundle members' keys are added at finalization.
	KMG Group `json:"kmg"`
	NOG Group `json:"nog"`
	// Accounts are initial balances besides the operator test accounts.
	Accounts []ledger.GenesisAccount `json:"accounts,omitempty"`
	// Release is the version of the release the network starts with
	// (ledger.Genesis.Release), optional.
	Release string `json:"release,omitempty"`
	// Bundles are the hosts' bundles, in the order they were added.
	Bundles []Bundle `json:"bundles"`
}

// Group is a threshold group's settings in a draft.
type Group struct {
	Threshold int `json:"threshold"`
	// Keys are members that run no node (hex), beyond the bundles' keys.
	Keys []string `json:"keys,omitempty"`
}

// Options are the group's parameters for a new draft.
type Options struct {
	ChainID string
	// Time is the genesis time (default: now, truncated to the second).
	Time         time.Time
	Params       ledger.Params
	KMGThreshold int
	NOGThreshold int
	// ExtraKMGKeys and ExtraNOGKeys are members that bring no bundle.
	ExtraKMGKeys []string
	ExtraNOGKeys []string
	// Accounts are initial balances besides the operator test accounts.
	Accounts []ledger.GenesisAccount
	// Release is the version the network starts with ("": none named, no
	// downgrade floor until the first upgrade).
	Release string
}

// New starts a draft: it checks the chain id, time, parameters, thresholds
// (at least 1; whether there are enough keys is checked at finalization)
// and extra keys and accounts.
func New(opts Options) (*Draft, error) {
	t := opts.Time
	if t.IsZero() {
		t = time.Now()
	}
	d := &Draft{
		Format:   DraftFormat,
		ChainID:  opts.ChainID,
		Time:     t.UTC().Truncate(time.Second),
		Params:   opts.Params,
		KMG:      Group{Threshold: opts.KMGThreshold, Keys: slices.Clone(opts.ExtraKMGKeys)},
		NOG:      Group{Threshold: opts.NOGThreshold, Keys: slices.Clone(opts.ExtraNOGKeys)},
		Accounts: slices.Clone(opts.Accounts),
		Release:  opts.Release,
		Bundles:  []Bundle{},
	}
	if !opts.Time.IsZero() {
		d.Time = opts.Time.UTC() // as given: every operator must be able to reproduce it
	}
	if err := d.checkHead(); err != nil {
		return nil, fmt.Errorf("new genesis draft: %w", err)
	}
	return d, nil
}

// checkHead validates everything but the bundles.
func (d *Draft) checkHead() error {
	if d.Format != DraftFormat {
		return fmt.Errorf("%w: format %q, want %q", ErrMalformed, d.Format, DraftFormat)
	}
	if err := ledger.ValidateChainID(d.ChainID); err != nil {
		return fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if err := ledger.ValidateGenesisTime(d.Time); err != nil {
		return fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if err := d.Params.Validate(); err != nil {
		return fmt.Errorf("%w: params: %w", ErrMalformed, err)
	}
	if d.Release != "" {
		if err := release.ValidateVersion(d.Release); err != nil {
			return fmt.Errorf("%w: release: %w", ErrMalformed, err)
		}
	}
	for _, g := range []struct {
		name string
		g    Group
	}{{"kmg", d.KMG}, {"nog", d.NOG}} {
		if g.g.Threshold < 1 {
			return fmt.Errorf("%w: %s threshold %d: want at least 1", ErrMalformed, g.name, g.g.Threshold)
		}
	}
	u := newUsage()
	for _, k := range d.KMG.Keys {
		if err := checkKey(k); err != nil {
			return fmt.Errorf("%w: kmg key: %w", ErrMalformed, err)
		}
		if err := u.claim(k, "KMG key (no node)"); err != nil {
			return fmt.Errorf("%w: %w", ErrMalformed, err)
		}
	}
	for _, k := range d.NOG.Keys {
		if err := checkKey(k); err != nil {
			return fmt.Errorf("%w: nog key: %w", ErrMalformed, err)
		}
		if err := u.claim(k, "NOG key (no node)"); err != nil {
			return fmt.Errorf("%w: %w", ErrMalformed, err)
		}
	}
	for i, a := range d.Accounts {
		if a.Address.IsZero() {
			return fmt.Errorf("%w: account %d: zero address", ErrMalformed, i)
		}
		if len(a.Label) > 128 {
			return fmt.Errorf("%w: account %d: label longer than 128 bytes", ErrMalformed, i)
		}
		if err := u.claim(a.Address.String(), "account "+a.Label); err != nil {
			return fmt.Errorf("%w: %w", ErrMalformed, err)
		}
	}
	return nil
}

// usage records which role each public key (and account address) has in
// a draft: a key may serve one role only, except that one operator may
// run several nodes.
type usage map[string]string

func newUsage() usage { return usage{} }

// claim records key in role, refusing a key already recorded.
func (u usage) claim(key, role string) error {
	if other, dup := u[key]; dup {
		return fmt.Errorf("key %s is already in the draft as %s", key, other)
	}
	u[key] = role
	return nil
}

// operatorRole is the role name of operator keys, the one role a key may
// have in several bundles.
const operatorRole = "operator key"

// usage returns the roles of every key in the draft.
func (d *Draft) usage() usage {
	u := newUsage()
	for _, k := range d.KMG.Keys {
		u[k] = "KMG key (no node)"
	}
	for _, k := range d.NOG.Keys {
		u[k] = "NOG key (no node)"
	}
	for _, a := range d.Accounts {
		u[a.Address.String()] = "account " + a.Label
	}
	for _, b := range d.Bundles {
		for _, k := range b.keys() {
			role := k.role
			if role != operatorRole {
				role = fmt.Sprintf("%s of node %d", k.role, b.Node.ID)
			}
			u[k.hex] = role
		}
	}
	return u
}

// Add adds a host's bundle. It refuses a bundle that does not validate or
// that clashes with the draft: a node id, name or address already there,
// a key already used (an operator key may recur: one operator may run
// several nodes), or more nodes than a genesis allows.
func (d *Draft) Add(b *Bundle) error {
	if err := b.Validate(); err != nil {
		return fmt.Errorf("add bundle: %w", err)
	}
	if len(d.Bundles) >= ledger.MaxGenesisNodes {
		return fmt.Errorf("add bundle of node %d: %w: the draft already has %d nodes, the most a genesis allows", b.Node.ID, ErrConflict, len(d.Bundles))
	}
	addrs := map[string]string{}
	for _, o := range d.Bundles {
		switch {
		case o.Node.ID == b.Node.ID:
			return fmt.Errorf("add bundle of node %d: %w: node id %d is already in the draft (%q)", b.Node.ID, ErrConflict, b.Node.ID, o.Node.Name)
		case o.Node.Name != "" && o.Node.Name == b.Node.Name:
			return fmt.Errorf("add bundle of node %d: %w: name %q is already node %d's", b.Node.ID, ErrConflict, b.Node.Name, o.Node.ID)
		}
		addrs[o.Node.PeerAddr] = fmt.Sprintf("node %d peer_addr", o.Node.ID)
		addrs[o.Node.ClientAddr] = fmt.Sprintf("node %d client_addr", o.Node.ID)
	}
	for _, a := range []struct{ field, addr string }{{"peer_addr", b.Node.PeerAddr}, {"client_addr", b.Node.ClientAddr}} {
		if other, dup := addrs[a.addr]; dup {
			return fmt.Errorf("add bundle of node %d: %w: %s %q is already %s", b.Node.ID, ErrConflict, a.field, a.addr, other)
		}
	}
	u := d.usage()
	for _, k := range b.keys() {
		if other, dup := u[k.hex]; dup && !(k.role == operatorRole && other == operatorRole) {
			return fmt.Errorf("add bundle of node %d: %w: its %s %s is already in the draft as %s", b.Node.ID, ErrConflict, k.role, k.hex, other)
		}
	}
	d.Bundles = append(d.Bundles, *b)
	return nil
}

// Genesis finalizes the draft: nodes ordered by id, then the bundles' KMG
// and NOG keys and test accounts in node order followed by the draft's own,
// validated as a genesis. It refuses (ErrIncomplete) a draft without
// bundles or with fewer group keys than a threshold.
func (d *Draft) Genesis() (*ledger.Genesis, error) {
	if len(d.Bundles) == 0 {
		return nil, fmt.Errorf("finalize: %w: no bundles added", ErrIncomplete)
	}
	bs := slices.Clone(d.Bundles)
	slices.SortFunc(bs, func(a, b Bundle) int {
		switch {
		case a.Node.ID < b.Node.ID:
			return -1
		case a.Node.ID > b.Node.ID:
			return 1
		}
		return 0
	})
	g := &ledger.Genesis{
		ChainID: d.ChainID,
		Time:    d.Time,
		Params:  d.Params,
		KMG:     release.Group{Threshold: d.KMG.Threshold},
		NOG:     release.Group{Threshold: d.NOG.Threshold},
		Release: d.Release,
	}
	for _, b := range bs {
		g.Nodes = append(g.Nodes, b.Node)
		g.NOG.Keys = append(g.NOG.Keys, b.NOGKey)
		if b.KMGKey != "" {
			g.KMG.Keys = append(g.KMG.Keys, b.KMGKey)
		}
		g.Accounts = append(g.Accounts, b.Account)
	}
	g.KMG.Keys = append(g.KMG.Keys, d.KMG.Keys...)
	g.NOG.Keys = append(g.NOG.Keys, d.NOG.Keys...)
	g.Accounts = append(g.Accounts, d.Accounts...)
	for _, grp := range []struct {
		name, hint string
		g          release.Group
	}{
		{"KMG", "bundles with a KMG key or 'genesis init --kmg-key'", g.KMG},
		{"NOG", "more bundles or 'genesis init --nog-key'", g.NOG},
	} {
		if len(grp.g.Keys) < grp.g.Threshold {
			return nil, fmt.Errorf("finalize: %w: %s threshold %d but %d keys (add %s)", ErrIncomplete, grp.name, grp.g.Threshold, len(grp.g.Keys), grp.hint)
		}
	}
	if err := g.Validate(); err != nil {
		return nil, fmt.Errorf("finalize: %w", err)
	}
	return g, nil
}

// ParseDraft parses a draft strictly and checks it as if it were rebuilt
// from its parameters and bundles (so a hand-edited draft is held to the
// same rules as one made by New and Add).
func ParseDraft(raw []byte) (*Draft, error) {
	if len(raw) > ledger.MaxGenesisSize {
		return nil, fmt.Errorf("parse draft: %w: larger than %d bytes", ErrMalformed, ledger.MaxGenesisSize)
	}
	var d Draft
	if err := decodeStrict(raw, &d); err != nil {
		return nil, fmt.Errorf("parse draft: %w: %w", ErrMalformed, err)
	}
	if err := d.checkHead(); err != nil {
		return nil, fmt.Errorf("parse draft: %w", err)
	}
	rebuilt := d
	rebuilt.Bundles = []Bundle{}
	for i := range d.Bundles {
		if err := rebuilt.Add(&d.Bundles[i]); err != nil {
			return nil, fmt.Errorf("parse draft: bundle %d: %w", i, err)
		}
	}
	return &rebuilt, nil
}

// LoadDraft reads and parses a draft file.
func LoadDraft(path string) (*Draft, error) {
	raw, err := readLimited(path, ledger.MaxGenesisSize)
	if err != nil {
		return nil, fmt.Errorf("load draft: %w", err)
	}
	d, err := ParseDraft(raw)
	if err != nil {
		return nil, fmt.Errorf("load draft %s: %w", path, err)
	}
	return d, nil
}

// Save writes the draft to path atomically (0644: it is public).
func (d *Draft) Save(path string) error {
	raw, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return fmt.Errorf("save draft: %w", err)
	}
	if err := fsutil.WriteFileAtomic(path, append(raw, '\n'), 0o644); err != nil {
		return fmt.Errorf("save draft: %w", err)
	}
	return nil
}

// CheckBundle checks that a genesis contains a bundle exactly as it was
// made: the node entry, the NOG key, the KMG key if any, and the test
// account with its balance and label. Each operator runs it on the
// genesis it receives, against the bundle it made.
func CheckBundle(g *ledger.Genesis, b *Bundle) error {
	n, ok := g.Node(b.Node.ID)
	if !ok {
		return fmt.Errorf("%w: node %d is not in the genesis", ErrMismatch, b.Node.ID)
	}
	if n != b.Node {
		return fmt.Errorf("%w: node %d is %+v in the genesis, %+v in the bundle", ErrMismatch, b.Node.ID, n, b.Node)
	}
	if !slices.Contains(g.NOG.Keys, b.NOGKey) {
		return fmt.Errorf("%w: node %d's NOG key %s is not in the genesis NOG", ErrMismatch, b.Node.ID, b.NOGKey)
	}
	if b.KMGKey != "" && !slices.Contains(g.KMG.Keys, b.KMGKey) {
		return fmt.Errorf("%w: node %d's KMG key %s is not in the genesis KMG", ErrMismatch, b.Node.ID, b.KMGKey)
	}
	if !slices.Contains(g.Accounts, b.Account) {
		return fmt.Errorf("%w: node %d's test account %s (balance %d, label %q) is not in the genesis as such", ErrMismatch, b.Node.ID, b.Account.Address, b.Account.Balance, b.Account.Label)
	}
	return nil
}
