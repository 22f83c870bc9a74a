package consensus

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/teeup/teeup/attest"
	"github.com/teeup/teeup/tee"
)

// Frame types on a peer connection. Every connection starts with a hello
// from the dialer naming its node id; raft messages follow. A key request
// connection carries one request and one response.
const (
	frameHello       byte = 1
	frameRaft        byte = 2
	frameKeyRequest  byte = 3
	frameKeyResponse byte = 4
)

// MaxFrame bounds a frame's payload.
const MaxFrame = 64 << 20

const (
	dialTimeout      = 3 * time.Second
	handshakeTimeout = 5 * time.Second
	writeTimeout     = 10 * time.Second
	maxBackoff       = 2 * time.Second
	queueSize        = 4096
)

func writeFrame(w io.Writer, typ byte, payload []byte) error {
	if len(payload) > MaxFrame {
		return fmt.Errorf("frame of %d bytes exceeds %d", len(payload), MaxFrame)
	}
	var hdr [5]byte
	hdr[0] = typ
	binary.BigEndian.PutUint32(hdr[1:], uint32(len(payload)))
	if _, err := w.Write(hdr[:]); err != nil {
		return err
	}
	_, err := w.Write(payload)
	return err
}

// readFrame reads one frame; payloads are bounded by MaxFrame.
func readFrame(r io.Reader) (byte, []byte, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[1:])
	if n > MaxFrame {
		return 0, nil, fmt.Errorf("frame of %d bytes exceeds %d", n, MaxFrame)
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(r, buf); err != nil {
		return 0, nil, err
	}
	return hdr[0], buf, nil
}

// PeerInfo describes what the transport knows of a peer.
type PeerInfo struct {
	ID        uint64       `json:"id"`
	Addr      string       `json:"addr"`
	Connected bool         `json:"connected"`
	Identity  tee.Identity `json:"identity"`
	LastError string       `json:"last_error,omitempty"`
	// LastSeen is when a message arrived from the peer or a handshake with
	// it succeeded; LastSent when a message to it was written.
	LastSeen time.Time `json:"last_seen"`
	LastSent time.Time `json:"last_sent"`
}

// Live reports whether the peer showed activity within window.
func (p PeerInfo) Live(window time.Duration) bool {
	return time.Since(p.LastSeen) < window || (p.Connected && time.Since(p.LastSent) < window)
}

// KeyProvider returns the ledger key to give a joining peer, or ok=false
// when this node has none yet.
type KeyProvider func() (key []byte, ok bool)

// TransportConfig configures a Transport.
type TransportConfig struct {
	ID       uint64
	Listen   string            // address to listen on for peers
	Peers    map[uint64]string // other nodes' peer addresses
	Creds    *attest.Credentials
	Verifier *attest.Verifier // peering policy: the node's own exact MRENCLAVE
	Keys     KeyProvider
	Logger   *slog.Logger
}

// Transport carries raft messages between nodes over mutual attested TLS.
// Only peers passing the verifier's policy can connect or be connected
// to; a refused peer is logged with the expected and presented
// measurement and never reaches raft.
type Transport struct {
	cfg     TransportConfig
	log     *slog.Logger
	deliver func(*pb.Message)
	unreach func(id uint64)

	ln     net.Listener
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	peers   map[uint64]*PeerInfo
	queues  map[uint64]chan *pb.Message
	inbound map[net.Conn]struct{}
}

