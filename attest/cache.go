package attest

import (
	"bytes"
	"container/list"
	"crypto/sha256"
	"crypto/x509"
	"time"

	"github.com/teeup/teeup/tee"
)

// Defaults of the Verifier's reuse settings.
const (
	// DefaultCacheSize is how many verified certificates a Verifier keeps
	// when CacheSize is 0. A node verifies at most its few peers and a
	// client its few nodes, so this is generous; the bound only matters
	// against a flood of distinct genuine certificates.
	DefaultCacheSize = 64
	// DefaultReuseTTL is how long, after a certificate's full verification,
	// the Verifier reuses that verification (from its cache, or through TLS
	// session resumption) when ReuseTTL is 0.
	DefaultReuseTTL = 10 * time.Minute
)

// verified is what a full verification of an attested certificate
// established: the quote verifies against the pinned root and binds the
// certificate's key. It does not depend on the policy, which is checked
// again on every use.
type verified struct {
	der    []byte // the exact DER the verification was about
	cert   *x509.Certificate
	report tee.Report
	at     time.Time // when it was verified
}

// certCache is a bounded LRU cache of full verifications keyed by the
// SHA-256 of the certificate's exact DER (and compared on the DER itself).
// It remembers the quote verifier and the policy it was filled under and
// empties itself when either differs from the Verifier's current ones.
type certCache struct {
	max     int
	quotes  tee.QuoteVerifier
	policy  Policy
	entries map[[32]byte]*list.Element // of *verified
	lru     list.List                  // front: most recently used
}

func newCertCache(max int) *certCache {
	return &certCache{max: max, entries: make(map[[32]byte]*list.Element)}
}

// sync empties the cache if it was filled under another quote verifier or
// policy than the given ones, and records them.
func (c *certCache) sync(quotes tee.QuoteVerifier, policy Policy) {
	if sameValue(c.quotes, quotes) && sameValue(c.policy, policy) {
		return
	}
	c.flush()
	c.quotes, c.policy = quotes, policy
}

func (c *certCache) flush() {
	clear(c.entries)
	c.lru.Init()
}

// get returns the verification of exactly der if it is cached and at most
// ttl old at now; a stale entry is dropped.
func (c *certCache) get(der []byte, now time.Time, ttl time.Duration) *verified {
	key := sha256.Sum256(der)
	el, ok := c.entries[key]
	if !ok {
		return nil
	}
	v := el.Value.(*verified)
	if !bytes.Equal(v.der, der) {
		return nil
	}
	if now.Before(v.at) || now.Sub(v.at) > ttl {
		c.remove(key, el)
		return nil
	}
	c.lru.MoveToFront(el)
	return v
}

// put records a verification, evicting the least recently used entries
// beyond the bound.
func (c *certCache) put(v *verified) {
	key := sha256.Sum256(v.der)
	if el, ok := c.entries[key]; ok {
		el.Value = v
		c.lru.MoveToFront(el)
		return
	}
	c.entries[key] = c.lru.PushFront(v)
	for c.lru.Len() > c.max {
		last := c.lru.Back()
		c.remove(sha256.Sum256(last.Value.(*verified).der), last)
	}
}

func (c *certCache) remove(key [32]byte, el *list.Element) {
	delete(c.entries, key)
	c.lru.Remove(el)
}

func (c *certCache) len() int { return c.lru.Len() }

// sameValue reports whether a and b are the same comparable value (for
// pointers: the same object). Values of types that cannot be compared are
// never the same, so a cache filled under such a policy is emptied on
// every use rather than trusted.
func sameValue(a, b any) (same bool) {
	defer func() {
		if recover() != nil {
			same = false
		}
	}()
	return a == b
}
