package consensus

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/teeup/teeup/attest"
	"github.com/teeup/teeup/internal/wire"
	"github.com/teeup/teeup/statetransfer"
	"github.com/teeup/teeup/tee"
)

// Frame types on a peer connection. Each side first sends a signed hello
// (the listener answers the dialer's with its own, or with a refusal);
// what follows depends on the dialer's purpose: raft messages and status
// records, one ledger key request, one state snapshot, or nothing (probe).
const (
	frameHello       byte = 1
	frameRaft        byte = 2
	frameKeyRequest  byte = 3
	frameKeyResponse byte = 4
	frameStatus      byte = 5
	frameSnapshot    byte = 6
	frameRefused     byte = 7
)

// MaxFrame bounds a frame's payload.
const MaxFrame = 64 << 20

const (
	dialTimeout      = 3 * time.Second
	handshakeTimeout = 5 * time.Second
	writeTimeout     = 10 * time.Second
	maxBackoff       = 2 * time.Second
	queueSize        = 4096
	statusInterval   = 500 * time.Millisecond
	snapshotTimeout  = 30 * time.Minute
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

// Purpose says why a peer connects. It is part of the signed hello.
type Purpose uint8

// Connection purposes.
const (
	// PurposeRaft carries raft messages and status records.
	PurposeRaft Purpose = 1
	// PurposeLedgerKey asks for the network's ledger key.
	PurposeLedgerKey Purpose = 2
	// PurposeSnapshot sends a state snapshot.
	PurposeSnapshot Purpose = 3
	// PurposeProbe only attests.
	PurposeProbe Purpose = 4
	// PurposeAnswer is what a dialer checks of the listener it reached.
	PurposeAnswer Purpose = 5
)

// String names the purpose.
func (p Purpose) String() string {
	switch p {
	case PurposeRaft:
		return "raft"
	case PurposeLedgerKey:
		return "ledger key"
	case PurposeSnapshot:
		return "snapshot"
	case PurposeProbe:
		return "probe"
	case PurposeAnswer:
		return "answer"
	case PurposeForward:
		return "forward"
	default:
		return fmt.Sprintf("purpose %d", uint8(p))
	}
}

// ErrNotAuthorized is wrapped by refusals of a peer that passed attestation
// but is not (or no longer) allowed to act as the node it claims to be.
var ErrNotAuthorized = errors.New("peer not authorised")

// RefusalCode is the typed reason of a refusal, logged as the "code"
// attribute of refusals: an error in err's chain with a RefusalCode method
// names it (the node's authorizer: "not_member", "removed", ...); a peer
// outside the transport's peers is CodeNotPeer; otherwise "".
func RefusalCode(err error) string {
	var c interface{ RefusalCode() string }
	if errors.As(err, &c) {
		return c.RefusalCode()
	}
	return ""
}

// CodeNotPeer is the refusal code of a node that is not one of the
// transport's peers (not, or no longer, an active member).
const CodeNotPeer = "not_peer"

// notPeerError is the transport's refusal of a node outside its peers.
type notPeerError struct{ id uint64 }

func (e notPeerError) Error() string {
	return fmt.Sprintf("%s: node %d is not a member", ErrNotAuthorized, e.id)
}
func (e notPeerError) Unwrap() error       { return ErrNotAuthorized }
func (e notPeerError) RefusalCode() string { return CodeNotPeer }

// ErrRefused is wrapped by errors of a dial that the listener refused.
var ErrRefused = errors.New("refused by the peer")

// Authorizer decides whether node id holding key may connect for purpose.
// It returns nil, or an error wrapping ErrNotAuthorized that explains why.
type Authorizer func(id uint64, key ed25519.PublicKey, purpose Purpose) error

// PeerStatus is what a node tells its peers about itself, every
// statusInterval, on its raft connections.
type PeerStatus struct {
	Height     uint64
	Hash       [32]byte
	Applied    uint64
	Commit     uint64
	Term       uint64
	Leader     uint64
	CatchingUp bool
}

func (s PeerStatus) encode() []byte {
	e := wire.NewEncoder(80)
	e.U64(s.Height)
	e.Fixed(s.Hash[:])
	e.U64(s.Applied)
	e.U64(s.Commit)
	e.U64(s.Term)
	e.U64(s.Leader)
	e.Bool(s.CatchingUp)
	return e.Bytes()
}

func decodePeerStatus(b []byte) (PeerStatus, error) {
	d := wire.NewDecoder("peer status", b)
	var s PeerStatus
	s.Height = d.U64("height")
	d.Fixed("hash", s.Hash[:])
	s.Applied = d.U64("applied")
	s.Commit = d.U64("commit")
	s.Term = d.U64("term")
	s.Leader = d.U64("leader")
	s.CatchingUp = d.Bool("catching up")
	return s, d.Finish()
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
	// Boot is the peer's latest boot info (from a raft connection's hello);
	// BootSeen is when it was learned.
	Boot     BootInfo  `json:"-"`
	BootSeen time.Time `json:"-"`
	// Status is the peer's latest status record and StatusAt when it came.
	Status   PeerStatus `json:"-"`
	StatusAt time.Time  `json:"-"`
}

// Live reports whether the peer showed activity within window.
func (p PeerInfo) Live(window time.Duration) bool {
	return time.Since(p.LastSeen) < window || (p.Connected && time.Since(p.LastSent) < window)
}

// KeyProvider returns the ledger key to give a joining peer, or ok=false
// when this node has none yet.
type KeyProvider func() (key []byte, ok bool)

// SnapshotMeta is the raft position of a checkpoint.
type SnapshotMeta struct {
	Index     uint64
	Term      uint64
	ConfState *pb.ConfState
}

// SnapshotSource makes consistent checkpoints of the local state to send.
type SnapshotSource interface {
	// Checkpoint writes a consistent copy of the state into a new directory
	// and returns it with its raft position; release deletes it.
	Checkpoint(ctx context.Context) (dir string, meta SnapshotMeta, release func(), err error)
}

// SnapshotSink receives state snapshots from peers.
type SnapshotSink interface {
	// ReceiveSnapshot reads the state stream of the snapshot described by
	// m from r, verifies and stages it. Only if the result is
	// statetransfer.ResultInstalled does the transport hand m to raft.
	ReceiveSnapshot(ctx context.Context, from uint64, m *pb.Message, r io.Reader) statetransfer.Result
}

// TransportConfig configures a Transport.
type TransportConfig struct {
	ID       uint64
	Listen   string            // address to listen on for peers
	Peers    map[uint64]string // other members' peer addresses
	Creds    *attest.Credentials
	Verifier *attest.Verifier // peering policy: the node's own exact MRENCLAVE
	// NodeKey is this node's identity key: it signs every hello.
	NodeKey ed25519.PrivateKey
	// Authorize checks every hello; nil accepts any member id in Peers.
	Authorize Authorizer
	Keys      KeyProvider
	// Status returns this node's status record (nil: none is sent).
	Status func() PeerStatus
	// Snapshots send and receive state snapshots; nil refuses them.
	Source SnapshotSource
	Sink   SnapshotSink
	// Forwarded answers a request another member forwarded with Forward
	// (a payment for the leader's mempool); nil refuses forwarding.
	Forwarded func(ctx context.Context, from uint64, req []byte) []byte
	// Faults, if set, is called at named points (crash tests):
	// "statetransfer.sending" once half of a snapshot is sent.
	Faults func(point string)
	Logger *slog.Logger
}

// Transport carries raft messages between nodes over mutual attested TLS.
// Only peers passing the verifier's policy can connect or be connected
// to, and every connection starts with signed hellos that the Authorizer
// checks against the chain's membership and registered node keys; a
// refused peer is logged with the reason and never reaches raft.
type Transport struct {
	cfg TransportConfig
	log *slog.Logger

	ln      net.Listener
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	started bool

	mu      sync.Mutex
	peers   map[uint64]*peer
	inbound map[net.Conn]uint64 // connection → peer id (0 before its hello)
	authed  map[net.Conn]authed // connection → what its hello was authorised for
	boot    BootInfo
	raftUp  bool
	hooks   RaftHooks

	// fwdMu guards fwd, the forwarding connections this node dialed.
	fwdMu sync.Mutex
	fwd   map[uint64]*fwdConn
}

// RaftHooks connect the transport to raft.
type RaftHooks struct {
	// Deliver receives every raft message from a raft connection.
	Deliver func(*pb.Message)
	// DeliverSnapshot receives a snapshot message whose state is staged.
	DeliverSnapshot func(*pb.Message)
	// Unreachable reports a peer that could not be reached.
	Unreachable func(id uint64)
	// SnapshotDone reports the end of a snapshot sent to a peer.
	SnapshotDone func(id uint64, ok bool)
}

type peer struct {
	info     PeerInfo
	queue    chan *pb.Message
	cancel   context.CancelFunc
	sendingS bool // a snapshot is being sent
	// out is the raft connection this node dialed and what the peer's
	// answer was authorised as.
	out     net.Conn
	outAuth authed
}

// authed is a connection's authorisation: who, with which key, for what.
type authed struct {
	id      uint64
	key     ed25519.PublicKey
	purpose Purpose
}

// NewTransport validates cfg. Start begins listening; StartRaft begins
// dialing peers for raft.
func NewTransport(cfg TransportConfig) (*Transport, error) {
	if cfg.Creds == nil || cfg.Verifier == nil {
		return nil, errors.New("transport: credentials and verifier are required")
	}
	if _, err := attest.ForPeering(cfg.Verifier.Policy); err != nil {
		return nil, fmt.Errorf("transport: %w", err)
	}
	if len(cfg.NodeKey) != ed25519.PrivateKeySize {
		return nil, errors.New("transport: a node identity key is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	t := &Transport{
		cfg:     cfg,
		log:     cfg.Logger.With("component", "transport"),
		peers:   make(map[uint64]*peer),
		inbound: make(map[net.Conn]uint64),
		authed:  make(map[net.Conn]authed),
	}
	for id, addr := range cfg.Peers {
		if id != cfg.ID {
			t.peers[id] = &peer{info: PeerInfo{ID: id, Addr: addr}, queue: make(chan *pb.Message, queueSize)}
		}
	}
	return t, nil
}

// Start listens for peers. Until StartRaft, raft connections are refused
// (there is no raft to deliver to), but ledger key requests and probes
// are served.
func (t *Transport) Start(ctx context.Context) error {
	ln, err := net.Listen("tcp", t.cfg.Listen)
	if err != nil {
		return fmt.Errorf("transport: listen %s: %w", t.cfg.Listen, err)
	}
	t.mu.Lock()
	t.ln = ln
	t.ctx, t.cancel = context.WithCancel(ctx)
	t.started = true
	t.mu.Unlock()
	t.wg.Add(1)
	go t.acceptLoop(t.ctx)
	return nil
}

// StartRaft wires raft in through hooks, with this node's boot info (sent
// in raft hellos), and starts one sender per peer.
func (t *Transport) StartRaft(boot BootInfo, hooks RaftHooks) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.boot, t.hooks, t.raftUp = boot, hooks, true
	for id, p := range t.peers {
		t.startSender(id, p)
	}
}

// startSender starts a peer's send loop; t.mu must be held.
func (t *Transport) startSender(id uint64, p *peer) {
	if !t.raftUp || p.cancel != nil {
		return
	}
	ctx, cancel := context.WithCancel(t.ctx)
	p.cancel = cancel
	t.wg.Add(1)
	go t.sendLoop(ctx, id, p)
}

// SetPeers replaces the set of other members: new ones are dialed, removed
// ones are disconnected and refused from now on.
func (t *Transport) SetPeers(addrs map[uint64]string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for id, p := range t.peers {
		if _, ok := addrs[id]; ok {
			continue
		}
		if p.cancel != nil {
			p.cancel()
		}
		delete(t.peers, id)
		for c, pid := range t.inbound {
			if pid == id {
				c.Close()
			}
		}
		t.log.Info("peer removed", "id", id)
	}
	for id, addr := range addrs {
		if id == t.cfg.ID {
			continue
		}
		if p, ok := t.peers[id]; ok {
			p.info.Addr = addr
			continue
		}
		p := &peer{info: PeerInfo{ID: id, Addr: addr}, queue: make(chan *pb.Message, queueSize)}
		t.peers[id] = p
		if t.started {
			t.startSender(id, p)
		}
		t.log.Info("peer added", "id", id, "addr", addr)
	}
}

// Reauthorize checks every established connection against the
// Authorizer again and closes those it now refuses: a peer whose key was
// replaced on chain, or that is no longer a member, loses its connections
// at once, not only at its next hello.
func (t *Transport) Reauthorize() {
	type check struct {
		c net.Conn
		a authed
	}
	t.mu.Lock()
	var checks []check
	for c, a := range t.authed {
		checks = append(checks, check{c, a})
	}
	for _, p := range t.peers {
		if p.out != nil {
			checks = append(checks, check{p.out, p.outAuth})
		}
	}
	t.mu.Unlock()
	for _, ch := range checks {
		if err := t.authorize(ch.a.id, ch.a.key, ch.a.purpose); err != nil {
			t.log.Warn("dropping a peer connection no longer authorised", "id", ch.a.id, "purpose", ch.a.purpose.String(), "code", RefusalCode(err), "err", err)
			ch.c.Close()
		}
	}
}

// Addr returns the listening address.
func (t *Transport) Addr() net.Addr { return t.ln.Addr() }

// Stop closes the listener and every connection and waits for goroutines.
func (t *Transport) Stop() {
	t.mu.Lock()
	if t.cancel != nil {
		t.cancel()
	}
	if t.ln != nil {
		t.ln.Close()
	}
	for c := range t.inbound {
		c.Close()
	}
	t.mu.Unlock()
	t.closeForwards()
	t.wg.Wait()
}

// Send queues messages for their peers. A full queue drops the message
// and reports the peer unreachable: raft retransmits. A snapshot message
// starts a state transfer to its peer.
func (t *Transport) Send(msgs []*pb.Message) {
	for _, m := range msgs {
		t.mu.Lock()
		p, ok := t.peers[m.GetTo()]
		unreach := t.hooks.Unreachable
		t.mu.Unlock()
		if !ok {
			continue
		}
		if m.GetType() == pb.MessageType_MsgSnap {
			t.sendSnapshot(m)
			continue
		}
		select {
		case p.queue <- m:
		default:
			if unreach != nil {
				unreach(m.GetTo())
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
		out = append(out, p.info)
	}
	return out
}

// Peer returns what is known about peer id.
func (t *Transport) Peer(id uint64) (PeerInfo, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p, ok := t.peers[id]
	if !ok {
		return PeerInfo{}, false
	}
	return p.info, true
}

func (t *Transport) updatePeer(id uint64, f func(p *PeerInfo)) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if p, ok := t.peers[id]; ok {
		f(&p.info)
	}
}

func (t *Transport) isPeer(id uint64) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	_, ok := t.peers[id]
	return ok
}

func (t *Transport) authorize(id uint64, key ed25519.PublicKey, purpose Purpose) error {
	if id == t.cfg.ID {
		return fmt.Errorf("%w: node %d is this node", ErrNotAuthorized, id)
	}
	if purpose != PurposeAnswer && purpose != PurposeLedgerKey && !t.isPeer(id) {
		return notPeerError{id}
	}
	if t.cfg.Authorize == nil {
		return nil
	}
	return t.cfg.Authorize(id, key, purpose)
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
		t.inbound[c] = 0
		t.mu.Unlock()
		t.wg.Add(1)
		go func() {
			defer t.wg.Done()
			defer func() {
				t.mu.Lock()
				delete(t.inbound, c)
				delete(t.authed, c)
				t.mu.Unlock()
				c.Close()
			}()
			t.serveConn(ctx, c)
		}()
	}
}