// NewTransport validates cfg. Start begins listening and dialing.
func NewTransport(cfg TransportConfig) (*Transport, error) {
	if cfg.Creds == nil || cfg.Verifier == nil {
		return nil, errors.New("transport: credentials and verifier are required")
	}
	if _, err := attest.ForPeering(cfg.Verifier.Policy); err != nil {
		return nil, fmt.Errorf("transport: %w", err)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	t := &Transport{
		cfg:     cfg,
		log:     cfg.Logger.With("component", "transport"),
		peers:   make(map[uint64]*PeerInfo),
		queues:  make(map[uint64]chan *pb.Message),
		inbound: make(map[net.Conn]struct{}),
	}
	for id, addr := range cfg.Peers {
		if id == cfg.ID {
			continue
		}
		t.peers[id] = &PeerInfo{ID: id, Addr: addr}
		t.queues[id] = make(chan *pb.Message, queueSize)
	}
	return t, nil
}

// Start listens for peers and starts one sender per peer. deliver is
// called for every raft message received; unreachable when a peer cannot
// be reached.
func (t *Transport) Start(ctx context.Context, deliver func(*pb.Message), unreachable func(id uint64)) error {
	ln, err := net.Listen("tcp", t.cfg.Listen)
	if err != nil {
		return fmt.Errorf("transport: listen %s: %w", t.cfg.Listen, err)
	}
	t.ln = ln
	t.deliver, t.unreach = deliver, unreachable
	ctx, t.cancel = context.WithCancel(ctx)
	t.wg.Add(1)
	go t.acceptLoop(ctx)
	for id := range t.queues {
		t.wg.Add(1)
		go t.sendLoop(ctx, id)
	}
	return nil
}

// Addr returns the listening address.
func (t *Transport) Addr() net.Addr { return t.ln.Addr() }

// Stop closes the listener and every connection and waits for goroutines.
func (t *Transport) Stop() {
	if t.cancel != nil {
		t.cancel()
	}
	if t.ln != nil {
		t.ln.Close()
	}
	t.mu.Lock()
	for c := range t.inbound {
		c.Close()
	}
	t.mu.Unlock()
	t.wg.Wait()
}

// Send queues messages for their peers. A full queue drops the message
// and reports the peer unreachable: raft retransmits.
func (t *Transport) Send(msgs []*pb.Message) {
	for _, m := range msgs {
		q, ok := t.queues[m.GetTo()]
		if !ok {
			continue
		}
		select {
		case q <- m:
		default:
			if t.unreach != nil {
				t.unreach(m.GetTo())
			}
		}
	}
}

// Peers returns a snapshot of what is known about each peer.
func (t *Transport) Peers() []PeerInfo {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]PeerInfo, 0, len(t.peers))
	for _, p := range t.peers {
		out = append(out, *p)
	}
	return out
}

func (t *Transport) updatePeer(id uint64, f func(p *PeerInfo)) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if p, ok := t.peers[id]; ok {
		f(p)
	}
}

func (t *Transport) acceptLoop(ctx context.Context) {
	defer t.wg.Done()
	for {
		c, err := t.ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			t.log.Warn("accept peer connection", "err", err)
			continue
		}
		t.mu.Lock()
		t.inbound[c] = struct{}{}
		t.mu.Unlock()
		t.wg.Add(1)
		go func() {
			defer t.wg.Done()
			defer func() {
				t.mu.Lock()
				delete(t.inbound, c)
				t.mu.Unlock()
				c.Close()
			}()
			t.serveConn(ctx, c)
		}()
	}
}

