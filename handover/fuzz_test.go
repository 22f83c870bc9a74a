package handover

import (
	"bytes"
	"encoding/binary"
	"reflect"
	"testing"

	"github.com/teeup/teeup/internal/wire"
)

// exchangeSeeds returns the encodings of a genuine exchange between real
// simulated enclaves, for seed corpora.
func exchangeSeeds(f *testing.F) (req, ch, ans, del []byte) {
	fx := newFixture(f)
	p := fx.agentProvider(f, fx.secret)
	r := fx.newNodeRequester(f)
	c, err := p.Challenge(r.Request())
	if err != nil {
		f.Fatal(err)
	}
	a, err := r.Answer(c)
	if err != nil {
		f.Fatal(err)
	}
	d, err := p.Deliver(a)
	if err != nil {
		f.Fatal(err)
	}
	return mustMarshal(f, r.Request()), mustMarshal(f, c), mustMarshal(f, a), mustMarshal(f, d)
}

// addVariants adds b and some damaged copies of it to the corpus.
func addVariants(f *testing.F, b []byte) {
	f.Add(b)
	f.Add(b[:len(b)/2])
	f.Add(append(bytes.Clone(b), 0))
	f.Add(flip(b, 0))
	f.Add(flip(b, 4))
	f.Add(flip(b, 5))
	if len(b) > headerSize+4 {
		big := bytes.Clone(b)
		binary.BigEndian.PutUint32(big[len(big)-4:], 0xffffffff)
		f.Add(big)
	}
}

// fuzzDecode decodes data as a T. Whatever decodes must be canonical: it
// re-encodes to exactly data. What does not decode leaves the target zero.
func fuzzDecode[T message, PT interface {
	*T
	decodable
}](t *testing.T, data []byte) {
	var m T
	if err := PT(&m).UnmarshalBinary(data); err != nil {
		var zero T
		if !reflect.DeepEqual(m, zero) {
			t.Fatalf("failed decode changed the target: %+v", m)
		}
		return
	}
	b, err := m.MarshalBinary()
	if err != nil {
		t.Fatalf("decoded %s does not re-encode: %v", m.msgType(), err)
	}
	if !bytes.Equal(b, data) {
		t.Fatalf("decoding is not canonical:\n in  %x\n out %x", data, b)
	}
}

func FuzzDecodeRequest(f *testing.F) {
	req, ch, _, _ := exchangeSeeds(f)
	addVariants(f, req)
	addVariants(f, mustMarshal(f, newSamples().request))
	f.Add(ch)
	f.Add([]byte{})
	f.Fuzz(fuzzDecode[Request])
}

func FuzzDecodeChallenge(f *testing.F) {
	_, ch, ans, _ := exchangeSeeds(f)
	s := newSamples()
	addVariants(f, ch)
	addVariants(f, mustMarshal(f, s.challenge))
	addVariants(f, mustMarshal(f, s.challengeNoID))
	f.Add(ans)
	f.Fuzz(fuzzDecode[Challenge])
}

func FuzzDecodeAnswer(f *testing.F) {
	_, _, ans, del := exchangeSeeds(f)
	addVariants(f, ans)
	addVariants(f, mustMarshal(f, newSamples().answer))
	f.Add(del)
	f.Fuzz(fuzzDecode[Answer])
}

func FuzzDecodeDelivery(f *testing.F) {
	_, _, ans, del := exchangeSeeds(f)
	addVariants(f, del)
	addVariants(f, mustMarshal(f, newSamples().delivery))
	f.Add(ans)
	f.Fuzz(fuzzDecode[Delivery])
}

func FuzzDecodeRefusal(f *testing.F) {
	addVariants(f, mustMarshal(f, newSamples().refusal))
	addVariants(f, mustMarshal(f, RefusalFor(ErrUnknownNonce)))
	f.Add(raw(typeRefusal, func(*wire.Encoder) {}))
	f.Fuzz(fuzzDecode[Refusal])
}

// decodeFrame decodes a frame's payload as the message its type names.
func decodeFrame(t msgType, payload []byte) (message, error) {
	var m interface {
		message
		decodable
	}
	switch t {
	case typeRequest:
		m = new(Request)
	case typeChallenge:
		m = new(Challenge)
	case typeAnswer:
		m = new(Answer)
	case typeDelivery:
		m = new(Delivery)
	case typeRefusal:
		m = new(Refusal)
	}
	if err := m.UnmarshalBinary(payload); err != nil {
		return nil, err
	}
	return m, nil
}

// frames encodes msgs as consecutive frames.
func frames(tb testing.TB, msgs ...message) []byte {
	tb.Helper()
	var buf bytes.Buffer
	for _, m := range msgs {
		if err := writeFrame(&buf, m.msgType(), mustMarshal(tb, m)); err != nil {
			tb.Fatal(err)
		}
	}
	return buf.Bytes()
}

// FuzzFrame reads frames from arbitrary bytes: every frame read must be
// exactly the bytes it was read from, of a known type and bounded size, and
// its payload must decode, if at all, as the message its type names.
func FuzzFrame(f *testing.F) {
	s := newSamples()
	all := frames(f, s.request, s.challenge, s.answer, s.delivery, s.refusal)
	f.Add(all)
	f.Add(all[:len(all)-1])
	f.Add(frames(f, s.challengeNoID))
	f.Add([]byte{byte(typeDelivery), 0xff, 0xff, 0xff, 0xff, 1, 2, 3})
	f.Add([]byte{byte(typeRequest), 0x00, 0x10, 0x00, 0x01})
	f.Add([]byte{0, 0, 0, 0, 0})
	f.Add([]byte{6, 0, 0, 0, 0})
	f.Add([]byte{byte(typeRefusal), 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		consumed := 0
		for {
			typ, payload, err := readFrame(r)
			if err != nil {
				if payload != nil {
					t.Fatal("payload returned with an error")
				}
				return
			}
			if !typ.valid() || len(payload) > MaxFrameSize {
				t.Fatalf("frame type %d with %d bytes accepted", typ, len(payload))
			}
			var buf bytes.Buffer
			if err := writeFrame(&buf, typ, payload); err != nil {
				t.Fatalf("frame read does not write back: %v", err)
			}
			if end := consumed + buf.Len(); end > len(data) || !bytes.Equal(buf.Bytes(), data[consumed:end]) {
				t.Fatal("frame read is not the bytes it came from")
			}
			consumed += buf.Len()
			if m, err := decodeFrame(typ, payload); err == nil && m.msgType() != typ {
				t.Fatalf("%s frame decoded as a %s", typ, m.msgType())
			}
		}
	})
}
