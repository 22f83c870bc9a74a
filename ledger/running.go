package ledger

import (
	"fmt"
	"slices"

	"github.com/teeup/teeup/internal/wire"
	"github.com/teeup/teeup/release"
)

// The running release is the release version the network runs: the
// genesis's Release at first (none in an older genesis), then the version
// of each scheduled upgrade once the chain commits a block above its
// activation height — the first block only the new release's nodes can
// commit. It is the floor of release governance: a proposal or schedule
// of a version that is not newer is a downgrade (CodeDowngrade), unless an
// approved rollback record allows exactly that version.
//
// Storage: g/running holds the version once an upgrade took effect; until
// then the genesis says.
const keyGovRunning = GovernancePrefix + "running"

func encodeRunning(version string) []byte {
	e := wire.NewEncoder(4 + len(version))
	e.String(version)
	return e.Bytes()
}

func decodeRunning(b []byte) (string, error) {
	d := wire.NewDecoder("running release", b)
	v := d.String("version", maxVersionLen)
	if err := d.Finish(); err != nil {
		return "", err
	}
	if err := release.ValidateVersion(v); err != nil {
		return "", fmt.Errorf("decode running release: %w", err)
	}
	return v, nil
}

// runningFrom reads the running release: g/running, else the genesis's
// release ("" when neither names one).
func runningFrom(r reader, g *Genesis) (string, error) {
	v, ok, err := getFrom(r, []byte(keyGovRunning))
	if err != nil {
		return "", fmt.Errorf("read running release: %w", err)
	}
	if !ok {
		return g.Release, nil
	}
	version, err := decodeRunning(v)
	if err != nil {
		return "", fmt.Errorf("corrupt governance: %w", err)
	}
	return version, nil
}

// RunningRelease returns the release the network runs ("" if the genesis
// named none and no upgrade took effect yet).
func (s *Store) RunningRelease() (string, error) {
	return runningFrom(s.db, s.genesis)
}

// runningRelease is the running release as this entry sees it.
func (a *applier) runningRelease() (string, error) {
	v, ok, err := a.govGet([]byte(keyGovRunning))
	if err != nil {
		return "", err
	}
	if !ok {
		return a.s.genesis.Release, nil
	}
	version, err := decodeRunning(v)
	if err != nil {
		return "", fmt.Errorf("corrupt governance: %w", err)
	}
	return version, nil
}

// upgradeTakesEffect records the scheduled release as running when the
// block at height is above its activation height. It runs before the
// block's transactions are committed, so that they are checked against
// the release that commits them.
func (a *applier) upgradeTakesEffect(height uint64) error {
	g, err := a.governance()
	if err != nil {
		return err
	}
	s := g.schedule
	if s == nil || height <= s.ActivationHeight {
		return nil
	}
	cur, err := a.runningRelease()
	if err != nil || cur == s.Version {
		return err
	}
	if err := a.govSet([]byte(keyGovRunning), encodeRunning(s.Version)); err != nil {
		return err
	}
	a.s.log.Info("release in force", "version", s.Version, "previous", cur, "activation", s.ActivationHeight, "height", height)
	return nil
}

// checkNotDowngrade refuses version unless it is newer than the running
// release or an approved rollback record allows exactly it. what names the
// transaction for the reason ("release" or "schedule").
func (a *applier) checkNotDowngrade(version, what string) (verdict, error) {
	cur, err := a.runningRelease()
	if err != nil || cur == "" {
		return verdict{}, err
	}
	c, err := release.CompareVersions(version, cur)
	if err != nil {
		return verdict{}, fmt.Errorf("corrupt governance: %w", err)
	}
	if c > 0 {
		return verdict{}, nil
	}
	rbs, err := a.rollbacks()
	if err != nil {
		return verdict{}, err
	}
	if slices.ContainsFunc(rbs, func(rb *RollbackRecord) bool { return rb.To == version }) {
		return verdict{}, nil
	}
	rel := "older than"
	if c == 0 {
		rel = "the same as"
	}
	return reject(CodeDowngrade, "downgrade: %s %s is %s the running release %s, and no approved rollback allows it", what, version, rel, cur), nil
}