func (t *Transport) serveConn(ctx context.Context, raw net.Conn) {
	tc := tls.Server(raw, attest.ServerConfig(t.cfg.Creds, t.cfg.Verifier))
	hctx, cancel := context.WithTimeout(ctx, handshakeTimeout)
	err := tc.HandshakeContext(hctx)
	cancel()
	if err != nil {
		// Our policy error names the expected and the presented measurement.
		// If instead the peer aborted first, it refused our attestation and
		// never showed its certificate: its own log names both measurements.
		if strings.Contains(err.Error(), "remote error") {
			t.log.Warn("refused peer connection", "remote", raw.RemoteAddr().String(), "reason", "the peer rejected our attestation",
				"our_mrenclave", t.cfg.Creds.Identity.UniqueID.String(), "err", err)
		} else {
			t.log.Warn("refused peer connection", "remote", raw.RemoteAddr().String(), "err", err)
		}
		return
	}
	peer, err := t.cfg.Verifier.PeerFromState(tc.ConnectionState())
	if err != nil {
		t.log.Warn("refused peer connection", "remote", raw.RemoteAddr().String(), "err", err)
		return
	}
	r := bufio.NewReaderSize(tc, 64<<10)
	typ, payload, err := readFrame(r)
	if err != nil || typ != frameHello || len(payload) != 8 {
		t.log.Warn("peer connection without hello", "remote", raw.RemoteAddr().String(), "err", err)
		return
	}
	from := binary.BigEndian.Uint64(payload)
	if _, known := t.cfg.Peers[from]; !known || from == t.cfg.ID {
		t.log.Warn("peer connection from unknown node id", "id", from, "remote", raw.RemoteAddr().String())
		return
	}
	t.updatePeer(from, func(p *PeerInfo) { p.Identity, p.LastSeen = peer.Identity, time.Now() })
	for {
		typ, payload, err := readFrame(r)
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				t.log.Debug("peer connection closed", "id", from, "err", err)
			}
			return
		}
		switch typ {
		case frameRaft:
			m := &pb.Message{}
			if err := proto.Unmarshal(payload, m); err != nil {
				t.log.Warn("malformed raft message", "id", from, "err", err)
				return
			}
			if m.GetFrom() != from || m.GetTo() != t.cfg.ID {
				t.log.Warn("raft message with wrong addressing", "id", from, "msg_from", m.GetFrom(), "msg_to", m.GetTo())
				return
			}
			t.updatePeer(from, func(p *PeerInfo) { p.LastSeen = time.Now() })
			t.deliver(m)
		case frameKeyRequest:
			resp := []byte{0}
			if t.cfg.Keys != nil {
				if key, ok := t.cfg.Keys(); ok {
					resp = append([]byte{1}, key...)
				}
			}
			_ = tc.SetWriteDeadline(time.Now().Add(writeTimeout))
			if err := writeFrame(tc, frameKeyResponse, resp); err != nil {
				t.log.Warn("send ledger key", "id", from, "err", err)
			} else if resp[0] == 1 {
				t.log.Info("gave the ledger key to an attested peer", "id", from, "mrenclave", peer.Identity.UniqueID.String())
			}
			return
		default:
			t.log.Warn("unknown frame type", "id", from, "type", typ)
			return
		}
	}
}

// dial opens an attested connection to peer id and sends the hello.
func (t *Transport) dial(ctx context.Context, id uint64) (*tls.Conn, *attest.Peer, error) {
	addr := t.cfg.Peers[id]
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: dialTimeout}, Config: attest.ClientConfig(t.cfg.Creds, t.cfg.Verifier)}
	dctx, cancel := context.WithTimeout(ctx, handshakeTimeout)
	defer cancel()
	c, err := d.DialContext(dctx, "tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("dial peer %d at %s: %w", id, addr, err)
	}
	tc := c.(*tls.Conn)
	peer, err := t.cfg.Verifier.PeerFromState(tc.ConnectionState())
	if err != nil {
		tc.Close()
		return nil, nil, fmt.Errorf("peer %d at %s: %w", id, addr, err)
	}
	hello := binary.BigEndian.AppendUint64(nil, t.cfg.ID)
	_ = tc.SetWriteDeadline(time.Now().Add(writeTimeout))
	if err := writeFrame(tc, frameHello, hello); err != nil {
		tc.Close()
		return nil, nil, fmt.Errorf("hello to peer %d: %w", id, err)
	}
	return tc, peer, nil
}

