package handover

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/teeup/teeup/internal/wire"
	"github.com/teeup/teeup/release"
)

// result is what one side of an exchange returned.
type result struct {
	secret []byte
	err    error
}

// runPipe runs Serve(p) and Fetch(r) on the two ends of a net.Pipe.
func runPipe(t *testing.T, p *Provider, r *Requester) (secret []byte, serveErr, fetchErr error) {
	t.Helper()
	return runConns(t, p, r, func() (net.Conn, net.Conn) { return net.Pipe() })
}

// runConns runs Serve(p) and Fetch(r) on a connected pair from dial; the
// first connection is the provider's.
func runConns(t *testing.T, p *Provider, r *Requester, dial func() (net.Conn, net.Conn)) ([]byte, error, error) {
	t.Helper()
	pc, rc := dial()
	defer pc.Close()
	serveDone := make(chan error, 1)
	go func() { serveDone <- Serve(context.Background(), pc, p) }()
	secret, fetchErr := Fetch(context.Background(), rc, r)
	rc.Close() // unblocks Serve if the requester stopped early
	return secret, <-serveDone, fetchErr
}

func TestServeFetchBothLegs(t *testing.T) {
	f := newFixture(t)
	agentGot, serveErr, fetchErr := runPipe(t, f.oldNodeProvider(t), f.agentRequester(t))
	if serveErr != nil || fetchErr != nil {
		t.Fatalf("old node → agent: serve %v, fetch %v", serveErr, fetchErr)
	}
	if !bytes.Equal(agentGot, f.secret) {
		t.Fatalf("agent got %q", agentGot)
	}
	nodeGot, serveErr, fetchErr := runPipe(t, f.agentProvider(t, agentGot), f.newNodeRequester(t))
	if serveErr != nil || fetchErr != nil {
		t.Fatalf("agent → new node: serve %v, fetch %v", serveErr, fetchErr)
	}
	if !bytes.Equal(nodeGot, f.secret) {
		t.Fatalf("new node got %q", nodeGot)
	}
}

func TestServeFetchUnixSocket(t *testing.T) {
	f := newFixture(t)
	sock := filepath.Join(t.TempDir(), "agent.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	dial := func() (net.Conn, net.Conn) {
		accepted := make(chan net.Conn, 1)
		go func() {
			c, err := ln.Accept()
			if err != nil {
				accepted <- nil
				return
			}
			accepted <- c
		}()
		rc, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		pc := <-accepted
		if pc == nil {
			t.Fatal("accept failed")
		}
		return pc, rc
	}
	agentGot, serveErr, fetchErr := runConns(t, f.oldNodeProvider(t), f.agentRequester(t), dial)
	if serveErr != nil || fetchErr != nil || !bytes.Equal(agentGot, f.secret) {
		t.Fatalf("old node → agent: %q, serve %v, fetch %v", agentGot, serveErr, fetchErr)
	}
	nodeGot, serveErr, fetchErr := runConns(t, f.agentProvider(t, agentGot), f.newNodeRequester(t), dial)
	if serveErr != nil || fetchErr != nil || !bytes.Equal(nodeGot, f.secret) {
		t.Fatalf("agent → new node: %q, serve %v, fetch %v", nodeGot, serveErr, fetchErr)
	}
}

