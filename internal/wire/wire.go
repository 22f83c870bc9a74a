// Package wire is a minimal canonical binary encoding for teeup's signed and
// replicated structures: fixed-width big-endian integers and length-prefixed
// byte strings. Decoding never trusts a length: every read is bounded by the
// remaining input and by an explicit maximum, so malformed bytes produce an
// error, never a panic or a huge allocation.
package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// ErrTruncated is returned when the input ends before a value does.
var ErrTruncated = errors.New("truncated")

// Encoder appends values to a byte slice.
type Encoder struct{ buf []byte }

// NewEncoder returns an encoder with capacity hint n.
func NewEncoder(n int) *Encoder { return &Encoder{buf: make([]byte, 0, n)} }

// Bytes returns the encoded bytes.
func (e *Encoder) Bytes() []byte { return e.buf }

// U8 appends a byte.
func (e *Encoder) U8(v uint8) { e.buf = append(e.buf, v) }

// U16 appends a big-endian uint16.
func (e *Encoder) U16(v uint16) { e.buf = binary.BigEndian.AppendUint16(e.buf, v) }

// U32 appends a big-endian uint32.
func (e *Encoder) U32(v uint32) { e.buf = binary.BigEndian.AppendUint32(e.buf, v) }

// U64 appends a big-endian uint64.
func (e *Encoder) U64(v uint64) { e.buf = binary.BigEndian.AppendUint64(e.buf, v) }

// Bool appends 1 or 0.
func (e *Encoder) Bool(v bool) {
	if v {
		e.U8(1)
	} else {
		e.U8(0)
	}
}

// Fixed appends b without a length prefix (for fixed-size fields).
func (e *Encoder) Fixed(b []byte) { e.buf = append(e.buf, b...) }

// Var appends a uint32 length prefix and b.
func (e *Encoder) Var(b []byte) {
	e.U32(uint32(len(b)))
	e.buf = append(e.buf, b...)
}

// String appends a length-prefixed string.
func (e *Encoder) String(s string) {
	e.U32(uint32(len(s)))
	e.buf = append(e.buf, s...)
}

// Decoder reads values from untrusted bytes. The first error sticks: later
// reads return zero values, and Err reports it.
type Decoder struct {
	buf  []byte
	off  int
	err  error
	what string
}

// NewDecoder returns a decoder over b; what names the structure in errors.
func NewDecoder(what string, b []byte) *Decoder { return &Decoder{buf: b, what: what} }

// Err returns the first error met.
func (d *Decoder) Err() error { return d.err }

// Remaining returns the number of unread bytes.
func (d *Decoder) Remaining() int { return len(d.buf) - d.off }

func (d *Decoder) fail(field string, err error) {
	if d.err == nil {
		d.err = fmt.Errorf("decode %s: %s at byte %d: %w", d.what, field, d.off, err)
	}
}

func (d *Decoder) take(field string, n int) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || d.Remaining() < n {
		d.fail(field, ErrTruncated)
		return nil
	}
	b := d.buf[d.off : d.off+n]
	d.off += n
	return b
}

// U8 reads a byte.
func (d *Decoder) U8(field string) uint8 {
	b := d.take(field, 1)
	if b == nil {
		return 0
	}
	return b[0]
}

// U16 reads a big-endian uint16.
func (d *Decoder) U16(field string) uint16 {
	b := d.take(field, 2)
	if b == nil {
		return 0
	}
	return binary.BigEndian.Uint16(b)
}

// U32 reads a big-endian uint32.
func (d *Decoder) U32(field string) uint32 {
	b := d.take(field, 4)
	if b == nil {
		return 0
	}
	return binary.BigEndian.Uint32(b)
}

// U64 reads a big-endian uint64.
func (d *Decoder) U64(field string) uint64 {
	b := d.take(field, 8)
	if b == nil {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}

// Bool reads a byte that must be 0 or 1.
func (d *Decoder) Bool(field string) bool {
	v := d.U8(field)
	if v > 1 {
		d.fail(field, fmt.Errorf("boolean byte %d", v))
		return false
	}
	return v == 1
}

// Fixed reads exactly len(dst) bytes into dst.
func (d *Decoder) Fixed(field string, dst []byte) {
	b := d.take(field, len(dst))
	if b != nil {
		copy(dst, b)
	}
}

// Var reads a length-prefixed byte string of at most max bytes. The result
// is a copy, safe to keep after the input is reused.
func (d *Decoder) Var(field string, max int) []byte {
	n := d.U32(field + " length")
	if d.err != nil {
		return nil
	}
	if int64(n) > int64(max) {
		d.fail(field, fmt.Errorf("length %d exceeds the maximum %d", n, max))
		return nil
	}
	b := d.take(field, int(n))
	if b == nil {
		return nil
	}
	return append([]byte(nil), b...)
}

// String reads a length-prefixed string of at most max bytes.
func (d *Decoder) String(field string, max int) string { return string(d.Var(field, max)) }

// Count reads a uint32 element count of at most max.
func (d *Decoder) Count(field string, max int) int {
	n := d.U32(field)
	if d.err != nil {
		return 0
	}
	if int64(n) > int64(max) {
		d.fail(field, fmt.Errorf("count %d exceeds the maximum %d", n, max))
		return 0
	}
	return int(n)
}

// Finish fails unless every byte was consumed, and returns Err.
func (d *Decoder) Finish() error {
	if d.err == nil && d.Remaining() != 0 {
		d.fail("end", fmt.Errorf("%d trailing bytes", d.Remaining()))
	}
	return d.err
}