// ourHello signs this node's hello for a connection.
func (t *Transport) ourHello(cs tls.ConnectionState, role byte, purpose Purpose) ([]byte, error) {
	t.mu.Lock()
	boot := t.boot
	t.mu.Unlock()
	return signHello(cs, role, purpose, t.cfg.ID, t.cfg.NodeKey, boot)
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
		var alert tls.AlertError
		if errors.As(err, &alert) {
			t.log.Warn("refused peer connection", "remote", raw.RemoteAddr().String(), "reason", "the peer rejected our attestation",
				"our_mrenclave", t.cfg.Creds.Identity.UniqueID.String(), "err", err)
		} else {
			t.log.Warn("refused peer connection", "remote", raw.RemoteAddr().String(), "err", err)
		}
		return
	}
	cs := tc.ConnectionState()
	peerID, err := t.cfg.Verifier.PeerFromState(cs)
	if err != nil {
		t.log.Warn("refused peer connection", "remote", raw.RemoteAddr().String(), "err", err)
		return
	}
	_ = tc.SetDeadline(time.Now().Add(handshakeTimeout))
	r := bufio.NewReaderSize(tc, 64<<10)
	typ, payload, err := readFrame(r)
	if err != nil || typ != frameHello {
		t.log.Warn("peer connection without hello", "remote", raw.RemoteAddr().String(), "err", err)
		return
	}
	h, err := verifyHello(cs, roleDialer, payload)
	if err != nil {
		t.log.Warn("refused peer connection", "remote", raw.RemoteAddr().String(), "err", err)
		return
	}
	from := h.NodeID
	if err := t.authorize(from, h.Key, h.Purpose); err != nil {
		t.log.Warn("refused peer", "id", from, "purpose", h.Purpose.String(), "remote", raw.RemoteAddr().String(), "code", RefusalCode(err), "err", err)
		_ = writeFrame(tc, frameRefused, []byte(err.Error()))
		return
	}
	t.mu.Lock()
	raftUp := t.raftUp
	t.mu.Unlock()
	if (h.Purpose == PurposeRaft || h.Purpose == PurposeSnapshot || h.Purpose == PurposeForward) && !raftUp {
		_ = writeFrame(tc, frameRefused, []byte("consensus is not running yet"))
		return
	}
	ours, err := t.ourHello(cs, roleListener, PurposeAnswer)
	if err != nil {
		t.log.Error("sign hello", "err", err)
		return
	}
	if err := writeFrame(tc, frameHello, ours); err != nil {
		return
	}
	_ = tc.SetDeadline(time.Time{})
	t.mu.Lock()
	if _, ok := t.inbound[raw]; ok {
		t.inbound[raw] = from
		t.authed[raw] = authed{id: from, key: h.Key, purpose: h.Purpose}
	}
	t.mu.Unlock()
	t.updatePeer(from, func(p *PeerInfo) {
		p.Identity, p.LastSeen = peerID.Identity, time.Now()
		if h.Purpose == PurposeRaft {
			p.Boot, p.BootSeen = h.Boot, time.Now()
		}
	})
	switch h.Purpose {
	case PurposeRaft:
		t.serveRaft(ctx, from, r)
	case PurposeLedgerKey:
		t.serveKey(tc, r, from, peerID)
	case PurposeSnapshot:
		t.serveSnapshot(ctx, tc, r, from)
	case PurposeForward:
		t.serveForward(ctx, tc, r, from)
	case PurposeProbe:
	default:
		t.log.Warn("unknown connection purpose", "id", from, "purpose", uint8(h.Purpose))
	}
}