// TestTransportRefusals checks that each side's refusal reaches the other
// as a clear error, and that the provider then serves a correct requester.
func TestTransportRefusals(t *testing.T) {
	tests := []struct {
		name      string
		provider  func(t *testing.T, f *fixture) *Provider
		requester func(t *testing.T, f *fixture) *Requester
		wantServe string // "" means Serve succeeds
		wantFetch string
		// serveIs and fetchIs, if set, are sentinels the errors must match.
		serveIs, fetchIs error
		refusedBy        string // who sent a Refusal: "provider", "requester" or ""
		// thenCorrect: the same provider then serves a correct agent.
		thenCorrect bool
	}{
		{
			name:        "old node refuses the new node",
			provider:    func(t *testing.T, f *fixture) *Provider { return f.oldNodeProvider(t) },
			requester:   func(t *testing.T, f *fixture) *Requester { return f.newNodeRequester(t) },
			wantServe:   "not accepted",
			serveIs:     ErrWrongRole,
			wantFetch:   `provider refused: deliver: requester node (`,
			refusedBy:   "provider",
			thenCorrect: true,
		},
		{
			name:     "report made on another platform",
			provider: func(t *testing.T, f *fixture) *Provider { return f.oldNodeProvider(t) },
			requester: func(t *testing.T, f *fixture) *Requester {
				return f.agentRequester(t, func(c *RequesterConfig) { c.Enclave = f.agentB })
			},
			wantServe:   "MAC does not verify",
			wantFetch:   "provider refused: deliver: requester report: verify local report",
			refusedBy:   "provider",
			thenCorrect: true,
		},
		{
			name: "too many outstanding challenges",
			provider: func(t *testing.T, f *fixture) *Provider {
				p := f.oldNodeProvider(t, func(c *ProviderConfig) { c.MaxOutstanding = 1 })
				if _, err := p.Challenge(Request{RequesterRole: release.RoleAgent}); err != nil {
					t.Fatal(err)
				}
				return p
			},
			requester: func(t *testing.T, f *fixture) *Requester { return f.agentRequester(t) },
			wantServe: "too many outstanding challenges",
			wantFetch: "provider refused: challenge: too many outstanding challenges (1)",
			refusedBy: "provider",
		},
		{
			name:     "requester on another chain refuses the challenge",
			provider: func(t *testing.T, f *fixture) *Provider { return f.oldNodeProvider(t) },
			requester: func(t *testing.T, f *fixture) *Requester {
				return f.agentRequester(t, func(c *RequesterConfig) {
					c.ChainID = "other-chain"
					c.ID = signedID("other-chain", release.RoleAgent, f.ag.UniqueID, f.kmgKeys...)
				})
			},
			wantServe:   `requester refused: answer challenge: it is for chain "teeup-test-1", this requester is on "other-chain"`,
			wantFetch:   `answer challenge: it is for chain "teeup-test-1"`,
			refusedBy:   "requester",
			thenCorrect: true,
		},
		{
			name: "agent refuses another node than the supervised one",
			provider: func(t *testing.T, f *fixture) *Provider {
				return f.oldNodeProvider(t, func(c *ProviderConfig) { c.Enclave = f.otherNode })
			},
			requester: func(t *testing.T, f *fixture) *Requester { return f.agentRequester(t) },
			wantFetch: "not accepted",
			fetchIs:   ErrWrongEnclave,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			p := tc.provider(t, f)
			secret, serveErr, fetchErr := runPipe(t, p, tc.requester(t, f))
			if secret != nil {
				t.Fatalf("secret %q returned with the error", secret)
			}
			wantErr(t, fetchErr, tc.wantFetch, tc.fetchIs)
			if tc.wantServe == "" {
				if serveErr != nil {
					t.Fatalf("serve: %v", serveErr)
				}
			} else {
				wantErr(t, serveErr, tc.wantServe, tc.serveIs)
			}
			var ref *RefusalError
			switch tc.refusedBy {
			case "provider":
				if !errors.As(fetchErr, &ref) || ref.By != "provider" {
					t.Fatalf("fetch error %v is not the provider's refusal", fetchErr)
				}
			case "requester":
				if !errors.As(serveErr, &ref) || ref.By != "requester" {
					t.Fatalf("serve error %v is not the requester's refusal", serveErr)
				}
			}
			if !tc.thenCorrect {
				return
			}
			got, serveErr, fetchErr := runPipe(t, p, f.agentRequester(t))
			if serveErr != nil || fetchErr != nil || !bytes.Equal(got, f.secret) {
				t.Fatalf("correct requester afterwards: %q, serve %v, fetch %v", got, serveErr, fetchErr)
			}
		})
	}
}

