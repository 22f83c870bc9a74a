package handover

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// Framing: every message travels as one frame,
//
//	type u8 | length u32 (big-endian) | payload (the encoded message)
//
// and a frame's payload is at most MaxFrameSize bytes.
const (
	// MaxFrameSize bounds a frame's payload.
	MaxFrameSize = 1 << 20
	// FrameTimeout bounds the wait for each frame to be read or written;
	// a context deadline shortens it.
	FrameTimeout = 30 * time.Second

	frameHeaderSize = 5
)

// RefusalError is the other side's Refusal, surfaced as an error.
type RefusalError struct {
	// By is who refused: "provider" or "requester".
	By string
	// Reason is the refusal's printable reason.
	Reason string
}

// Error reads "<by> refused: <reason>".
func (e *RefusalError) Error() string { return e.By + " refused: " + e.Reason }

// writeFrame writes one frame in a single Write.
func writeFrame(w io.Writer, t msgType, payload []byte) error {
	if !t.valid() {
		return fmt.Errorf("write frame: %s", t)
	}
	if len(payload) > MaxFrameSize {
		return fmt.Errorf("write %s frame: payload is %d bytes, at most %d", t, len(payload), MaxFrameSize)
	}
	buf := make([]byte, frameHeaderSize, frameHeaderSize+len(payload))
	buf[0] = byte(t)
	binary.BigEndian.PutUint32(buf[1:], uint32(len(payload)))
	buf = append(buf, payload...)
	if _, err := w.Write(buf); err != nil {
		return fmt.Errorf("write %s frame: %w", t, err)
	}
	return nil
}

// readFrame reads one frame. It refuses unknown types and payloads over
// MaxFrameSize before reading them, and allocates only as the payload's
// bytes actually arrive. At a clean end of stream it returns io.EOF.
func readFrame(r io.Reader) (msgType, []byte, error) {
	var h [frameHeaderSize]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		if errors.Is(err, io.EOF) {
			return 0, nil, io.EOF
		}
		return 0, nil, fmt.Errorf("read frame header: %w", err)
	}
	t := msgType(h[0])
	if !t.valid() {
		return 0, nil, fmt.Errorf("read frame: %s", t)
	}
	n := binary.BigEndian.Uint32(h[1:])
	if n > MaxFrameSize {
		return 0, nil, fmt.Errorf("read %s frame: payload of %d bytes, at most %d", t, n, MaxFrameSize)
	}
	payload, err := io.ReadAll(io.LimitReader(r, int64(n)))
	if err != nil {
		return 0, nil, fmt.Errorf("read %s frame payload: %w", t, err)
	}
	if len(payload) != int(n) {
		return 0, nil, fmt.Errorf("read %s frame payload: %d of %d bytes: %w", t, len(payload), n, io.ErrUnexpectedEOF)
	}
	return t, payload, nil
}

// decodable is a message a session can receive.
type decodable interface {
	msgType() msgType
	UnmarshalBinary([]byte) error
}

// session is one side of one exchange on a connection.
type session struct {
	ctx  context.Context
	conn net.Conn
	peer string // who is on the other end: "provider" or "requester"
}

// newSession starts a session; the returned function ends it. Cancelling
// ctx unblocks any read or write in progress.
func newSession(ctx context.Context, conn net.Conn, peer string) (*session, func()) {
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		_ = conn.SetDeadline(time.Unix(1, 0)) // in the past: fail pending I/O now
		close(fired)
	})
	return &session{ctx: ctx, conn: conn, peer: peer}, func() {
		if !stop() {
			<-fired // let it finish, so the reset below comes last
		}
		_ = conn.SetDeadline(time.Time{})
	}
}

// deadline is now + FrameTimeout, or the context's deadline if earlier.
func (s *session) deadline() time.Time {
	d := time.Now().Add(FrameTimeout)
	if cd, ok := s.ctx.Deadline(); ok && cd.Before(d) {
		d = cd
	}
	return d
}

