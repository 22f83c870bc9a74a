package handover

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/teeup/teeup/internal/wire"
	"github.com/teeup/teeup/release"
	"github.com/teeup/teeup/tee/sim"
)

// samples returns one valid message of each kind, with plausible content.
type samples struct {
	request       Request
	challenge     Challenge // with a provider ID
	challengeNoID Challenge
	answer        Answer
	delivery      Delivery
	refusal       Refusal
}

func newSamples() samples {
	agentMR, nodeMR := measure("teeup-agent v1"), measure("teeup-node v1")
	agID := signedID(testChain, release.RoleAgent, agentMR, testKey(1), testKey(2))
	var nonce [NonceSize]byte
	for i := range nonce {
		nonce[i] = byte(i)
	}
	s := samples{
		request: Request{RequesterRole: release.RoleAgent},
		challenge: Challenge{
			Nonce: nonce, ChainID: testChain, Height: 42, Expiry: -5, // negative: before 1970, still encodable
			ProviderTargetInfo: sim.TargetInfoFor(sim.Target{MREnclave: agentMR}), ProviderRole: release.RoleAgent, ProviderID: &agID,
		},
		answer: Answer{
			Nonce: nonce, RequesterTargetInfo: sim.TargetInfoFor(sim.Target{MREnclave: nodeMR}), OneTimeKey: bytes.Repeat([]byte{9}, OneTimeKeySize),
			Report: bytes.Repeat([]byte{7}, 200), RequesterID: signedID(testChain, release.RoleNode, nodeMR, testKey(3), testKey(1)),
		},
		delivery: Delivery{Nonce: nonce, Ciphertext: bytes.Repeat([]byte{3}, 100), Report: bytes.Repeat([]byte{4}, 200)},
		refusal:  Refusal{Reason: "deliver: requester enclave id: 1 of 2 required signatures — ünïcode ok"},
	}
	s.challengeNoID = s.challenge
	s.challengeNoID.ProviderID = nil
	s.challengeNoID.Expiry = 1<<62 + 3
	return s
}

// all returns the samples as (name, message, empty decodable target).
func (s samples) all() []struct {
	name string
	msg  message
	into func() decodable
} {
	return []struct {
		name string
		msg  message
		into func() decodable
	}{
		{"request", s.request, func() decodable { return new(Request) }},
		{"challenge", s.challenge, func() decodable { return new(Challenge) }},
		{"challenge without id", s.challengeNoID, func() decodable { return new(Challenge) }},
		{"answer", s.answer, func() decodable { return new(Answer) }},
		{"delivery", s.delivery, func() decodable { return new(Delivery) }},
		{"refusal", s.refusal, func() decodable { return new(Refusal) }},
	}
}

func mustMarshal(t testing.TB, m message) []byte {
	t.Helper()
	b, err := m.MarshalBinary()
	if err != nil {
		t.Fatalf("marshal %s: %v", m.msgType(), err)
	}
	return b
}

func TestMessageRoundTrip(t *testing.T) {
	for _, c := range newSamples().all() {
		t.Run(c.name, func(t *testing.T) {
			b := mustMarshal(t, c.msg)
			if string(b[:4]) != magic || b[4] != formatVersion || msgType(b[5]) != c.msg.msgType() {
				t.Fatalf("header % x", b[:6])
			}
			got := c.into()
			if err := got.UnmarshalBinary(b); err != nil {
				t.Fatal(err)
			}
			// got is a pointer to the message type; compare the values.
			if v := reflect.ValueOf(got).Elem().Interface(); !reflect.DeepEqual(v, c.msg) {
				t.Fatalf("round trip:\n got %+v\nwant %+v", v, c.msg)
			}
		})
	}
}

// TestDecodeTruncated checks that every strict prefix of every valid
// encoding is refused, and never leaves a partial value behind.
func TestDecodeTruncated(t *testing.T) {
	for _, c := range newSamples().all() {
		b := mustMarshal(t, c.msg)
		for n := range len(b) {
			got := c.into()
			if err := got.UnmarshalBinary(b[:n]); err == nil {
				t.Fatalf("%s: prefix of %d/%d bytes decoded", c.name, n, len(b))
			}
			zero := reflect.New(reflect.TypeOf(got).Elem()).Interface()
			if !reflect.DeepEqual(got, zero) {
				t.Fatalf("%s: failed decode of %d bytes changed the target: %+v", c.name, n, got)
			}
		}
	}
}