// proxy relays one exchange between the requester's and the provider's
// connections, letting alter change each frame's payload on the way.
func proxy(reqSide, provSide net.Conn, alter func(t msgType, payload []byte) []byte) {
	defer reqSide.Close()
	defer provSide.Close()
	relay := func(from, to net.Conn) bool {
		t, payload, err := readFrame(from)
		if err != nil {
			return false
		}
		return writeFrame(to, t, alter(t, payload)) == nil
	}
	// Request, Challenge, Answer, Delivery (or a Refusal instead of either
	// of the last two, after which the next read fails and the relay ends).
	for range 2 {
		if !relay(reqSide, provSide) || !relay(provSide, reqSide) {
			return
		}
	}
}

// reencode decodes payload as a T, lets change alter it and re-encodes it.
func reencode[T message, PT interface {
	*T
	decodable
}](t *testing.T, payload []byte, change func(*T)) []byte {
	var m T
	if err := PT(&m).UnmarshalBinary(payload); err != nil {
		t.Errorf("proxy: %v", err)
		return payload
	}
	change(&m)
	b, err := m.MarshalBinary()
	if err != nil {
		t.Errorf("proxy: %v", err)
		return payload
	}
	return b
}

// TestTransportTamperedInTransit puts the untrusted host between the two
// enclaves: whatever it alters, the secret does not reach the wrong party
// and the exchange fails with a clear error.
func TestTransportTamperedInTransit(t *testing.T) {
	tests := []struct {
		name      string
		agentLeg  bool // agent → new node instead of old node → agent
		alter     func(t *testing.T, f *fixture, typ msgType, payload []byte) []byte
		wantServe string
		wantFetch string
		fetchIs   error // if set, the sentinel the fetch error must match
	}{
		{
			name: "ciphertext byte flipped",
			alter: func(t *testing.T, _ *fixture, typ msgType, payload []byte) []byte {
				if typ != typeDelivery {
					return payload
				}
				return reencode(t, payload, func(d *Delivery) { d.Ciphertext = flip(d.Ciphertext, 40) })
			},
			wantFetch: "does not bind this nonce and ciphertext",
		},
		{
			name: "host substitutes its own one-time key",
			alter: func(t *testing.T, _ *fixture, typ msgType, payload []byte) []byte {
				if typ != typeAnswer {
					return payload
				}
				return reencode(t, payload, func(a *Answer) { a.OneTimeKey = x25519Public(t) })
			},
			wantServe: "report data does not bind",
			wantFetch: "provider refused: deliver: requester report data does not bind",
		},
		{
			name: "host rewrites the chain id of the challenge",
			alter: func(t *testing.T, _ *fixture, typ msgType, payload []byte) []byte {
				if typ != typeChallenge {
					return payload
				}
				return reencode(t, payload, func(c *Challenge) { c.ChainID = "other-chain" })
			},
			wantServe: "requester refused: answer challenge",
			wantFetch: `it is for chain "other-chain"`,
		},
		{
			name:     "host strips the agent's enclave id",
			agentLeg: true,
			alter: func(t *testing.T, _ *fixture, typ msgType, payload []byte) []byte {
				if typ != typeChallenge {
					return payload
				}
				return reencode(t, payload, func(c *Challenge) { c.ProviderID = nil })
			},
			wantFetch: "not accepted",
			fetchIs:   ErrNoEnclaveID,
		},
		{
			name:     "host replaces the agent's enclave id with another valid one",
			agentLeg: true,
			alter: func(t *testing.T, f *fixture, typ msgType, payload []byte) []byte {
				if typ != typeChallenge {
					return payload
				}
				id := signedID(testChain, release.RoleAgent, f.n3.UniqueID, f.kmgKeys...)
				return reencode(t, payload, func(c *Challenge) { c.ProviderID = &id })
			},
			wantFetch: "provider enclave id: verify enclave id: it is for MRENCLAVE " + measure("teeup-node unreleased").String(),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			p, r := f.oldNodeProvider(t), f.agentRequester(t)
			if tc.agentLeg {
				p, r = f.agentProvider(t, f.secret), f.newNodeRequester(t)
			}
			rc, proxyReq := net.Pipe()
			proxyProv, pc := net.Pipe()
			defer rc.Close()
			defer pc.Close()
			go proxy(proxyReq, proxyProv, func(typ msgType, payload []byte) []byte { return tc.alter(t, f, typ, payload) })
			serveDone := make(chan error, 1)
			go func() { serveDone <- Serve(context.Background(), pc, p) }()
			secret, fetchErr := Fetch(context.Background(), rc, r)
			rc.Close()
			serveErr := <-serveDone
			if secret != nil {
				t.Fatalf("secret %q returned with the error", secret)
			}
			wantErr(t, fetchErr, tc.wantFetch, tc.fetchIs)
			if tc.wantServe == "" {
				if serveErr != nil {
					t.Fatalf("serve: %v", serveErr)
				}
			} else {
				wantErr(t, serveErr, tc.wantServe, nil)
			}
		})
	}
}

