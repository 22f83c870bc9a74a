package ledger

import (
	"fmt"
	"log/slog"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// pebbleLogger sends Pebble's log lines to slog.
type pebbleLogger struct{ log *slog.Logger }

// Infof logs at info level.
func (l pebbleLogger) Infof(format string, args ...any) {
	l.log.Info(fmt.Sprintf(format, args...), "component", "pebble")
}

// Errorf logs at error level.
func (l pebbleLogger) Errorf(format string, args ...any) {
	l.log.Error(fmt.Sprintf(format, args...), "component", "pebble")
}

// Fatalf logs at error level and panics: Pebble calls it on broken internal
// invariants and does not expect it to return (its default logger exits the
// process; a panic at least runs deferred cleanup).
func (l pebbleLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	l.log.Error(msg, "component", "pebble", "fatal", true)
	panic("pebble: " + msg)
}

// Pebble tuning of every ledger database.
const (
	// blockCacheSize is the block cache: the hot accounts, statuses and
	// recent blocks stay in memory (Pebble's default is 8 MB).
	blockCacheSize = 64 << 20
	// bloomBitsPerKey sizes the sstables' bloom filters (≈ 1 % false
	// positives): a status lookup of a new transaction id, which finds
	// nothing, then reads no data block.
	bloomBitsPerKey = 10
)

// pebbleOptions returns the options every ledger database is opened with.
// fs is nil for the real file system (tests pass an in-memory one).
func pebbleOptions(fs vfs.FS, log *slog.Logger, mustExist bool) *pebble.Options {
	o := &pebble.Options{
		FS:               fs,
		Logger:           pebbleLogger{log: log},
		ErrorIfNotExists: mustExist,
		CacheSize:        blockCacheSize,
	}
	for i := range o.Levels {
		o.Levels[i].FilterPolicy = bloom.FilterPolicy(bloomBitsPerKey)
	}
	return o
}

// discardIfNil returns l, or a logger that discards everything.
func discardIfNil(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}
