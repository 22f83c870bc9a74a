package ledger

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// Schema versions of DefaultMigrations.
const (
	// schemaInitial is the layout Open creates.
	schemaInitial = 1
	// schemaAccountHistory adds the x/ account history index.
	schemaAccountHistory = 2
	// schemaAtRest encrypts the records that reveal users or amounts and
	// hashes the keys that would reveal addresses (see atrest.go).
	schemaAtRest = 3
)

// Migration moves a ledger database from schema Version-1 to Version. Up
// adds its changes to b; Migrate commits them together with the new schema
// version, so a migration is all or nothing. Up may read db (which nothing
// else writes during a migration) and must not write to it directly; the
// ledger key is available through LedgerKeyFromContext(ctx).
type Migration struct {
	Version int
	Name    string
	Up      func(ctx context.Context, db *pebble.DB, b *pebble.Batch) error
	// Scrub says that the migration replaces records whose old bytes must
	// not stay on disk: after its commit Migrate compacts the whole
	// database (see scrub in atrest_migrate.go).
	Scrub bool
}

// DefaultMigrations returns the registry of this binary: version 1 is the
// initial layout that Open creates (it has no Up), version 2
// "account-tx-index" builds the account history index from the existing
// blocks (it needs the ledger key), version 3 "encrypt-at-rest" seals the
// records that reveal users or amounts and scrubs their plaintext (see
// atrest.go; it needs the ledger key).
func DefaultMigrations() []Migration {
	return []Migration{
		{Version: schemaInitial, Name: "initial-layout"},
		{Version: schemaAccountHistory, Name: "account-tx-index", Up: buildAccountHistory},
		{Version: schemaAtRest, Name: "encrypt-at-rest", Up: encryptAtRest, Scrub: true},
	}
}

// NewestSchema returns the highest version in a registry (0 if empty).
func NewestSchema(ms []Migration) int {
	v := 0
	for _, m := range ms {
		v = max(v, m.Version)
	}
	return v
}

// validateRegistry checks that versions run 1, 2, … in order with names,
// and that every version above 1 has an Up.
func validateRegistry(ms []Migration) error {
	if len(ms) == 0 {
		return errors.New("migration registry is empty")
	}
	for i, m := range ms {
		if m.Version != i+1 {
			return fmt.Errorf("migration registry: entry %d has version %d, want %d", i, m.Version, i+1)
		}
		if m.Name == "" {
			return fmt.Errorf("migration registry: version %d has no name", m.Version)
		}
		if m.Version > 1 && m.Up == nil {
			return fmt.Errorf("migration registry: version %d %q has no Up", m.Version, m.Name)
		}
	}
	return nil
}

type ledgerKeyCtx struct{}

// ContextWithLedgerKey returns ctx carrying the ledger key for migrations.
func ContextWithLedgerKey(ctx context.Context, key LedgerKey) context.Context {
	return context.WithValue(ctx, ledgerKeyCtx{}, key)
}

// LedgerKeyFromContext returns the ledger key Migrate passes to migrations;
// ok is false if none was given.
func LedgerKeyFromContext(ctx context.Context) (key LedgerKey, ok bool) {
	key, ok = ctx.Value(ledgerKeyCtx{}).(LedgerKey)
	return key, ok && !key.IsZero()
}

// MigrateOptions configures Migrate.
type MigrateOptions struct {
	// Key is the ledger key, for migrations that read block bodies.
	Key LedgerKey
	// Target is the version to reach; 0 means the newest in Migrations.
	Target int
	// DryRun reports the plan and writes nothing (the database is opened
	// read-only).
	DryRun bool
	// Migrations is the registry; nil means DefaultMigrations().
	Migrations []Migration
	// Before, if set, is called before each migration runs; an error stops
	// Migrate there (fault injection in tests, confirmation in tools).
	Before func(m Migration) error
	// Logger receives progress; nil discards it.
	Logger *slog.Logger

	// fs replaces the real file system in tests.
	fs vfs.FS
	// scrubbing, if set, is called in tests before the scrub of obsolete
	// logs and manifests starts.
	scrubbing func()
}

// MigrationStep is one migration of a plan, and whether it was applied.
type MigrationStep struct {
	Version int
	Name    string
	Applied bool
}