// rawFrame frames payload as type t without checking it.
func rawFrame(t msgType, payload []byte) []byte {
	b := []byte{byte(t), 0, 0, 0, 0}
	binary.BigEndian.PutUint32(b[1:], uint32(len(payload)))
	return append(b, payload...)
}

// peerServe runs Serve against a raw peer connection the test drives.
func peerServe(t *testing.T, f *fixture) (peer net.Conn, done <-chan error) {
	t.Helper()
	pc, peer := net.Pipe()
	t.Cleanup(func() { pc.Close(); peer.Close() })
	ch := make(chan error, 1)
	p := f.oldNodeProvider(t)
	go func() { ch <- Serve(context.Background(), pc, p) }()
	return peer, ch
}

func TestServeProtocolViolations(t *testing.T) {
	s := newSamples()
	tests := []struct {
		name        string
		send        []byte // what the peer writes
		want        string
		wantRefusal string // "" when no Refusal is expected back
	}{
		{"delivery instead of request", frames(t, s.delivery), "receive request: the requester sent a delivery", "the requester sent a delivery"},
		{"undecodable request", append([]byte{byte(typeRequest), 0, 0, 0, 3}, "abc"...), "receive request: from the requester: decode request", "decode request"},
		{"request with an unknown role", rawFrame(typeRequest, raw(typeRequest, func(e *wire.Encoder) { e.String("miner") })),
			`decode request: requester role: role "miner"`, `role "miner"`},
		{"unknown frame type", []byte{9, 0, 0, 0, 0}, "read frame: unknown message type 9", ""},
		{"oversized frame", []byte{byte(typeRequest), 0x00, 0x10, 0x00, 0x01}, "payload of 1048577 bytes, at most 1048576", ""},
		// net.Pipe reports a closed peer from SetReadDeadline already.
		// A hang-up reads as "closed pipe" or as EOF on net.Pipe depending
		// on whether it beat the read deadline: either way, Serve fails
		// receiving the request.
		{"connection closed", nil, "receive request: ", ""},
		{"malformed refusal", append([]byte{byte(typeRefusal), 0, 0, 0, 1}, 0), "malformed refusal from the requester", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			peer, done := peerServe(t, f)
			// Bound the wait for a refusal that a broken Serve might not send.
			if err := peer.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
				t.Fatal(err)
			}
			if tc.send != nil {
				if _, err := peer.Write(tc.send); err != nil {
					t.Fatal(err)
				}
			} else {
				peer.Close()
			}
			if tc.wantRefusal != "" {
				typ, payload, err := readFrame(peer)
				if err != nil || typ != typeRefusal {
					t.Fatalf("peer got %s, %v; want a refusal", typ, err)
				}
				var ref Refusal
				if err := ref.UnmarshalBinary(payload); err != nil {
					t.Fatal(err)
				}
				wantErr(t, errors.New(ref.Reason), tc.wantRefusal, nil)
			}
			wantErr(t, <-done, tc.want, nil)
		})
	}
}

