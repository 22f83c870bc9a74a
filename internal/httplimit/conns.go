package httplimit

import (
	"container/list"
	"net"
	"sync"
)

// listener admits accepted connections through a connTable.
type listener struct {
	net.Listener
	t *connTable
}

// Accept returns the next admitted connection; connections that cannot be
// admitted are closed here and never reach the server.
func (l *listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if tc := l.t.admit(c); tc != nil {
			return tc, nil
		}
		c.Close()
	}
}

// conn is an admitted connection; closing it releases its place.
type conn struct {
	net.Conn
	t      *connTable
	source string

	// Guarded by t.mu.
	busy    bool
	closed  bool
	waiting *list.Element // in t.waiting while not busy
	bySrc   *list.Element // in the source's waiting list while not busy
}

// Close closes the connection and releases its place (once).
func (c *conn) Close() error {
	c.t.release(c)
	return c.Conn.Close()
}

// NetConn returns the accepted connection.
func (c *conn) NetConn() net.Conn { return c.Conn }

// unwrap finds the admitted connection under c (a *tls.Conn wraps it).
func unwrap(c net.Conn) *conn {
	for range 4 {
		switch x := c.(type) {
		case *conn:
			return x
		case interface{ NetConn() net.Conn }:
			c = x.NetConn()
		default:
			return nil
		}
	}
	return nil
}

// source is one address's connections.
type source struct {
	open    int
	waiting list.List // of *conn, oldest first
}

// connTable counts open connections and orders those waiting between
// requests by how long they have waited.
type connTable struct {
	max, maxPerSource int

	mu      sync.Mutex
	open    int
	busy    int
	waiting list.List // of *conn, oldest first
	sources map[string]*source
	st      Stats
}

func newConnTable(max, maxPerSource int) *connTable {
	return &connTable{max: max, maxPerSource: maxPerSource, sources: make(map[string]*source)}
}

// admit registers c. When c's source or the whole table is at its bound,
// it first closes the connection that has waited longest between requests
// (of that source, for the per-source bound). It returns nil, admitting
// nothing, when every connection that could make room is busy.
func (t *connTable) admit(c net.Conn) *conn {
	src := sourceOf(c.RemoteAddr().String())
	var evict *conn
	t.mu.Lock()
	s := t.sources[src]
	if s == nil {
		s = &source{}
		t.sources[src] = s
	}
	// Evicting one of the source's connections also frees a place in the
	// total: one eviction at most.
	var oldest *list.Element
	switch {
	case s.open >= t.maxPerSource:
		oldest = s.waiting.Front()
	case t.open >= t.max:
		oldest = t.waiting.Front()
	}
	if s.open >= t.maxPerSource || t.open >= t.max {
		if oldest == nil {
			t.st.Refused++
			if s.open == 0 {
				delete(t.sources, src)
			}
			t.mu.Unlock()
			return nil
		}
		evict = oldest.Value.(*conn)
		t.releaseLocked(evict)
		t.st.Evicted++
	}
	tc := &conn{Conn: c, t: t, source: src}
	t.open++
	s.open++
	t.waitLocked(tc, s)
	t.st.Accepted++
	t.mu.Unlock()
	if evict != nil {
		evict.Conn.Close() // its server goroutine fails, closes it again: a no-op
	}
	return tc
}

func (t *connTable) waitLocked(c *conn, s *source) {
	c.busy = false
	c.waiting = t.waiting.PushBack(c)
	c.bySrc = s.waiting.PushBack(c)
}

func (t *connTable) unwaitLocked(c *conn) {
	if c.waiting != nil {
		t.waiting.Remove(c.waiting)
		c.waiting = nil
	}
	if c.bySrc != nil {
		if s := t.sources[c.source]; s != nil {
			s.waiting.Remove(c.bySrc)
		}
		c.bySrc = nil
	}
}

// setBusy records that c started (true) or finished (false) a request.
func (t *connTable) setBusy(c *conn, busy bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if c.closed || c.busy == busy {
		return
	}
	if busy {
		t.unwaitLocked(c)
		c.busy = true
		t.busy++
		return
	}
	t.busy--
	if s := t.sources[c.source]; s != nil {
		t.waitLocked(c, s)
	}
}

func (t *connTable) release(c *conn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.releaseLocked(c)
}

func (t *connTable) releaseLocked(c *conn) {
	if c.closed {
		return
	}
	c.closed = true
	if c.busy {
		c.busy = false
		t.busy--
	}
	t.unwaitLocked(c)
	t.open--
	if s := t.sources[c.source]; s != nil {
		s.open--
		if s.open == 0 {
			delete(t.sources, c.source)
		}
	}
}

func (t *connTable) countRateLimited() {
	t.mu.Lock()
	t.st.RateLimited++
	t.mu.Unlock()
}

func (t *connTable) countTooLarge() {
	t.mu.Lock()
	t.st.TooLarge++
	t.mu.Unlock()
}

func (t *connTable) stats() Stats {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.st
	s.Open, s.Busy = t.open, t.busy
	return s
}