func (t *Transport) serveRaft(ctx context.Context, from uint64, r io.Reader) {
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
			if m.GetType() == pb.MessageType_MsgSnap {
				// A snapshot reaches raft only with its state, through a
				// snapshot connection: never metadata alone.
				t.log.Warn("dropped a snapshot message without state", "id", from)
				continue
			}
			t.updatePeer(from, func(p *PeerInfo) { p.LastSeen = time.Now() })
			t.mu.Lock()
			deliver := t.hooks.Deliver
			t.mu.Unlock()
			if deliver != nil {
				deliver(m)
			}
		case frameStatus:
			st, err := decodePeerStatus(payload)
			if err != nil {
				t.log.Warn("malformed peer status", "id", from, "err", err)
				return
			}
			t.updatePeer(from, func(p *PeerInfo) { p.Status, p.StatusAt, p.LastSeen = st, time.Now(), time.Now() })
		default:
			t.log.Warn("unexpected frame on a raft connection", "id", from, "type", typ)
			return
		}
	}
}

func (t *Transport) serveKey(tc *tls.Conn, r io.Reader, from uint64, peer *attest.Peer) {
	_ = tc.SetDeadline(time.Now().Add(writeTimeout))
	typ, _, err := readFrame(r)
	if err != nil || typ != frameKeyRequest {
		return
	}
	resp := []byte{0}
	if t.cfg.Keys != nil {
		if key, ok := t.cfg.Keys(); ok {
			resp = append([]byte{1}, key...)
		}
	}
	if err := writeFrame(tc, frameKeyResponse, resp); err != nil {
		t.log.Warn("send ledger key", "id", from, "err", err)
	} else if resp[0] == 1 {
		t.log.Info("gave the ledger key to an attested member", "id", from, "mrenclave", peer.Identity.UniqueID.String())
	}
}