func TestFetchProtocolViolations(t *testing.T) {
	s := newSamples()
	tests := []struct {
		name  string
		reply []byte // what the provider writes after reading the request
		want  string
		// wantRefusal: the requester answers the reply with a Refusal.
		wantRefusal bool
	}{
		{"answer instead of challenge", frames(t, s.answer), "receive challenge: the provider sent a answer", true},
		{"undecodable challenge", rawFrame(typeChallenge, []byte("THND")), "decode challenge", true},
		{"refusal", frames(t, Refusal{Reason: "maintenance"}), "provider refused: maintenance", false},
		{"malformed refusal", append([]byte{byte(typeRefusal), 0, 0, 0, 1}, 0), "malformed refusal from the provider", false},
		{"truncated frame", []byte{byte(typeChallenge), 0, 0, 0, 9, 1}, "1 of 9 bytes", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			rc, peer := net.Pipe()
			defer rc.Close()
			done := make(chan result, 1)
			r := f.agentRequester(t)
			go func() {
				secret, err := Fetch(context.Background(), rc, r)
				done <- result{secret, err}
			}()
			if err := peer.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
				t.Fatal(err)
			}
			typ, _, err := readFrame(peer)
			if err != nil || typ != typeRequest {
				t.Fatalf("provider got %s, %v", typ, err)
			}
			if _, err := peer.Write(tc.reply); err != nil {
				t.Fatal(err)
			}
			if tc.wantRefusal {
				if typ, _, err := readFrame(peer); err != nil || typ != typeRefusal {
					t.Fatalf("provider got %s, %v; want a refusal", typ, err)
				}
			}
			peer.Close()
			res := <-done
			if res.secret != nil {
				t.Fatal("secret returned with the error")
			}
			wantErr(t, res.err, tc.want, nil)
		})
	}
}

func TestTransportContext(t *testing.T) {
	f := newFixture(t)

	t.Run("cancel unblocks Fetch", func(t *testing.T) {
		pipeEnd, peer := net.Pipe()
		rc := &readSignalConn{Conn: pipeEnd, reading: make(chan struct{})}
		defer rc.Close()
		defer peer.Close()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		r := f.agentRequester(t)
		go func() {
			_, err := Fetch(ctx, rc, r)
			done <- err
		}()
		// Take the request, wait until Fetch reads for the challenge that
		// never comes, then cancel.
		if typ, _, err := readFrame(peer); err != nil || typ != typeRequest {
			t.Fatalf("peer got %s, %v", typ, err)
		}
		<-rc.reading
		cancel()
		// Without cancellation Fetch would wait FrameTimeout (30s); fail
		// well before that instead of hanging.
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("Fetch = %v, want context.Canceled", err)
			}
		case <-time.After(FrameTimeout / 3):
			t.Fatal("cancelling the context did not unblock Fetch")
		}
		// The cancellation's deadline was cleared: the connection works.
		go func() { _, _ = peer.Write([]byte{1}) }()
		var b [1]byte
		if _, err := io.ReadFull(pipeEnd, b[:]); err != nil {
			t.Fatalf("connection unusable after a cancelled Fetch: %v", err)
		}
	})

	t.Run("deadline bounds Serve", func(t *testing.T) {
		pc, silent := net.Pipe() // nobody ever writes to silent
		defer pc.Close()
		defer silent.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		err := Serve(ctx, pc, f.oldNodeProvider(t))
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Serve = %v, want context.DeadlineExceeded", err)
		}
	})

	t.Run("cancelled before the start", func(t *testing.T) {
		pipeEnd, silent := net.Pipe()
		rc := &countingConn{Conn: pipeEnd}
		defer rc.Close()
		defer silent.Close()
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := Fetch(ctx, rc, f.agentRequester(t))
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Fetch = %v, want context.Canceled", err)
		}
		if n := rc.writes.Load(); n != 0 {
			t.Fatalf("Fetch with a cancelled context wrote %d times", n)
		}
		// The connection's deadline was reset: it is usable afterwards.
		go func() { _, _ = silent.Write([]byte{1}) }()
		var b [1]byte
		if _, err := io.ReadFull(rc, b[:]); err != nil {
			t.Fatalf("connection unusable after Fetch: %v", err)
		}
	})

	t.Run("nil state machines", func(t *testing.T) {
		a, b := net.Pipe()
		defer a.Close()
		defer b.Close()
		wantErr(t, Serve(context.Background(), a, nil), "no provider", nil)
		_, err := Fetch(context.Background(), b, nil)
		wantErr(t, err, "no requester", nil)
	})
}