// ioError wraps an I/O failure, naming the context's error when the
// context is why it failed.
func (s *session) ioError(op string, err error) error {
	if cerr := s.ctx.Err(); cerr != nil {
		return fmt.Errorf("%s: %w (%v)", op, cerr, err)
	}
	// The connection's deadline may fire an instant before the context's
	// own timer when both are the context's deadline.
	if d, ok := s.ctx.Deadline(); ok && !time.Now().Before(d) {
		return fmt.Errorf("%s: %w (%v)", op, context.DeadlineExceeded, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}

// send encodes m and writes it as one frame.
func (s *session) send(m message) error {
	op := "send " + m.msgType().String()
	payload, err := m.MarshalBinary()
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	// The deadline is set before the context is checked: a cancellation
	// after the check then always overrides it (see newSession).
	if err := s.conn.SetWriteDeadline(s.deadline()); err != nil {
		return s.ioError(op, err)
	}
	if err := s.ctx.Err(); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if err := writeFrame(s.conn, m.msgType(), payload); err != nil {
		return s.ioError(op, err)
	}
	return nil
}

// receive reads one frame into m. A Refusal from the peer comes back as a
// *RefusalError. When peerWaits (the peer expects a reply), a complete frame
// of the wrong type or that does not decode is answered with a Refusal;
// broken framing and I/O errors are not, since the stream can no longer be
// trusted to carry one.
func (s *session) receive(m decodable, peerWaits bool) error {
	want := m.msgType()
	op := "receive " + want.String()
	if err := s.conn.SetReadDeadline(s.deadline()); err != nil {
		return s.ioError(op, err)
	}
	if err := s.ctx.Err(); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	t, payload, err := readFrame(s.conn)
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = fmt.Errorf("the %s closed the connection: %w", s.peer, err)
		}
		return s.ioError(op, err)
	}
	if t == typeRefusal && want != typeRefusal {
		var ref Refusal
		if err := ref.UnmarshalBinary(payload); err != nil {
			return fmt.Errorf("%s: malformed refusal from the %s: %w", op, s.peer, err)
		}
		return fmt.Errorf("%s: %w", op, &RefusalError{By: s.peer, Reason: ref.Reason})
	}
	if t != want {
		err := fmt.Errorf("%s: the %s sent a %s", op, s.peer, t)
		if peerWaits {
			s.refuse(err)
		}
		return err
	}
	if err := m.UnmarshalBinary(payload); err != nil {
		err = fmt.Errorf("%s: from the %s: %w", op, s.peer, err)
		if peerWaits {
			s.refuse(err)
		}
		return err
	}
	return nil
}

// refuse tells the peer why the exchange stops, if it can. The refusal is
// a courtesy: failing to send it changes nothing, so its error is dropped.
func (s *session) refuse(reason error) {
	_ = s.send(RefusalFor(reason))
}

// Serve answers one exchange on conn with provider p: it reads a Request,
// sends a Challenge, reads the Answer and sends the Delivery. When p refuses
// a step it sends a Refusal with the reason and returns the error; when the
// requester refuses, the error is a *RefusalError. Serve does not close conn.
func Serve(ctx context.Context, conn net.Conn, p *Provider) error {
	if p == nil {
		return errors.New("serve handover: no provider")
	}
	s, done := newSession(ctx, conn, "requester")
	defer done()
	var req Request
	if err := s.receive(&req, true); err != nil {
		return fmt.Errorf("serve handover: %w", err)
	}
	ch, err := p.Challenge(req)
	if err != nil {
		s.refuse(err)
		return fmt.Errorf("serve handover: %w", err)
	}
	if err := s.send(ch); err != nil {
		return fmt.Errorf("serve handover: %w", err)
	}
	var ans Answer
	if err := s.receive(&ans, true); err != nil {
		return fmt.Errorf("serve handover: %w", err)
	}
	d, err := p.Deliver(ans)
	if err != nil {
		s.refuse(err)
		return fmt.Errorf("serve handover: %w", err)
	}
	if err := s.send(d); err != nil {
		return fmt.Errorf("serve handover: %w", err)
	}
	return nil
}

// Fetch runs the requester side of one exchange on conn with r and returns
// the secret. A refusal by the provider comes back as a *RefusalError
// ("provider refused: <reason>"). When r refuses the challenge it sends a
// Refusal and returns the error; a delivery that does not verify is
// reported by the returned error only, since the provider has finished.
// Fetch does not close conn.
func Fetch(ctx context.Context, conn net.Conn, r *Requester) ([]byte, error) {
	if r == nil {
		return nil, errors.New("fetch handover: no requester")
	}
	s, done := newSession(ctx, conn, "provider")
	defer done()
	if err := s.send(r.Request()); err != nil {
		return nil, fmt.Errorf("fetch handover: %w", err)
	}
	var ch Challenge
	if err := s.receive(&ch, true); err != nil {
		return nil, fmt.Errorf("fetch handover: %w", err)
	}
	ans, err := r.Answer(ch)
	if err != nil {
		s.refuse(err)
		return nil, fmt.Errorf("fetch handover: %w", err)
	}
	if err := s.send(ans); err != nil {
		return nil, fmt.Errorf("fetch handover: %w", err)
	}
	var d Delivery
	if err := s.receive(&d, false); err != nil {
		return nil, fmt.Errorf("fetch handover: %w", err)
	}
	secret, err := r.Receive(d)
	if err != nil {
		return nil, fmt.Errorf("fetch handover: %w", err)
	}
	return secret, nil
}
