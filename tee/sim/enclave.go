package sim

import (
	"crypto/ecdsa"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"fmt"

	"github.com/teeup/teeup/tee"
)

// Local report layout (big-endian):
//
//	magic "TRPT" | version 1 | identity 69 | report data 64 |
//	target MRENCLAVE 32 | HMAC-SHA256 32
//
// The MAC key is the target's report key, derived from the platform secret
// and the target's MRENCLAVE and attributes (as SGX's EREPORT derives it
// from TARGETINFO), so only the target, with the same DEBUG attribute, on
// the same platform can check it.
const (
	reportMagic   = "TRPT"
	reportVersion = 1
	reportBodyLen = 4 + 1 + tee.IdentitySize + tee.ReportDataSize + tee.MeasurementSize
	reportLen     = reportBodyLen + sha256.Size
)

// Enclave is an enclave loaded on a simulated platform. It implements
// tee.Enclave.
type Enclave struct {
	platform *Platform
	identity tee.Identity
}

var _ tee.Enclave = (*Enclave)(nil)

// NewEnclave returns an enclave with the given identity on p. It performs
// no checks: programs use Load or LoadSelf, which verify the binary's
// signature structure; tests use NewEnclave to model arbitrary enclaves.
func (p *Platform) NewEnclave(id tee.Identity) *Enclave {
	return &Enclave{platform: p, identity: id}
}

// LoadOptions control how an enclave binary is loaded.
type LoadOptions struct {
	// Debug loads the binary even without a valid signature structure and
	// marks its identity Debug. Production policies reject debug identities.
	Debug bool
}

// Load measures binaryPath and loads it as an enclave. Without a valid
// signature structure matching the binary it refuses, unless opts.Debug.
func (p *Platform) Load(binaryPath string, opts LoadOptions) (*Enclave, error) {
	id, _, err := VerifyBinary(binaryPath)
	if err != nil {
		if !opts.Debug || id.UniqueID.IsZero() {
			return nil, fmt.Errorf("load enclave: %w", err)
		}
		// Debug mode: run unsigned, with the binary's own measurement.
		id = tee.Identity{UniqueID: id.UniqueID}
	}
	id.Debug = opts.Debug
	return &Enclave{platform: p, identity: id}, nil
}

// Identity implements tee.Enclave.
func (e *Enclave) Identity() tee.Identity { return e.identity }

// Platform returns the platform the enclave runs on.
func (e *Enclave) Platform() *Platform { return e.platform }

// Simulated implements tee.Enclave: always true.
func (e *Enclave) Simulated() bool { return true }

func (p *Platform) reportKey(t Target) ([]byte, error) {
	info := make([]byte, 0, tee.MeasurementSize+1)
	info = append(info, t.MREnclave[:]...)
	info = append(info, t.attributes())
	k, err := hkdf.Key(sha256.New, p.secret, []byte("teeup-sim report key v2"), string(info), 32)
	if err != nil {
		return nil, fmt.Errorf("report key: %w", err)
	}
	return k, nil
}

// Target info layout: magic "TTGT" | version 2 | MRENCLAVE 32 |
// attributes 1 (bit 0: DEBUG; the other bits must be zero).
const (
	targetMagic   = "TTGT"
	targetVersion = 2
	targetLen     = 4 + 1 + tee.MeasurementSize + 1
	attrDebug     = 0x01
)

// Target names the enclave a local report is made for: what SGX's
// TARGETINFO carries that the simulation uses.
type Target struct {
	// MREnclave is the target enclave's measurement.
	MREnclave tee.Measurement
	// Debug is the target's DEBUG attribute. A report made for a
	// production enclave does not verify in a debug enclave of the same
	// measurement, nor the other way round.
	Debug bool
}

func (t Target) attributes() byte {
	if t.Debug {
		return attrDebug
	}
	return 0
}

// TargetInfo implements tee.Enclave.
func (e *Enclave) TargetInfo() ([]byte, error) {
	return TargetInfoFor(e.target()), nil
}

// target is the enclave as a report target.
func (e *Enclave) target() Target {
	return Target{MREnclave: e.identity.UniqueID, Debug: e.identity.Debug}
}

// TargetInfoFor encodes the target info of the enclave t names.
func TargetInfoFor(t Target) []byte {
	b := make([]byte, 0, targetLen)
	b = append(b, targetMagic...)
	b = append(b, targetVersion)
	b = append(b, t.MREnclave[:]...)
	return append(b, t.attributes())
}

// DecodeTargetInfo decodes target info made by TargetInfo.
func DecodeTargetInfo(b []byte) (Target, error) {
	if len(b) != targetLen {
		return Target{}, fmt.Errorf("target info: %d bytes, want %d", len(b), targetLen)
	}
	if string(b[:4]) != targetMagic {
		return Target{}, fmt.Errorf("target info: bad magic %q", b[:4])
	}
	if b[4] != targetVersion {
		return Target{}, fmt.Errorf("target info: unsupported version %d", b[4])
	}
	attr := b[targetLen-1]
	if attr&^attrDebug != 0 {
		return Target{}, fmt.Errorf("target info: unknown attribute bits %#02x", attr&^attrDebug)
	}
	var t Target
	copy(t.MREnclave[:], b[5:5+tee.MeasurementSize])
	t.Debug = attr&attrDebug != 0
	return t, nil
}

