package tee_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"strings"
	"testing"

	"github.com/teeup/teeup/tee"
)

func mustMeasurement(t testing.TB, s string) tee.Measurement {
	t.Helper()
	m, err := tee.ParseMeasurement(s)
	if err != nil {
		t.Fatalf("ParseMeasurement(%q): %v", s, err)
	}
	return m
}

// seqMeasurement returns a measurement whose bytes are start, start+1, ...
func seqMeasurement(start byte) tee.Measurement {
	var m tee.Measurement
	for i := range m {
		m[i] = start + byte(i)
	}
	return m
}

func TestMeasurementHexRoundTrip(t *testing.T) {
	for _, m := range []tee.Measurement{{}, seqMeasurement(1), seqMeasurement(0xe0)} {
		s := m.String()
		if len(s) != 2*tee.MeasurementSize || strings.ToLower(s) != s {
			t.Fatalf("String() = %q: want 64 lower-case hex digits", s)
		}
		if got := mustMeasurement(t, s); got != m {
			t.Fatalf("ParseMeasurement(String()) = %x, want %x", got, m)
		}
		if got := mustMeasurement(t, strings.ToUpper(s)); got != m {
			t.Fatalf("ParseMeasurement(upper case) = %x, want %x", got, m)
		}
		if !strings.HasPrefix(s, m.Short()) || len(m.Short()) != 12 {
			t.Fatalf("Short() = %q, want the first 12 digits of %q", m.Short(), s)
		}
		if m.IsZero() != (m == tee.Measurement{}) {
			t.Fatalf("IsZero() = %t for %x", m.IsZero(), m)
		}

		text, err := m.MarshalText()
		if err != nil {
			t.Fatal(err)
		}
		var back tee.Measurement
		if err := back.UnmarshalText(text); err != nil || back != m {
			t.Fatalf("UnmarshalText(MarshalText()) = %x, %v; want %x", back, err, m)
		}

		j, err := json.Marshal(struct{ M tee.Measurement }{m})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(j, []byte(`"`+s+`"`)) {
			t.Fatalf("JSON %s does not carry the hex string %s", j, s)
		}
		var out struct{ M tee.Measurement }
		if err := json.Unmarshal(j, &out); err != nil || out.M != m {
			t.Fatalf("JSON round trip = %x, %v; want %x", out.M, err, m)
		}
	}
	if !(tee.Measurement{}).IsZero() || seqMeasurement(1).IsZero() {
		t.Fatal("IsZero is wrong")
	}
}

func TestParseMeasurementRejects(t *testing.T) {
	valid := seqMeasurement(1).String()
	cases := []struct {
		name, in, want string
	}{
		{"empty", "", "0 bytes, want 32"},
		{"not hex", "zz" + valid[2:], "not hex"},
		{"odd length", valid[:63], "not hex"},
		{"too short", valid[:62], "31 bytes, want 32"},
		{"too long", valid + "00", "33 bytes, want 32"},
		{"0x prefix", "0x" + valid[2:], "not hex"},
		{"surrounding space", " " + valid, "not hex"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, err := tee.ParseMeasurement(tc.in)
			if err == nil {
				t.Fatalf("ParseMeasurement(%q) = %x, want an error", tc.in, m)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not contain %q", err, tc.want)
			}
			var u tee.Measurement
			if err := u.UnmarshalText([]byte(tc.in)); err == nil {
				t.Fatalf("UnmarshalText(%q) succeeded", tc.in)
			}
			if !u.IsZero() {
				t.Fatalf("UnmarshalText(%q) failed but changed the value to %x", tc.in, u)
			}
		})
	}
}

func TestIdentityRoundTrip(t *testing.T) {
	ids := []tee.Identity{
		{},
		{UniqueID: seqMeasurement(1), SignerID: seqMeasurement(100), ProductID: 7, SecurityVersion: 3},
		{UniqueID: seqMeasurement(2), SignerID: seqMeasurement(200), ProductID: 0xffff, SecurityVersion: 0xfffe, Debug: true},
	}
	for _, id := range ids {
		b, err := id.AppendBinary([]byte("prefix"))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(b, []byte("prefix")) || len(b) != len("prefix")+tee.IdentitySize {
			t.Fatalf("AppendBinary: %d bytes, want prefix + %d", len(b), tee.IdentitySize)
		}
		enc := b[len("prefix"):]
		got, err := tee.DecodeIdentity(enc)
		if err != nil {
			t.Fatalf("DecodeIdentity: %v", err)
		}
		if got != id {
			t.Fatalf("round trip = %+v, want %+v", got, id)
		}
		// The layout is part of the report and quote formats: pin it.
		if !bytes.Equal(enc[:32], id.UniqueID[:]) || !bytes.Equal(enc[32:64], id.SignerID[:]) ||
			binary.BigEndian.Uint16(enc[64:]) != id.ProductID || binary.BigEndian.Uint16(enc[66:]) != id.SecurityVersion {
			t.Fatalf("encoding layout changed: %x", enc)
		}
		if strings.Contains(id.String(), "DEBUG") != id.Debug {
			t.Fatalf("String() = %q, Debug = %t", id.String(), id.Debug)
		}
	}
}