func TestFrameRejects(t *testing.T) {
	header := func(typ byte, n uint32) []byte {
		b := []byte{typ, 0, 0, 0, 0}
		binary.BigEndian.PutUint32(b[1:], n)
		return b
	}
	tests := []struct {
		name string
		in   []byte
		want string
		is   error
	}{
		{"empty stream", nil, "EOF", io.EOF},
		{"partial header", []byte{1, 0, 0}, "read frame header: unexpected EOF", io.ErrUnexpectedEOF},
		{"type 0", header(0, 0), "unknown message type 0", nil},
		{"type 6", header(6, 0), "unknown message type 6", nil},
		{"type 255", header(255, 1), "unknown message type 255", nil},
		{"oversized payload", header(1, MaxFrameSize+1), "payload of 1048577 bytes, at most 1048576", nil},
		{"huge length", header(4, 0xffffffff), "at most 1048576", nil},
		{"truncated payload", append(header(3, 10), 1, 2, 3), "3 of 10 bytes", io.ErrUnexpectedEOF},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			typ, payload, err := readFrame(bytes.NewReader(tc.in))
			wantErr(t, err, tc.want, tc.is)
			if typ != 0 || payload != nil {
				t.Fatalf("frame %s, %d bytes returned with the error", typ, len(payload))
			}
		})
	}

	var buf bytes.Buffer
	wantErr(t, writeFrame(&buf, typeDelivery, make([]byte, MaxFrameSize+1)), "payload is 1048577 bytes", nil)
	wantErr(t, writeFrame(&buf, 0, nil), "unknown message type 0", nil)
	if buf.Len() != 0 {
		t.Fatalf("refused frames wrote %d bytes", buf.Len())
	}
	// The largest frame is accepted both ways.
	if err := writeFrame(&buf, typeDelivery, make([]byte, MaxFrameSize)); err != nil {
		t.Fatal(err)
	}
	typ, payload, err := readFrame(&buf)
	if err != nil || typ != typeDelivery || len(payload) != MaxFrameSize {
		t.Fatalf("max frame: %s, %d bytes, %v", typ, len(payload), err)
	}
}

// TestReadFrameAllocatesAsDataArrives checks that a header announcing a
// large payload does not make the reader allocate it up front.
func TestReadFrameAllocatesAsDataArrives(t *testing.T) {
	in := append([]byte{byte(typeDelivery), 0x00, 0x10, 0x00, 0x00}, make([]byte, 16)...) // claims 1 MiB, carries 16 bytes
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range 16 {
		if _, _, err := readFrame(bytes.NewReader(in)); err == nil {
			t.Fatal("truncated frame accepted")
		}
	}
	runtime.ReadMemStats(&after)
	if perRead := (after.TotalAlloc - before.TotalAlloc) / 16; perRead > 64<<10 {
		t.Fatalf("each read of a 16-byte frame allocated %d bytes", perRead)
	}
}

// TestServePeerClosesUnixSocket checks the error when the requester hangs
// up on a real unix socket.
func TestServePeerClosesUnixSocket(t *testing.T) {
	f := newFixture(t)
	sock := filepath.Join(t.TempDir(), "node.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	pc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	c.Close()
	err = Serve(context.Background(), pc, f.oldNodeProvider(t))
	wantErr(t, err, "receive request: the requester closed the connection: EOF", io.EOF)
}

// countingConn counts Write calls.
type countingConn struct {
	net.Conn
	writes atomic.Int32
}

func (c *countingConn) Write(b []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(b)
}

// readSignalConn closes reading when Read is first called.
type readSignalConn struct {
	net.Conn
	once    sync.Once
	reading chan struct{}
}

func (c *readSignalConn) Read(b []byte) (int, error) {
	c.once.Do(func() { close(c.reading) })
	return c.Conn.Read(b)
}