func (t *Transport) sendLoop(ctx context.Context, id uint64) {
	defer t.wg.Done()
	q := t.queues[id]
	backoff := 50 * time.Millisecond
	var conn *tls.Conn
	var w *bufio.Writer
	defer func() {
		if conn != nil {
			conn.Close()
		}
	}()
	for {
		var m *pb.Message
		select {
		case <-ctx.Done():
			return
		case m = <-q:
		}
		if conn == nil {
			c, peer, err := t.dial(ctx, id)
			if err != nil {
				t.updatePeer(id, func(p *PeerInfo) { p.Connected, p.LastError = false, err.Error() })
				if errors.Is(err, attest.ErrMeasurementNotAllowed) || errors.Is(err, attest.ErrDebugEnclave) {
					t.log.Warn("refused to peer", "id", id, "err", err)
				} else {
					t.log.Debug("peer unreachable", "id", id, "err", err)
				}
				if t.unreach != nil {
					t.unreach(id)
				}
				drain(q)
				select {
				case <-ctx.Done():
					return
				case <-time.After(backoff):
				}
				backoff = min(backoff*2, maxBackoff)
				continue
			}
			conn, w = c, bufio.NewWriterSize(c, 64<<10)
			backoff = 50 * time.Millisecond
			t.updatePeer(id, func(p *PeerInfo) {
				p.Connected, p.LastError, p.Identity, p.LastSeen = true, "", peer.Identity, time.Now()
			})
			t.log.Info("connected to peer", "id", id, "mrenclave", peer.Identity.UniqueID.Short())
		}
		err := t.writeBatch(conn, w, m, q)
		if err == nil {
			t.updatePeer(id, func(p *PeerInfo) { p.LastSent = time.Now() })
		}
		if err != nil {
			t.log.Debug("send to peer failed", "id", id, "err", err)
			t.updatePeer(id, func(p *PeerInfo) { p.Connected, p.LastError = false, err.Error() })
			conn.Close()
			conn, w = nil, nil
			if t.unreach != nil {
				t.unreach(id)
			}
		}
	}
}

// writeBatch writes m and whatever else is queued, then flushes once.
func (t *Transport) writeBatch(conn *tls.Conn, w *bufio.Writer, m *pb.Message, q chan *pb.Message) error {
	_ = conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	for {
		raw, err := proto.Marshal(m)
		if err != nil {
			return fmt.Errorf("encode raft message: %w", err)
		}
		if err := writeFrame(w, frameRaft, raw); err != nil {
			return err
		}
		select {
		case m = <-q:
			continue
		default:
		}
		return w.Flush()
	}
}

func drain(q chan *pb.Message) {
	for {
		select {
		case <-q:
		default:
			return
		}
	}
}

// FetchLedgerKey asks peer id for the network's ledger key over mutual
// attested TLS. ok is false when the peer has no key yet.
func (t *Transport) FetchLedgerKey(ctx context.Context, id uint64) (key []byte, ok bool, err error) {
	c, _, err := t.dial(ctx, id)
	if err != nil {
		return nil, false, err
	}
	defer c.Close()
	if err := writeFrame(c, frameKeyRequest, nil); err != nil {
		return nil, false, fmt.Errorf("key request to peer %d: %w", id, err)
	}
	_ = c.SetReadDeadline(time.Now().Add(writeTimeout))
	typ, payload, err := readFrame(c)
	if err != nil {
		return nil, false, fmt.Errorf("key response from peer %d: %w", id, err)
	}
	if typ != frameKeyResponse || len(payload) < 1 {
		return nil, false, fmt.Errorf("key response from peer %d: malformed", id)
	}
	if payload[0] == 0 {
		return nil, false, nil
	}
	return payload[1:], true, nil
}

// Probe opens a fresh mutual attested TLS connection to peer id and
// returns the identity it proved. It tests attestation end to end, whether
// or not raft traffic flows between the two nodes.
func (t *Transport) Probe(ctx context.Context, id uint64) (tee.Identity, error) {
	if _, ok := t.cfg.Peers[id]; !ok || id == t.cfg.ID {
		return tee.Identity{}, fmt.Errorf("probe: %d is not a peer", id)
	}
	c, peer, err := t.dial(ctx, id)
	if err != nil {
		return tee.Identity{}, err
	}
	c.Close()
	t.updatePeer(id, func(p *PeerInfo) { p.Identity, p.LastSeen = peer.Identity, time.Now() })
	return peer.Identity, nil
}