func TestDecodeIdentityRejects(t *testing.T) {
	good, err := tee.Identity{UniqueID: seqMeasurement(1), SignerID: seqMeasurement(2), ProductID: 1, SecurityVersion: 1}.AppendBinary(nil)
	if err != nil {
		t.Fatal(err)
	}
	withDebug := func(v byte) []byte {
		b := bytes.Clone(good)
		b[68] = v
		return b
	}
	cases := []struct {
		name string
		in   []byte
		want string
	}{
		{"empty", nil, "0 bytes, want 69"},
		{"one short", good[:len(good)-1], "68 bytes, want 69"},
		{"one long", append(bytes.Clone(good), 0), "70 bytes, want 69"},
		{"debug byte 2", withDebug(2), "debug flag 2 is neither 0 nor 1"},
		{"debug byte 0xff", withDebug(0xff), "debug flag 255 is neither 0 nor 1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id, err := tee.DecodeIdentity(tc.in)
			if err == nil {
				t.Fatalf("DecodeIdentity accepted %x as %+v", tc.in, id)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not contain %q", err, tc.want)
			}
		})
	}
}

func TestNewReportData(t *testing.T) {
	for _, n := range []int{0, 1, 32, 64} {
		in := bytes.Repeat([]byte{0xab}, n)
		d, err := tee.NewReportData(in)
		if err != nil {
			t.Fatalf("NewReportData(%d bytes): %v", n, err)
		}
		if !bytes.Equal(d[:n], in) || !bytes.Equal(d[n:], make([]byte, tee.ReportDataSize-n)) {
			t.Fatalf("NewReportData(%d bytes) = %x: want the input zero padded", n, d)
		}
	}
	for _, n := range []int{65, 128} {
		_, err := tee.NewReportData(make([]byte, n))
		if err == nil || !strings.Contains(err.Error(), "at most 64") {
			t.Fatalf("NewReportData(%d bytes) error = %v, want 'at most 64'", n, err)
		}
	}
}

func TestHashReportData(t *testing.T) {
	// Independent computation of the documented encoding: length-prefixed
	// (8-byte big-endian) domain, then each length-prefixed part.
	want := func(domain string, parts ...string) tee.ReportData {
		var b []byte
		b = binary.BigEndian.AppendUint64(b, uint64(len(domain)))
		b = append(b, domain...)
		for _, p := range parts {
			b = binary.BigEndian.AppendUint64(b, uint64(len(p)))
			b = append(b, p...)
		}
		var d tee.ReportData
		sum := sha256.Sum256(b)
		copy(d[:], sum[:])
		return d
	}
	bs := func(parts ...string) [][]byte {
		out := make([][]byte, len(parts))
		for i, p := range parts {
			out[i] = []byte(p)
		}
		return out
	}
	got := tee.HashReportData("dom", bs("ab", "c")...)
	if !got.Equal(want("dom", "ab", "c")) {
		t.Fatalf("HashReportData = %x, want %x", got, want("dom", "ab", "c"))
	}
	if !bytes.Equal(got[32:], make([]byte, 32)) {
		t.Fatalf("last 32 bytes are %x, want zero", got[32:])
	}

	// Inputs that a naive concatenation would confuse must differ.
	distinct := []struct {
		name   string
		domain string
		parts  []string
	}{
		{"ab|c", "dom", []string{"ab", "c"}},
		{"a|bc", "dom", []string{"a", "bc"}},
		{"abc", "dom", []string{"abc"}},
		{"abc|empty", "dom", []string{"abc", ""}},
		{"no parts", "dom", nil},
		{"other domain", "dom2", []string{"ab", "c"}},
		{"domain absorbs part", "doma", []string{"b", "c"}},
	}
	seen := map[tee.ReportData]string{}
	for _, c := range distinct {
		d := tee.HashReportData(c.domain, bs(c.parts...)...)
		if prev, ok := seen[d]; ok {
			t.Fatalf("HashReportData(%s) == HashReportData(%s)", c.name, prev)
		}
		seen[d] = c.name
	}
}

func TestReportDataEqual(t *testing.T) {
	a, _ := tee.NewReportData([]byte("x"))
	b, _ := tee.NewReportData([]byte("x"))
	c, _ := tee.NewReportData([]byte("y"))
	if !a.Equal(b) || a.Equal(c) {
		t.Fatal("ReportData.Equal is wrong")
	}
}

func TestSealPolicyString(t *testing.T) {
	for p, want := range map[tee.SealPolicy]string{tee.SealUnique: "unique", tee.SealProduct: "product", 0: "unknown(0)", 9: "unknown(9)"} {
		if got := p.String(); got != want {
			t.Errorf("SealPolicy(%d).String() = %q, want %q", uint8(p), got, want)
		}
	}
}

// FuzzDecodeIdentity checks that DecodeIdentity never panics and that every
// identity it accepts re-encodes to exactly the input bytes.
func FuzzDecodeIdentity(f *testing.F) {
	good, err := tee.Identity{UniqueID: seqMeasurement(1), SignerID: seqMeasurement(2), ProductID: 5, SecurityVersion: 9, Debug: true}.AppendBinary(nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(make([]byte, tee.IdentitySize))
	f.Add(good[:len(good)-1])
	f.Add(append(bytes.Clone(good), 1))
	bad := bytes.Clone(good)
	bad[68] = 7
	f.Add(bad)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		id, err := tee.DecodeIdentity(b)
		if err != nil {
			return
		}
		enc, err := id.AppendBinary(nil)
		if err != nil {
			t.Fatalf("AppendBinary of a decoded identity: %v", err)
		}
		if !bytes.Equal(enc, b) {
			t.Fatalf("DecodeIdentity(%x) re-encodes to %x", b, enc)
		}
	})
}