// Migrate moves the ledger database in dir forward to the target schema
// version, one migration at a time. Each migration and its version bump
// commit in one synced batch: re-running after success does nothing, and a
// failure or crash leaves the database at the last completed version, still
// usable. Going back is refused: restore a snapshot instead.
//
// It returns the version found, the version reached (for a dry run, the
// version that would be reached) and the steps considered. The database must
// not be open elsewhere (Pebble's lock enforces it).
func Migrate(ctx context.Context, dir string, opts MigrateOptions) (from, to int, steps []MigrationStep, err error) {
	ms := opts.Migrations
	if ms == nil {
		ms = DefaultMigrations()
	}
	if err := validateRegistry(ms); err != nil {
		return 0, 0, nil, fmt.Errorf("migrate ledger %s: %w", dir, err)
	}
	newest := NewestSchema(ms)
	target := opts.Target
	if target == 0 {
		target = newest
	}
	if target < 1 || target > newest {
		return 0, 0, nil, fmt.Errorf("migrate ledger %s: target schema %d is not in the registry (1 to %d)", dir, target, newest)
	}
	base := discardIfNil(opts.Logger)
	log := base.With("component", "ledger-migrate")
	fsys := opts.fs
	if fsys == nil {
		fsys = vfs.Default
	}
	// Pebble would create the directory and its lock file before noticing
	// that there is no database: look first, read-only.
	desc, err := pebble.Peek(dir, fsys)
	if err != nil {
		return 0, 0, nil, fmt.Errorf("migrate ledger %s: %w", dir, err)
	}
	if !desc.Exists {
		return 0, 0, nil, fmt.Errorf("migrate ledger %s: %w", dir, pebble.ErrDBDoesNotExist)
	}
	if !opts.DryRun {
		// Most opens have nothing to migrate (every restart, a flag day
		// that changes the enclave only): find that out read-only. A
		// writable open would flush what it replays and start compactions
		// that its close then waits for — up to half a second on a big
		// ledger, inside a flag day's closed window — only for the ledger
		// to be opened again at once.
		if v, current, err := atSchema(dir, pebbleOptions(opts.fs, base, true), target); err != nil {
			return 0, 0, nil, fmt.Errorf("migrate ledger %s: %w", dir, err)
		} else if current {
			return v, v, nil, nil
		}
	}
	po := pebbleOptions(opts.fs, base, true)
	po.ReadOnly = opts.DryRun
	scrubbed := false
	defer func() {
		if scrubbed && err == nil {
			if opts.scrubbing != nil {
				opts.scrubbing()
			}
			err = dropObsoleteLogs(dir, pebbleOptions(opts.fs, base, true))
		}
	}()
	db, err := pebble.Open(dir, po)
	if err != nil {
		return 0, 0, nil, fmt.Errorf("migrate ledger %s: %w", dir, err)
	}
	defer func() {
		if cerr := db.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("migrate ledger %s: %w", dir, cerr)
		}
	}()
	if !opts.DryRun {
		if scrubbed, err = finishScrub(ctx, db); err != nil {
			return 0, 0, nil, fmt.Errorf("migrate ledger %s: %w", dir, err)
		}
	}
	raw, ok, err := getFrom(db, keySchema)
	if err != nil {
		return 0, 0, nil, fmt.Errorf("migrate ledger %s: %w", dir, err)
	}
	if !ok {
		return 0, 0, nil, fmt.Errorf("migrate ledger %s: no schema version: not a teeup ledger", dir)
	}
	v, err := decodeU64("schema version", raw)
	if err != nil {
		return 0, 0, nil, fmt.Errorf("migrate ledger %s: %w", dir, err)
	}
	from = int(v)
	if v > uint64(newest) {
		return from, from, nil, fmt.Errorf("migrate ledger %s: database schema %d is newer than this binary supports (%d)", dir, v, newest)
	}
	if target < from {
		return from, from, nil, fmt.Errorf("migrate ledger %s: schema %d to %d is a downgrade, and migrations only go forward: restore a snapshot to go back", dir, from, target)
	}
	to = from
	if !opts.Key.IsZero() {
		ctx = ContextWithLedgerKey(ctx, opts.Key)
	}
	for _, m := range ms {
		if m.Version <= from || m.Version > target {
			continue
		}
		step := MigrationStep{Version: m.Version, Name: m.Name}
		if opts.DryRun {
			steps = append(steps, step)
			to = m.Version
			continue
		}
		if err := runMigration(ctx, db, m, opts.Before); err != nil {
			return from, to, steps, fmt.Errorf("migrate ledger %s: schema %d %q: %w (the database stays at schema %d)", dir, m.Version, m.Name, err, to)
		}
		step.Applied = true
		steps = append(steps, step)
		to = m.Version
		if m.Scrub {
			if err := scrub(ctx, db); err != nil {
				return from, to, steps, fmt.Errorf("migrate ledger %s: schema %d %q is applied, removing the records it replaced from disk failed: %w (run the migration again to finish)", dir, m.Version, m.Name, err)
			}
			scrubbed = true
		}
		log.Info("migration applied", "dir", dir, "version", m.Version, "name", m.Name)
	}
	return from, to, steps, nil
}