// LocalReport implements tee.Enclave.
func (e *Enclave) LocalReport(targetInfo []byte, data tee.ReportData) ([]byte, error) {
	target, err := DecodeTargetInfo(targetInfo)
	if err != nil {
		return nil, fmt.Errorf("local report: %w", err)
	}
	b := make([]byte, 0, reportLen)
	b = append(b, reportMagic...)
	b = append(b, reportVersion)
	b, err = e.identity.AppendBinary(b)
	if err != nil {
		return nil, fmt.Errorf("local report: %w", err)
	}
	b = append(b, data[:]...)
	b = append(b, target.MREnclave[:]...)
	key, err := e.platform.reportKey(target)
	if err != nil {
		return nil, fmt.Errorf("local report: %w", err)
	}
	mac := hmac.New(sha256.New, key)
	mac.Write(b)
	return mac.Sum(b), nil
}

// DecodeReport decodes a local report without verifying its MAC. Only for
// inspection and fuzzing; use Enclave.VerifyLocalReport to trust one.
func DecodeReport(raw []byte) (tee.Report, error) {
	var r tee.Report
	if len(raw) != reportLen {
		return r, fmt.Errorf("local report: %d bytes, want %d", len(raw), reportLen)
	}
	if string(raw[:4]) != reportMagic {
		return r, fmt.Errorf("local report: bad magic %q", raw[:4])
	}
	if raw[4] != reportVersion {
		return r, fmt.Errorf("local report: unsupported version %d", raw[4])
	}
	off := 5
	id, err := tee.DecodeIdentity(raw[off : off+tee.IdentitySize])
	if err != nil {
		return r, fmt.Errorf("local report: %w", err)
	}
	off += tee.IdentitySize
	r.Identity = id
	copy(r.Data[:], raw[off:off+tee.ReportDataSize])
	off += tee.ReportDataSize
	copy(r.Target[:], raw[off:off+tee.MeasurementSize])
	return r, nil
}

// VerifyLocalReport implements tee.Enclave.
func (e *Enclave) VerifyLocalReport(raw []byte) (tee.Report, error) {
	r, err := DecodeReport(raw)
	if err != nil {
		return tee.Report{}, fmt.Errorf("verify %w", err)
	}
	if r.Target != e.identity.UniqueID {
		return tee.Report{}, fmt.Errorf("verify local report: made for enclave %s, this enclave is %s", r.Target, e.identity.UniqueID)
	}
	key, err := e.platform.reportKey(e.target())
	if err != nil {
		return tee.Report{}, fmt.Errorf("verify local report: %w", err)
	}
	mac := hmac.New(sha256.New, key)
	mac.Write(raw[:reportBodyLen])
	if !hmac.Equal(mac.Sum(nil), raw[reportBodyLen:]) {
		return tee.Report{}, fmt.Errorf("verify local report from %s: MAC does not verify (made on another platform, for this measurement with another DEBUG attribute, or tampered)", r.Identity.UniqueID.Short())
	}
	return r, nil
}

// SealKey implements tee.Enclave. Keys derive from the platform secret and
// the policy's identity fields, including the Debug attribute, as SGX's
// EGETKEY does.
func (e *Enclave) SealKey(req tee.KeyRequest) ([]byte, error) {
	id := e.identity
	info := make([]byte, 0, 128)
	info = append(info, byte(req.Policy))
	switch req.Policy {
	case tee.SealUnique:
		info = append(info, id.UniqueID[:]...)
	case tee.SealProduct:
		if req.SecurityVersion > id.SecurityVersion {
			return nil, fmt.Errorf("seal key for SVN %d, enclave is SVN %d: %w", req.SecurityVersion, id.SecurityVersion, tee.ErrHigherSVN)
		}
		info = append(info, id.SignerID[:]...)
		info = binary.BigEndian.AppendUint16(info, id.ProductID)
		info = binary.BigEndian.AppendUint16(info, req.SecurityVersion)
	default:
		return nil, fmt.Errorf("seal key: unknown policy %d", req.Policy)
	}
	if id.Debug {
		info = append(info, 1)
	} else {
		info = append(info, 0)
	}
	info = append(info, req.KeyID[:]...)
	k, err := hkdf.Key(sha256.New, e.platform.secret, []byte("teeup-sim seal key v1"), string(info), tee.SealKeySize)
	if err != nil {
		return nil, fmt.Errorf("seal key: %w", err)
	}
	return k, nil
}

// Quote implements tee.Enclave: the report body signed by the platform's
// attestation key, carrying the attestation certificate.
func (e *Enclave) Quote(data tee.ReportData) ([]byte, error) {
	return e.platform.quote(e.identity, data)
}

func (p *Platform) quote(id tee.Identity, data tee.ReportData) ([]byte, error) {
	cert := p.attCert.Raw
	b := make([]byte, 0, quoteFixedLen+len(cert)+80)
	b = append(b, quoteMagic...)
	b = append(b, quoteVersion)
	b, err := id.AppendBinary(b)
	if err != nil {
		return nil, fmt.Errorf("quote: %w", err)
	}
	b = append(b, data[:]...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(cert)))
	b = append(b, cert...)
	digest := sha256.Sum256(b)
	sig, err := ecdsa.SignASN1(rand.Reader, p.attKey, digest[:])
	if err != nil {
		return nil, fmt.Errorf("quote: sign: %w", err)
	}
	b = binary.BigEndian.AppendUint16(b, uint16(len(sig)))
	return append(b, sig...), nil
}
