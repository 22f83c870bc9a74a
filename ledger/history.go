package ledger

import (
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// writeHistory indexes a committed payment under its sender and its
// recipient (once for a self-payment), sealed by r (see atrest.go).
func writeHistory(r *atRest, b *pebble.Batch, e HistoryEntry) error {
	v := encodeHistory(e)
	if err := r.put(b, r.historyKey(e.From, e.Height, e.Index), v); err != nil {
		return fmt.Errorf("index payment %s: %w", e.TxID, err)
	}
	if e.To == e.From {
		return nil
	}
	if err := r.put(b, r.historyKey(e.To, e.Height, e.Index), v); err != nil {
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
	if err := s.sealedReadable(); err != nil {
		return nil, fmt.Errorf("account history of %s: %w", addr, err)
	}
	prefix := s.rest.historyPrefix(addr)
	var out []HistoryEntry
	err := scan(s.db, prefix, true, func(k, v []byte) (bool, error) {
		v, err := s.rest.open(k, v)
		if err != nil {
			return false, err
		}
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