// dial opens an attested connection to peer id for purpose and exchanges
// hellos. It checks that the listener is the node addressed.
func (t *Transport) dial(ctx context.Context, id uint64, addr string, purpose Purpose) (*tls.Conn, *bufio.Reader, *attest.Peer, *hello, error) {
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: dialTimeout}, Config: attest.ClientConfig(t.cfg.Creds, t.cfg.Verifier)}
	dctx, cancel := context.WithTimeout(ctx, handshakeTimeout)
	defer cancel()
	c, err := d.DialContext(dctx, "tcp", addr)
	if err != nil {
		return nil, nil, nil, nil, fmt.Errorf("dial peer %d at %s: %w", id, addr, err)
	}
	tc := c.(*tls.Conn)
	fail := func(err error) (*tls.Conn, *bufio.Reader, *attest.Peer, *hello, error) {
		tc.Close()
		return nil, nil, nil, nil, err
	}
	cs := tc.ConnectionState()
	peer, err := t.cfg.Verifier.PeerFromState(cs)
	if err != nil {
		return fail(fmt.Errorf("peer %d at %s: %w", id, addr, err))
	}
	ours, err := t.ourHello(cs, roleDialer, purpose)
	if err != nil {
		return fail(err)
	}
	_ = tc.SetDeadline(time.Now().Add(handshakeTimeout))
	if err := writeFrame(tc, frameHello, ours); err != nil {
		return fail(fmt.Errorf("hello to peer %d: %w", id, err))
	}
	r := bufio.NewReaderSize(tc, 64<<10)
	typ, payload, err := readFrame(r)
	if err != nil {
		return fail(fmt.Errorf("hello from peer %d: %w", id, err))
	}
	if typ == frameRefused {
		return fail(fmt.Errorf("peer %d at %s: %w: %s", id, addr, ErrRefused, payload))
	}
	if typ != frameHello {
		return fail(fmt.Errorf("hello from peer %d: unexpected frame %d", id, typ))
	}
	h, err := verifyHello(cs, roleListener, payload)
	if err != nil {
		return fail(fmt.Errorf("peer %d at %s: %w", id, addr, err))
	}
	if h.NodeID != id {
		return fail(fmt.Errorf("%w: %s answered as node %d, not node %d", ErrNotAuthorized, addr, h.NodeID, id))
	}
	if err := t.authorize(id, h.Key, PurposeAnswer); err != nil {
		return fail(fmt.Errorf("peer %d at %s: %w", id, addr, err))
	}
	_ = tc.SetDeadline(time.Time{})
	return tc, r, peer, h, nil
}

