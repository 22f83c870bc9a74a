package httplimit

import (
	"container/list"
	"sync"
	"time"
)

// bucket is one source's token bucket.
type bucket struct {
	source string
	tokens float64
	last   time.Time
}

// rateTable holds a token bucket per source, at most max of them: the
// least recently seen source is forgotten first (and starts again with a
// full bucket, which gives it one burst at most).
type rateTable struct {
	rate  float64 // tokens per second
	burst float64
	max   int

	mu      sync.Mutex
	buckets map[string]*list.Element // of *bucket
	lru     list.List                // front: most recently seen
}

func newRateTable(rate float64, burst, max int) *rateTable {
	return &rateTable{rate: rate, burst: float64(burst), max: max, buckets: make(map[string]*list.Element)}
}

// allow takes a token from src's bucket at now. When none is left it
// reports false and how long until one is.
func (t *rateTable) allow(src string, now time.Time) (bool, time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	el, ok := t.buckets[src]
	if !ok {
		el = t.lru.PushFront(&bucket{source: src, tokens: t.burst, last: now})
		t.buckets[src] = el
		for t.lru.Len() > t.max {
			last := t.lru.Back()
			delete(t.buckets, last.Value.(*bucket).source)
			t.lru.Remove(last)
		}
	} else {
		t.lru.MoveToFront(el)
	}
	b := el.Value.(*bucket)
	if elapsed := now.Sub(b.last); elapsed > 0 {
		b.tokens = min(t.burst, b.tokens+elapsed.Seconds()*t.rate)
		b.last = now
	}
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	return false, time.Duration((1 - b.tokens) / t.rate * float64(time.Second))
}

func (t *rateTable) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.lru.Len()
}