// raw builds a message of type t from its fields without validation.
func raw(t msgType, fields func(e *wire.Encoder)) []byte {
	e := newEncoder(t, 64)
	fields(e)
	return e.Bytes()
}

// withHeader returns b with its header bytes replaced.
func withHeader(b []byte, off int, v byte) []byte {
	b = bytes.Clone(b)
	b[off] = v
	return b
}

func TestDecodeRejects(t *testing.T) {
	s := newSamples()
	req := mustMarshal(t, s.request)
	chb := mustMarshal(t, s.challenge)
	idBytes, err := s.challenge.ProviderID.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	ansIDBytes, err := s.answer.RequesterID.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	ti := s.challenge.ProviderTargetInfo
	// challenge writes a challenge with the given variable fields.
	challenge := func(chain string, ti []byte, role string, flag byte, id []byte) []byte {
		return raw(typeChallenge, func(e *wire.Encoder) {
			e.Fixed(make([]byte, NonceSize))
			e.String(chain)
			e.U64(1)
			e.U64(2)
			e.Var(ti)
			e.String(role)
			e.U8(flag)
			if id != nil {
				e.Var(id)
			}
		})
	}
	answer := func(ti, key, report, id []byte) []byte {
		return raw(typeAnswer, func(e *wire.Encoder) {
			e.Fixed(make([]byte, NonceSize))
			e.Var(ti)
			e.Var(key)
			e.Var(report)
			e.Var(id)
		})
	}
	delivery := func(ct, report []byte) []byte {
		return raw(typeDelivery, func(e *wire.Encoder) {
			e.Fixed(make([]byte, NonceSize))
			e.Var(ct)
			e.Var(report)
		})
	}
	refusal := func(reason string) []byte {
		return raw(typeRefusal, func(e *wire.Encoder) { e.String(reason) })
	}
	key := bytes.Repeat([]byte{1}, OneTimeKeySize)
	rep := []byte("report")
	hugeCountEnc := wire.NewEncoder(64)
	hugeCountEnc.String(testChain)
	hugeCountEnc.String("node")
	hugeCountEnc.Fixed(make([]byte, 32))
	hugeCountEnc.U32(release.MaxSignatures + 1)
	hugeCount := hugeCountEnc.Bytes()
	tests := []struct {
		name string
		into decodable
		in   []byte
		want string
	}{
		{"request: empty", new(Request), nil, "truncated"},
		{"request: bad magic", new(Request), withHeader(req, 0, 'X'), "bad magic"},
		{"request: version 2", new(Request), withHeader(req, 4, 2), "unsupported version 2"},
		{"request: a challenge", new(Request), chb, "the message is a challenge"},
		{"request: unknown type byte", new(Request), withHeader(req, 5, 9), "decode request: unknown message type 9"},
		{"request: unknown role", new(Request), raw(typeRequest, func(e *wire.Encoder) { e.String("miner") }), `role "miner"`},
		{"request: role too long", new(Request), raw(typeRequest, func(e *wire.Encoder) { e.String(strings.Repeat("a", 17)) }), "exceeds the maximum 16"},
		{"request: trailing byte", new(Request), append(bytes.Clone(req), 0), "1 trailing bytes"},

		{"challenge: a request", new(Challenge), req, "the message is a request"},
		{"challenge: empty chain id", new(Challenge), challenge("", ti, "agent", 0, nil), "chain id is empty"},
		{"challenge: chain id too long", new(Challenge), challenge(strings.Repeat("c", 65), ti, "agent", 0, nil), "exceeds the maximum 64"},
		{"challenge: empty target info", new(Challenge), challenge(testChain, nil, "agent", 0, nil), "provider target info is empty"},
		{"challenge: target info too long", new(Challenge), challenge(testChain, make([]byte, MaxTargetInfoSize+1), "agent", 0, nil), "exceeds the maximum 4096"},
		{"challenge: unknown role", new(Challenge), challenge(testChain, ti, "nobody", 0, nil), `provider role: role "nobody"`},
		{"challenge: id flag 2", new(Challenge), challenge(testChain, ti, "agent", 2, nil), "boolean byte 2"},
		{"challenge: id flag without id", new(Challenge), challenge(testChain, ti, "agent", 1, nil), "provider id length"},
		{"challenge: empty id", new(Challenge), challenge(testChain, ti, "agent", 1, []byte{}), "decode challenge: provider id: decode enclave id"},
		{"challenge: id with trailing byte", new(Challenge), challenge(testChain, ti, "agent", 1, append(bytes.Clone(idBytes), 0)), "decode challenge: provider id"},
		{"challenge: id too long", new(Challenge), challenge(testChain, ti, "agent", 1, make([]byte, maxEnclaveIDSize+1)), "exceeds the maximum"},
		{"challenge: id after flag 0", new(Challenge), challenge(testChain, ti, "agent", 0, idBytes), "trailing bytes"},
		{"challenge: trailing byte", new(Challenge), append(bytes.Clone(chb), 0), "1 trailing bytes"},

		{"answer: empty target info", new(Answer), answer(nil, key, rep, ansIDBytes), "requester target info is empty"},
		{"answer: target info too long", new(Answer), answer(make([]byte, MaxTargetInfoSize+1), key, rep, ansIDBytes), "exceeds the maximum 4096"},
		{"answer: short one-time key", new(Answer), answer(ti, key[:31], rep, ansIDBytes), "one-time key is 31 bytes, want 32"},
		{"answer: long one-time key", new(Answer), answer(ti, append(bytes.Clone(key), 1), rep, ansIDBytes), "exceeds the maximum 32"},
		{"answer: empty report", new(Answer), answer(ti, key, nil, ansIDBytes), "report is empty"},
		{"answer: report too long", new(Answer), answer(ti, key, make([]byte, MaxReportSize+1), ansIDBytes), "exceeds the maximum 8192"},
		{"answer: empty requester id", new(Answer), answer(ti, key, rep, nil), "decode answer: requester id"},
		{"answer: requester id signature count too large", new(Answer), answer(ti, key, rep, hugeCount), "count 257 exceeds the maximum 256"},
		{"answer: requester id with trailing byte", new(Answer), answer(ti, key, rep, append(bytes.Clone(ansIDBytes), 0)), "decode answer: requester id"},

		{"delivery: empty ciphertext", new(Delivery), delivery(nil, rep), "ciphertext is empty"},
		{"delivery: ciphertext too long", new(Delivery), delivery(make([]byte, MaxCiphertextSize+1), rep), "exceeds the maximum"},
		{"delivery: empty report", new(Delivery), delivery([]byte("ct"), nil), "report is empty"},
		{"delivery: report too long", new(Delivery), delivery([]byte("ct"), make([]byte, MaxReportSize+1)), "exceeds the maximum 8192"},

		{"refusal: empty reason", new(Refusal), refusal(""), "reason is empty"},
		{"refusal: reason too long", new(Refusal), refusal(strings.Repeat("r", MaxReasonLen+1)), "exceeds the maximum 1024"},
		{"refusal: invalid UTF-8", new(Refusal), refusal("bad \xff byte"), "not valid UTF-8"},
		{"refusal: newline", new(Refusal), refusal("line\nbreak"), "unprintable character U+000A"},
		{"refusal: terminal escape", new(Refusal), refusal("\x1b[2Jcleared"), "unprintable character U+001B"},
		{"refusal: bidi override", new(Refusal), refusal("abc\u202edef"), "unprintable character U+202E"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := reflect.ValueOf(tc.into).Elem().Interface()
			err := tc.into.UnmarshalBinary(tc.in)
			wantErr(t, err, tc.want, nil)
			if after := reflect.ValueOf(tc.into).Elem().Interface(); !reflect.DeepEqual(before, after) {
				t.Fatalf("failed decode changed the target: %+v", after)
			}
		})
	}
}

