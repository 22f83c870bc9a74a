package ledger

import (
	"context"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// keyScrubPending marks a database whose last migration replaced records
// that may still lie on disk in old sstables, write-ahead logs or manifest
// entries. It commits with the migration; Migrate removes it once the
// scrub is done, and a Migrate that finds it (after a crash) finishes the
// scrub first.
var keyScrubPending = []byte(prefixMeta + "scrub")

// encryptAtRest is migration 3: every account record, transaction status
// and account history entry moves to its keyed-hash key with its value
// sealed, every pool entry is sealed in place, and the plaintext records
// are deleted, all in the migration's batch.
func encryptAtRest(ctx context.Context, db *pebble.DB, b *pebble.Batch) error {
	key, ok := LedgerKeyFromContext(ctx)
	if !ok {
		return fmt.Errorf("encrypt records at rest: %w (the at-rest keys derive from it)", ErrNoLedgerKey)
	}
	r, err := newAtRest(key)
	if err != nil {
		return fmt.Errorf("encrypt records at rest: %w", err)
	}
	move := func(prefix string, idLen int, newKey func(old []byte) []byte) error {
		return scan(db, []byte(prefix), false, func(k, v []byte) (bool, error) {
			if err := ctx.Err(); err != nil {
				return false, err
			}
			if len(k) != len(prefix)+idLen {
				return false, fmt.Errorf("encrypt records at rest: corrupt key %x", k)
			}
			nk := newKey(k)
			if err := b.Delete(k, nil); err != nil {
				return false, err
			}
			return true, r.put(b, nk, v)
		})
	}
	steps := []struct {
		prefix string
		idLen  int
		newKey func(old []byte) []byte
	}{
		{prefixAccount, 32, func(k []byte) []byte {
			return r.accountKey(Address(k[len(prefixAccount):]))
		}},
		{prefixStatus, 32, func(k []byte) []byte {
			return r.statusKey(Hash(k[len(prefixStatus):]))
		}},
		{prefixHistory, 32 + 8 + 4, func(k []byte) []byte {
			rest := k[len(prefixHistory):]
			return append(r.historyPrefix(Address(rest[:32])), rest[32:]...)
		}},
	}
	for _, st := range steps {
		if err := move(st.prefix, st.idLen, st.newKey); err != nil {
			return fmt.Errorf("encrypt records at rest (%s): %w", st.prefix, err)
		}
	}
	err = scan(db, []byte(prefixPool), false, func(k, v []byte) (bool, error) {
		return true, r.put(b, k, v)
	})
	if err != nil {
		return fmt.Errorf("encrypt records at rest (%s): %w", prefixPool, err)
	}
	return nil
}

// scrub flushes the memtable and compacts the whole key space, so that
// the sstables holding replaced records are rewritten without them and
// deleted, then removes the pending mark.
func scrub(ctx context.Context, db *pebble.DB) error {
	if err := db.Flush(); err != nil {
		return fmt.Errorf("scrub: flush: %w", err)
	}
	if err := db.Compact(ctx, []byte{0}, []byte{0xff}, true); err != nil {
		return fmt.Errorf("scrub: compact: %w", err)
	}
	if err := db.Delete(keyScrubPending, pebble.Sync); err != nil {
		return fmt.Errorf("scrub: %w", err)
	}
	return nil
}

// finishScrub completes a scrub that a crash interrupted; it reports
// whether there was one.
func finishScrub(ctx context.Context, db *pebble.DB) (bool, error) {
	_, pending, err := getFrom(db, keyScrubPending)
	if err != nil || !pending {
		return false, err
	}
	if err := scrub(ctx, db); err != nil {
		return false, fmt.Errorf("finish the interrupted scrub: %w", err)
	}
	return true, nil
}

// dropObsoleteLogs opens a scrubbed database once more and closes it:
// Pebble deletes at open the write-ahead logs that a closed session kept
// for recycling (they hold the replaced records' bytes), and a tiny
// manifest size limit makes it rotate the manifest past the edits that
// named the deleted sstables' key bounds.
func dropObsoleteLogs(dir string, po *pebble.Options) (err error) {
	po.MaxManifestFileSize = 1
	db, err := pebble.Open(dir, po)
	if err != nil {
		return fmt.Errorf("scrub %s: reopen: %w", dir, err)
	}
	defer func() {
		err = errors.Join(err, db.Close())
	}()
	// Each flush of a non-empty memtable is a manifest edit, and with the
	// limit above each edit starts a new manifest; Pebble keeps one
	// previous manifest, so two edits retire the old ones.
	for i := range 2 {
		if err := db.Set(keyScrubPending, nil, pebble.Sync); err != nil {
			return fmt.Errorf("scrub %s: %w", dir, err)
		}
		if err := db.Delete(keyScrubPending, pebble.Sync); err != nil {
			return fmt.Errorf("scrub %s: %w", dir, err)
		}
		if err := db.Flush(); err != nil {
			return fmt.Errorf("scrub %s: flush %d: %w", dir, i, err)
		}
	}
	return nil
}
