package consensus

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// Forwarding: a member hands a request (a payment for the leader's
// mempool) to another member over the same mutual attested TLS and signed
// hellos as raft, on one persistent connection per peer that carries many
// requests at once. Each frameForward payload is an 8-byte request id and
// the request; each frameForwardAnswer payload the id and the answer. The
// bytes are opaque here: the Forwarded handler gives them meaning.
const (
	frameForward       byte = 8
	frameForwardAnswer byte = 9
)

// PurposeForward carries forwarded requests and their answers.
const PurposeForward Purpose = 6

// maxForwardInFlight bounds the requests a forwarding connection serves at
// once; further requests wait for the reader.
const maxForwardInFlight = 4096

// ErrForwardClosed is wrapped by Forward's error when the connection to
// the peer closed before its answer came (the request may or may not have
// been handled).
var ErrForwardClosed = errors.New("forwarding connection closed")

// fwdConn is this node's forwarding connection to one peer.
type fwdConn struct {
	conn *tls.Conn
	wmu  sync.Mutex // serialises writes

	mu      sync.Mutex
	next    uint64
	pending map[uint64]chan []byte
	err     error // set once the connection is dead
}

func (c *fwdConn) fail(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return
	}
	c.err = err
	for id, ch := range c.pending {
		close(ch)
		delete(c.pending, id)
	}
	c.conn.Close()
}

func (c *fwdConn) dead() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err != nil
}

// Forward sends req to peer id's Forwarded handler and returns its answer.
// The connection is opened on first use and kept; an error wrapping
// ErrForwardClosed means the request's fate is unknown (a retry must be
// safe: forwarded requests are idempotent).
func (t *Transport) Forward(ctx context.Context, id uint64, req []byte) ([]byte, error) {
	c, err := t.forwardConn(ctx, id)
	if err != nil {
		return nil, err
	}
	ch := make(chan []byte, 1)
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return nil, fmt.Errorf("forward to peer %d: %w: %v", id, ErrForwardClosed, err)
	}
	c.next++
	rid := c.next
	c.pending[rid] = ch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.pending, rid)
		c.mu.Unlock()
	}()
	frame := forwardFrame(frameForward, rid, req)
	c.wmu.Lock()
	_ = c.conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	_, err = c.conn.Write(frame)
	c.wmu.Unlock()
	if err != nil {
		c.fail(err)
		return nil, fmt.Errorf("forward to peer %d: %w: %v", id, ErrForwardClosed, err)
	}
	select {
	case ans, ok := <-ch:
		if !ok {
			return nil, fmt.Errorf("forward to peer %d: %w", id, ErrForwardClosed)
		}
		return ans, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("forward to peer %d: %w", id, ctx.Err())
	}
}

// forwardConn returns the live forwarding connection to peer id, dialing
// it if there is none.
func (t *Transport) forwardConn(ctx context.Context, id uint64) (*fwdConn, error) {
	t.fwdMu.Lock()
	defer t.fwdMu.Unlock()
	if c, ok := t.fwd[id]; ok && !c.dead() {
		return c, nil
	}
	addr, ok := t.peerAddr(id)
	if !ok {
		return nil, fmt.Errorf("forward: %d is not a peer", id)
	}
	t.mu.Lock()
	tctx := t.ctx
	t.mu.Unlock()
	if tctx == nil || tctx.Err() != nil {
		return nil, errors.New("forward: the transport is not running")
	}
	tc, r, _, _, err := t.dial(ctx, id, addr, PurposeForward)
	if err != nil {
		return nil, err
	}
	c := &fwdConn{conn: tc, pending: make(map[uint64]chan []byte)}
	if t.fwd == nil {
		t.fwd = make(map[uint64]*fwdConn)
	}
	t.fwd[id] = c
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		stop := context.AfterFunc(tctx, func() { c.fail(tctx.Err()) })
		defer stop()
		for {
			typ, payload, err := readFrame(r)
			if err != nil {
				c.fail(err)
				return
			}
			if typ != frameForwardAnswer || len(payload) < 8 {
				c.fail(fmt.Errorf("unexpected frame %d on a forwarding connection", typ))
				return
			}
			rid := binary.BigEndian.Uint64(payload)
			c.mu.Lock()
			ch, ok := c.pending[rid]
			delete(c.pending, rid)
			c.mu.Unlock()
			if ok {
				ch <- payload[8:]
			}
		}
	}()
	return c, nil
}

// forwardFrame encodes a forwarding frame of type typ (request id rid,
// then body) in one buffer, so that it is written as one TLS record.
func forwardFrame(typ byte, rid uint64, body []byte) []byte {
	b := make([]byte, 5+8+len(body))
	b[0] = typ
	binary.BigEndian.PutUint32(b[1:], uint32(8+len(body)))
	binary.BigEndian.PutUint64(b[5:], rid)
	copy(b[13:], body)
	return b
}

// closeForwards closes this node's forwarding connections.
func (t *Transport) closeForwards() {
	t.fwdMu.Lock()
	defer t.fwdMu.Unlock()
	for id, c := range t.fwd {
		c.fail(net.ErrClosed)
		delete(t.fwd, id)
	}
}

// serveForward answers the requests a peer forwards on one connection,
// concurrently, until it closes.
func (t *Transport) serveForward(ctx context.Context, tc *tls.Conn, r *bufio.Reader, from uint64) {
	if t.cfg.Forwarded == nil {
		return
	}
	var wmu sync.Mutex
	var wg sync.WaitGroup
	defer wg.Wait()
	sem := make(chan struct{}, maxForwardInFlight)
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for {
		typ, payload, err := readFrame(r)
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				t.log.Debug("forwarding connection closed", "id", from, "err", err)
			}
			return
		}
		if typ != frameForward || len(payload) < 8 {
			t.log.Warn("unexpected frame on a forwarding connection", "id", from, "type", typ)
			return
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			ans := t.cfg.Forwarded(cctx, from, payload[8:])
			frame := forwardFrame(frameForwardAnswer, binary.BigEndian.Uint64(payload), ans)
			wmu.Lock()
			defer wmu.Unlock()
			_ = tc.SetWriteDeadline(time.Now().Add(writeTimeout))
			if _, err := tc.Write(frame); err != nil {
				tc.Close()
			}
		}()
	}
}
