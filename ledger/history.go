package ledger

import (
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// writeHistory indexes a committed payment under its sender and its
// recipient (once for a self-payment).
func writeHistory(b *pebble.Batch, e HistoryEntry) error {
	v := encodeHistory(e)
	if err := b.Set(historyKey(e.From, e.Height, e.Index), v, nil); err != nil {
		return fmt.Errorf("index payment %s: %w", e.TxID, err)
	}
	if e.To == e.From {
		return nil
	}
	if err := b.Set(historyKey(e.To, e.Height, e.Index), v, nil); err != nil {
		return fmt.Errorf("index payment %s: %w", e.TxID, err)
	}
	return nil
}

// AccountHistory returns the committed payments sent or received by addr,
// newest first, at most limit of them (all if limit ≤ 0). It needs schema
// version 2 or later.
func (s *Store) AccountHistory(addr Address, limit int) ([]HistoryEntry, error) {
	if s.schema < schemaAccountHistory {
		return nil, fmt.Errorf("account history of %s: needs schema %d, the database is at %d: run 'teeup-node migrate'", addr, schemaAccountHistory, s.schema)
	}
	prefix := append([]byte(prefixHistory), addr[:]...)
	var out []HistoryEntry
	err := scan(s.db, prefix, true, func(k, v []byte) (bool, error) {
		e, err := decodeHistory(k, v)
		if err != nil {
			return false, err
		}
		out = append(out, e)
		return limit <= 0 || len(out) < limit, nil
	})
	if err != nil {
		return nil, fmt.Errorf("account history of %s: %w", addr, err)
	}
	return out, nil
}