func TestEncodeRejects(t *testing.T) {
	s := newSamples()
	badSig := *s.challenge.ProviderID
	badSig.Signatures = []release.Signature{{Key: "zz", Sig: "00"}}
	tooMany := s.answer.RequesterID
	tooMany.Signatures = make([]release.Signature, release.MaxSignatures+1)
	mod := func(m Challenge, f func(*Challenge)) Challenge { f(&m); return m }
	modA := func(m Answer, f func(*Answer)) Answer { f(&m); return m }
	modD := func(m Delivery, f func(*Delivery)) Delivery { f(&m); return m }
	tests := []struct {
		name string
		msg  message
		want string
	}{
		{"request: unknown role", Request{RequesterRole: "x"}, `encode request: requester role: role "x"`},
		{"challenge: empty chain id", mod(s.challenge, func(c *Challenge) { c.ChainID = "" }), "encode challenge: chain id is empty"},
		{"challenge: chain id too long", mod(s.challenge, func(c *Challenge) { c.ChainID = strings.Repeat("c", 65) }), "chain id is 65 bytes"},
		{"challenge: no target info", mod(s.challenge, func(c *Challenge) { c.ProviderTargetInfo = nil }), "provider target info is empty"},
		{"challenge: unknown role", mod(s.challenge, func(c *Challenge) { c.ProviderRole = "" }), "provider role"},
		{"challenge: malformed provider id", mod(s.challenge, func(c *Challenge) { c.ProviderID = &badSig }), "encode challenge: provider id"},
		{"answer: short key", modA(s.answer, func(a *Answer) { a.OneTimeKey = a.OneTimeKey[:31] }), "one-time key is 31 bytes"},
		{"answer: no report", modA(s.answer, func(a *Answer) { a.Report = nil }), "report is empty"},
		{"answer: report too long", modA(s.answer, func(a *Answer) { a.Report = make([]byte, MaxReportSize+1) }), "report is 8193 bytes"},
		{"answer: no target info", modA(s.answer, func(a *Answer) { a.RequesterTargetInfo = nil }), "requester target info is empty"},
		{"answer: too many signatures", modA(s.answer, func(a *Answer) { a.RequesterID = tooMany }), "encode answer: requester id"},
		{"delivery: no ciphertext", modD(s.delivery, func(d *Delivery) { d.Ciphertext = nil }), "ciphertext is empty"},
		{"delivery: ciphertext too long", modD(s.delivery, func(d *Delivery) { d.Ciphertext = make([]byte, MaxCiphertextSize+1) }), "ciphertext is"},
		{"delivery: no report", modD(s.delivery, func(d *Delivery) { d.Report = nil }), "report is empty"},
		{"refusal: empty", Refusal{}, "reason is empty"},
		{"refusal: control character", Refusal{Reason: "a\tb"}, "unprintable"},
		{"refusal: too long", Refusal{Reason: strings.Repeat("é", MaxReasonLen/2+1)}, "reason is 1026 bytes"},
		{"refusal: invalid UTF-8", Refusal{Reason: "\xc3"}, "not valid UTF-8"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := tc.msg.MarshalBinary()
			wantErr(t, err, tc.want, nil)
			if b != nil {
				t.Fatal("bytes returned with the error")
			}
		})
	}
}