func (t *Transport) peerAddr(id uint64) (string, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p, ok := t.peers[id]
	if !ok {
		return "", false
	}
	return p.info.Addr, true
}

func (t *Transport) sendLoop(ctx context.Context, id uint64, p *peer) {
	defer t.wg.Done()
	backoff := 50 * time.Millisecond
	var conn *tls.Conn
	var w *bufio.Writer
	defer func() {
		if conn != nil {
			conn.Close()
		}
	}()
	status := time.NewTicker(statusInterval)
	defer status.Stop()
	// The first connection is made at once, not at the first message: a
	// network starting all at once (a flag day) can then elect a leader
	// as soon as a quorum is up (Config.CampaignFirst).
	connectNow := true
	for {
		var m *pb.Message
		if connectNow {
			connectNow = false
		} else {
			select {
			case <-ctx.Done():
				return
			case m = <-p.queue:
			case <-status.C:
				if t.cfg.Status == nil {
					continue
				}
			}
		}
		if conn == nil {
			addr, ok := t.peerAddr(id)
			if !ok {
				return
			}
			c, _, peer, h, err := t.dial(ctx, id, addr, PurposeRaft)
			if err != nil {
				t.updatePeer(id, func(p *PeerInfo) { p.Connected, p.LastError = false, err.Error() })
				switch {
				case errors.Is(err, attest.ErrMeasurementNotAllowed) || errors.Is(err, attest.ErrDebugEnclave):
					t.log.Warn("refused to peer", "id", id, "err", err)
				case errors.Is(err, ErrNotAuthorized) || errors.Is(err, ErrRefused):
					t.log.Warn("peer connection refused", "id", id, "err", err)
				default:
					t.log.Debug("peer unreachable", "id", id, "err", err)
				}
				t.mu.Lock()
				unreach := t.hooks.Unreachable
				t.mu.Unlock()
				if unreach != nil {
					unreach(id)
				}
				drain(p.queue)
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
			t.mu.Lock()
			p.out, p.outAuth = c, authed{id: id, key: h.Key, purpose: PurposeAnswer}
			t.mu.Unlock()
			t.updatePeer(id, func(p *PeerInfo) {
				p.Connected, p.LastError, p.Identity, p.LastSeen = true, "", peer.Identity, time.Now()
				p.Boot, p.BootSeen = h.Boot, time.Now()
			})
			t.log.Info("connected to peer", "id", id, "mrenclave", peer.Identity.UniqueID.Short())
		}
		var err error
		switch {
		case m != nil:
			err = t.writeBatch(conn, w, m, p.queue)
		case t.cfg.Status != nil:
			err = t.writeStatus(conn, w)
		default:
			continue // connected at start, nothing to say yet
		}
		if err == nil {
			t.updatePeer(id, func(p *PeerInfo) { p.LastSent = time.Now() })
			continue
		}
		t.log.Debug("send to peer failed", "id", id, "err", err)
		t.updatePeer(id, func(p *PeerInfo) { p.Connected, p.LastError = false, err.Error() })
		conn.Close()
		conn, w = nil, nil
		t.mu.Lock()
		p.out = nil
		unreach := t.hooks.Unreachable
		t.mu.Unlock()
		if unreach != nil {
			unreach(id)
		}
	}
}

func (t *Transport) writeStatus(conn *tls.Conn, w *bufio.Writer) error {
	_ = conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	if err := writeFrame(w, frameStatus, t.cfg.Status().encode()); err != nil {
		return err
	}
	return w.Flush()
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
// attested TLS. ok is false when the peer has no key yet; a peer that
// refuses this node (not a member, or another key registered for its id)
// returns an error wrapping ErrRefused that carries the peer's reason.
func (t *Transport) FetchLedgerKey(ctx context.Context, id uint64, addr string) (key []byte, ok bool, err error) {
	c, r, _, _, err := t.dial(ctx, id, addr, PurposeLedgerKey)
	if err != nil {
		return nil, false, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(writeTimeout))
	if err := writeFrame(c, frameKeyRequest, nil); err != nil {
		return nil, false, fmt.Errorf("key request to peer %d: %w", id, err)
	}
	typ, payload, err := readFrame(r)
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
	addr, ok := t.peerAddr(id)
	if !ok {
		return tee.Identity{}, fmt.Errorf("probe: %d is not a peer", id)
	}
	c, _, peer, _, err := t.dial(ctx, id, addr, PurposeProbe)
	if err != nil {
		return tee.Identity{}, err
	}
	c.Close()
	t.updatePeer(id, func(p *PeerInfo) { p.Identity, p.LastSeen = peer.Identity, time.Now() })
	return peer.Identity, nil
}

// sendSnapshot starts sending a state snapshot to m's peer, unless one is
// already on its way. raft learns the outcome through snapshotDone.
func (t *Transport) sendSnapshot(m *pb.Message) {
	id := m.GetTo()
	t.mu.Lock()
	p, ok := t.peers[id]
	if !ok || p.sendingS || t.cfg.Source == nil || !t.raftUp {
		done := t.hooks.SnapshotDone
		t.mu.Unlock()
		if ok && !p.sendingS && done != nil {
			done(id, false)
		}
		return
	}
	p.sendingS = true
	ctx := t.ctx
	t.wg.Add(1)
	t.mu.Unlock()
	go func() {
		defer t.wg.Done()
		ok := t.streamSnapshot(ctx, m)
		t.mu.Lock()
		if p, found := t.peers[id]; found {
			p.sendingS = false
		}
		done := t.hooks.SnapshotDone
		t.mu.Unlock()
		if done != nil {
			done(id, ok)
		}
	}()
}

func (t *Transport) streamSnapshot(ctx context.Context, m *pb.Message) bool {
	id := m.GetTo()
	ctx, cancel := context.WithTimeout(ctx, snapshotTimeout)
	defer cancel()
	start := time.Now()
	dir, meta, release, err := t.cfg.Source.Checkpoint(ctx)
	if err != nil {
		t.log.Error("state transfer: checkpoint", "to", id, "err", err)
		return false
	}
	defer release()
	out := proto.Clone(m).(*pb.Message)
	out.Snapshot = &pb.Snapshot{Metadata: &pb.SnapshotMetadata{
		Index: new(meta.Index), Term: new(meta.Term), ConfState: meta.ConfState,
	}}
	addr, ok := t.peerAddr(id)
	if !ok {
		return false
	}
	c, r, _, _, err := t.dial(ctx, id, addr, PurposeSnapshot)
	if err != nil {
		t.log.Warn("state transfer: dial", "to", id, "err", err)
		return false
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	raw, err := proto.Marshal(out)
	if err != nil {
		t.log.Error("state transfer: encode", "err", err)
		return false
	}
	if err := writeFrame(c, frameSnapshot, raw); err != nil {
		t.log.Warn("state transfer: send header", "to", id, "err", err)
		return false
	}
	t.log.Info("state transfer: sending", "to", id, "index", meta.Index, "term", meta.Term)
	var lastLog time.Time
	halfway := false
	st, err := statetransfer.SendDir(ctx, c, dir, func(done, total int64) {
		if !halfway && done*2 >= total && t.cfg.Faults != nil {
			halfway = true
			t.cfg.Faults("statetransfer.sending")
		}
		if time.Since(lastLog) > 2*time.Second {
			lastLog = time.Now()
			t.log.Info("state transfer: progress", "to", id, "sent_bytes", done, "total_bytes", total)
		}
	})
	if err != nil {
		t.log.Warn("state transfer: send", "to", id, "err", err)
		return false
	}
	_ = c.SetReadDeadline(time.Now().Add(snapshotTimeout))
	res, err := statetransfer.ReadResult(r)
	if err != nil {
		t.log.Warn("state transfer: result", "to", id, "err", err)
		return false
	}
	switch res.Code {
	case statetransfer.ResultInstalled:
		t.log.Info("state transfer: done", "to", id, "index", meta.Index, "files", st.Files, "bytes", st.Bytes,
			"duration", time.Since(start).String())
		return true
	case statetransfer.ResultNotNeeded:
		t.log.Info("state transfer: not needed", "to", id, "reason", res.Message)
		return true
	default:
		t.log.Error("state transfer: refused by the receiver", "to", id, "reason", res.Message)
		return false
	}
}

func (t *Transport) serveSnapshot(ctx context.Context, tc *tls.Conn, r *bufio.Reader, from uint64) {
	_ = tc.SetDeadline(time.Now().Add(snapshotTimeout))
	typ, payload, err := readFrame(r)
	if err != nil || typ != frameSnapshot {
		t.log.Warn("state transfer without header", "from", from, "err", err)
		return
	}
	m := &pb.Message{}
	if err := proto.Unmarshal(payload, m); err != nil || m.GetType() != pb.MessageType_MsgSnap ||
		m.GetFrom() != from || m.GetTo() != t.cfg.ID || m.GetSnapshot().GetMetadata() == nil {
		t.log.Warn("malformed state transfer header", "from", from, "err", err)
		return
	}
	if t.cfg.Sink == nil {
		_ = statetransfer.WriteResult(tc, statetransfer.Result{Code: statetransfer.ResultRefused, Message: "this node accepts no snapshots"})
		return
	}
	stop := context.AfterFunc(ctx, func() { tc.Close() })
	defer stop()
	res := t.cfg.Sink.ReceiveSnapshot(ctx, from, m, r)
	if err := statetransfer.WriteResult(tc, res); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
		t.log.Warn("state transfer: answer", "from", from, "err", err)
	}
	if res.Code != statetransfer.ResultInstalled {
		return
	}
	t.mu.Lock()
	deliver := t.hooks.DeliverSnapshot
	t.mu.Unlock()
	if deliver != nil {
		deliver(m)
	}
}