// atSchema opens the database read-only and reports its schema version and
// whether it is exactly target with no scrub pending: nothing to migrate.
func atSchema(dir string, po *pebble.Options, target int) (v int, current bool, err error) {
	po.ReadOnly = true
	db, err := pebble.Open(dir, po)
	if err != nil {
		return 0, false, err
	}
	defer func() {
		if cerr := db.Close(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	raw, ok, err := getFrom(db, keySchema)
	if err != nil || !ok {
		return 0, false, err // no schema: the writable pass says why
	}
	u, err := decodeU64("schema version", raw)
	if err != nil {
		return 0, false, err
	}
	_, scrubPending, err := getFrom(db, keyScrubPending)
	if err != nil {
		return 0, false, err
	}
	return int(u), int(u) == target && !scrubPending, nil
}

// runMigration runs one migration and commits it with its version.
func runMigration(ctx context.Context, db *pebble.DB, m Migration, before func(Migration) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if before != nil {
		if err := before(m); err != nil {
			return err
		}
	}
	b := db.NewBatch()
	defer b.Close()
	if err := m.Up(ctx, db, b); err != nil {
		return err
	}
	if m.Scrub {
		if err := b.Set(keyScrubPending, nil, nil); err != nil {
			return err
		}
	}
	if err := b.Set(keySchema, u64(uint64(m.Version)), nil); err != nil {
		return err
	}
	return b.Commit(pebble.Sync)
}

// buildAccountHistory is migration 2: it indexes every committed payment
// of blocks 1 to head under its sender and recipient.
func buildAccountHistory(ctx context.Context, db *pebble.DB, b *pebble.Batch) error {
	key, ok := LedgerKeyFromContext(ctx)
	if !ok {
		return fmt.Errorf("build account history: %w (block bodies must be decrypted)", ErrNoLedgerKey)
	}
	cs, err := newSuite(key)
	if err != nil {
		return fmt.Errorf("build account history: %w", err)
	}
	chain, _, err := getFrom(db, keyChainID)
	if err != nil {
		return fmt.Errorf("build account history: %w", err)
	}
	return scan(db, []byte(prefixBlock), false, func(k, v []byte) (bool, error) {
		if err := ctx.Err(); err != nil {
			return false, err
		}
		blk, err := DecodeBlock(v)
		if err != nil {
			return false, fmt.Errorf("build account history: corrupt block %x: %w", k, err)
		}
		h := &blk.Header
		if h.Height == 0 {
			return true, nil
		}
		txs, err := cs.openBody(string(chain), h.Height, h.PrevHash, blk.Body)
		if err != nil {
			return false, fmt.Errorf("build account history: %w", err)
		}
		for i, t := range txs {
			if t.Kind != TxPayment {
				continue
			}
			p, err := DecodePayment(t.Payload)
			if err != nil {
				return false, fmt.Errorf("build account history: block %d tx %d: %w", h.Height, i, err)
			}
			e := HistoryEntry{Height: h.Height, Index: uint32(i), TxID: t.ID(), From: t.From, To: p.To, Amount: p.Amount}
			if err := writeHistory(nil, b, e); err != nil {
				return false, err
			}
		}
		return true, nil
	})
}