func TestRefusalFor(t *testing.T) {
	long := strings.Repeat("ab", MaxReasonLen) + "tail"
	// A 3-byte rune straddling the limit must be dropped whole.
	straddle := strings.Repeat("x", MaxReasonLen-1) + "€"
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"plain", errors.New("deliver: challenge expired"), "deliver: challenge expired"},
		{"nil", nil, "refused"},
		{"empty text", errors.New(""), "refused"},
		{"control characters", errors.New("a\nb\x1b[31mc"), "a?b?[31mc"},
		{"invalid UTF-8", errors.New("x\xffy"), "x?y"},
		{"too long", errors.New(long), long[:MaxReasonLen]},
		{"rune at the limit", errors.New(straddle), strings.Repeat("x", MaxReasonLen-1)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := RefusalFor(tc.err)
			if r.Reason != tc.want {
				t.Fatalf("reason %q, want %q", r.Reason, tc.want)
			}
			if !utf8.ValidString(r.Reason) || len(r.Reason) > MaxReasonLen {
				t.Fatalf("reason not valid: %q", r.Reason)
			}
			b := mustMarshal(t, r)
			var back Refusal
			if err := back.UnmarshalBinary(b); err != nil || back != r {
				t.Fatalf("round trip %+v, %v", back, err)
			}
		})
	}
}
