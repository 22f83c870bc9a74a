//go:build ego

package ego

import (
	"bytes"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/edgelesssys/ego/attestation"
	"github.com/edgelesssys/ego/enclave"

	"github.com/teeup/teeup/tee"
)

// oeReportHeaderSize is the size of Open Enclave's oe_report_header_t
// (version 4, report type 4, report size 8) that precedes the SGX REPORT in
// the bytes GetLocalReport returns. The REPORT body starts with CPUSVN.
const oeReportHeaderSize = 16

// hwSealKeySize is the size of the key EGETKEY returns.
const hwSealKeySize = 16

// sealKeyInfo is the HKDF info that expands the hardware key.
const sealKeyInfo = "teeup ego seal key v1"

// platformAPI is the part of EGo's enclave package this backend calls.
// New uses EGo's functions; tests substitute fakes.
type platformAPI struct {
	getSelfReport     func() (attestation.Report, error)
	getLocalReport    func(reportData, targetReport []byte) ([]byte, error)
	verifyLocalReport func(report []byte) (attestation.Report, error)
	getRemoteReport   func(reportData []byte) ([]byte, error)
	getSealKey        func(keyRequest []byte) ([]byte, error)
}

func egoAPI() platformAPI {
	return platformAPI{
		getSelfReport:     enclave.GetSelfReport,
		getLocalReport:    enclave.GetLocalReport,
		verifyLocalReport: enclave.VerifyLocalReport,
		getRemoteReport:   enclave.GetRemoteReport,
		getSealKey:        enclave.GetSealKey,
	}
}

// Enclave is the running SGX enclave under EGo. It implements tee.Enclave.
// It is immutable after New and safe for concurrent use.
type Enclave struct {
	api      platformAPI
	identity tee.Identity
	cpuSVN   [cpuSVNSize]byte
}

var _ tee.Enclave = (*Enclave)(nil)

// New returns the running enclave. It fails unless the process runs inside
// an SGX enclave under EGo: outside one, EGo's seal-key calls return an
// all-zero key without an error, and sealing under it would expose every
// sealed secret.
func New() (*Enclave, error) { return newEnclave(egoAPI()) }

func newEnclave(api platformAPI) (*Enclave, error) {
	self, err := api.getSelfReport()
	if err != nil {
		return nil, fmt.Errorf("ego: not running inside an SGX enclave under EGo (self report failed: %w); "+
			"outside an enclave EGo's seal-key calls \"succeed\" with an all-zero key, so refusing to start "+
			"rather than seal secrets under a public key (build with ego-go, sign with 'ego sign', start with 'ego run' "+
			"without OE_SIMULATION; or use the default simulation build)", err)
	}
	id, err := identityFromReport(self)
	if err != nil {
		return nil, fmt.Errorf("ego: self report: %w", err)
	}
	// EGo derives seal keys at the CPUSVN of a fresh report's body; so do we.
	raw, err := api.getLocalReport(nil, nil)
	if err != nil {
		return nil, fmt.Errorf("ego: report for CPUSVN: %w", err)
	}
	if len(raw) < oeReportHeaderSize+cpuSVNSize {
		return nil, fmt.Errorf("ego: report for CPUSVN: %d bytes, too short to hold one", len(raw))
	}
	e := &Enclave{api: api, identity: id}
	copy(e.cpuSVN[:], raw[oeReportHeaderSize:])
	// Make sure the platform really derives keys before anything is sealed.
	if _, err := e.SealKey(tee.KeyRequest{Policy: tee.SealUnique}); err != nil {
		return nil, fmt.Errorf("ego: seal key check: %w", err)
	}
	return e, nil
}

// identityFromReport converts EGo's report identity.
func identityFromReport(r attestation.Report) (tee.Identity, error) {
	var id tee.Identity
	if len(r.UniqueID) != tee.MeasurementSize {
		return id, fmt.Errorf("report unique id is %d bytes, want %d", len(r.UniqueID), tee.MeasurementSize)
	}
	if len(r.SignerID) != tee.MeasurementSize {
		return id, fmt.Errorf("report signer id is %d bytes, want %d", len(r.SignerID), tee.MeasurementSize)
	}
	// SGX's ISVPRODID is 16 bits; Open Enclave carries it little-endian
	// in a 16-byte product id whose other bytes are zero.
	if len(r.ProductID) < 2 {
		return id, fmt.Errorf("report product id is %d bytes, want at least 2", len(r.ProductID))
	}
	if !isZero(r.ProductID[2:]) {
		return id, fmt.Errorf("report product id %x does not fit SGX's 16-bit ISVPRODID", r.ProductID)
	}
	if r.SecurityVersion > math.MaxUint16 {
		return id, fmt.Errorf("report security version %d does not fit SGX's 16-bit ISVSVN", r.SecurityVersion)
	}
	copy(id.UniqueID[:], r.UniqueID)
	copy(id.SignerID[:], r.SignerID)
	id.ProductID = binary.LittleEndian.Uint16(r.ProductID)
	id.SecurityVersion = uint16(r.SecurityVersion)
	id.Debug = r.Debug
	return id, nil
}

// reportFromEGo converts a verified EGo report; target is the MRENCLAVE a
// local report was verified for (zero for quotes).
func reportFromEGo(r attestation.Report, target tee.Measurement) (tee.Report, error) {
	id, err := identityFromReport(r)
	if err != nil {
		return tee.Report{}, err
	}
	if len(r.Data) > tee.ReportDataSize {
		return tee.Report{}, fmt.Errorf("report data is %d bytes, want at most %d", len(r.Data), tee.ReportDataSize)
	}
	out := tee.Report{Identity: id, Target: target}
	copy(out.Data[:], r.Data)
	return out, nil
}

// Identity implements tee.Enclave.
func (e *Enclave) Identity() tee.Identity { return e.identity }

// Simulated implements tee.Enclave: false, this is hardware.
func (e *Enclave) Simulated() bool { return false }

// TargetInfo implements tee.Enclave: a report made for no particular
// target, which EGo accepts as the target of GetLocalReport.
func (e *Enclave) TargetInfo() ([]byte, error) {
	ti, err := e.api.getLocalReport(nil, nil)
	if err != nil {
		return nil, fmt.Errorf("ego: target info: %w", err)
	}
	return ti, nil
}

// LocalReport implements tee.Enclave.
func (e *Enclave) LocalReport(targetInfo []byte, data tee.ReportData) ([]byte, error) {
	if len(targetInfo) == 0 {
		// EGo would make a report for no target, which nobody can verify.
		return nil, errors.New("ego: local report: empty target info")
	}
	r, err := e.api.getLocalReport(data[:], targetInfo)
	if err != nil {
		return nil, fmt.Errorf("ego: local report: %w", err)
	}
	return r, nil
}

// VerifyLocalReport implements tee.Enclave. The hardware only verifies
// reports made for this enclave, so the target is this enclave's MRENCLAVE.
func (e *Enclave) VerifyLocalReport(report []byte) (tee.Report, error) {
	if len(report) == 0 {
		return tee.Report{}, errors.New("ego: verify local report: empty report")
	}
	r, err := e.api.verifyLocalReport(report)
	if err != nil {
		return tee.Report{}, fmt.Errorf("ego: verify local report: %w", err)
	}
	out, err := reportFromEGo(r, e.identity.UniqueID)
	if err != nil {
		return tee.Report{}, fmt.Errorf("ego: verify local report: %w", err)
	}
	return out, nil
}

// Quote implements tee.Enclave: an SGX remote report (DCAP quote) over data.
func (e *Enclave) Quote(data tee.ReportData) ([]byte, error) {
	q, err := e.api.getRemoteReport(data[:])
	if err != nil {
		return nil, fmt.Errorf("ego: quote: %w", err)
	}
	return q, nil
}

// SealKey implements tee.Enclave with EGETKEY. Under tee.SealUnique the
// request's SVN is ignored (ISVSVN 0 is requested, which every enclave may
// derive), as the tee contract says; under tee.SealProduct it must not
// exceed the enclave's own. It refuses an all-zero key.
func (e *Enclave) SealKey(req tee.KeyRequest) ([]byte, error) {
	kr := keyRequest{
		KeyName:   keyNameSeal,
		CPUSVN:    e.cpuSVN,
		FlagsMask: sealKeyDefaultFlagMask,
		XFRMMask:  sealKeyDefaultXFRMMask,
		KeyID:     req.KeyID,
		MiscMask:  sealKeyDefaultMiscMask,
	}
	switch req.Policy {
	case tee.SealUnique:
		kr.KeyPolicy = keyPolicyMRENCLAVE
	case tee.SealProduct:
		if req.SecurityVersion > e.identity.SecurityVersion {
			return nil, fmt.Errorf("ego: seal key for SVN %d, enclave is SVN %d: %w", req.SecurityVersion, e.identity.SecurityVersion, tee.ErrHigherSVN)
		}
		kr.KeyPolicy = keyPolicyMRSIGNER
		kr.ISVSVN = req.SecurityVersion
	default:
		return nil, fmt.Errorf("ego: seal key: unknown policy %d", req.Policy)
	}
	hw, err := e.api.getSealKey(kr.marshal())
	if err != nil {
		return nil, fmt.Errorf("ego: seal key (%s): %w", req.Policy, err)
	}
	if len(hw) != hwSealKeySize {
		return nil, fmt.Errorf("ego: seal key (%s): platform returned %d bytes, want %d", req.Policy, len(hw), hwSealKeySize)
	}
	if isZero(hw) {
		return nil, fmt.Errorf("ego: seal key (%s): platform returned an all-zero key (not inside an SGX enclave?); refusing to seal under it", req.Policy)
	}
	k, err := hkdf.Key(sha256.New, hw, nil, sealKeyInfo, tee.SealKeySize)
	if err != nil {
		return nil, fmt.Errorf("ego: seal key: expand: %w", err)
	}
	return k, nil
}

func isZero(b []byte) bool { return bytes.Count(b, []byte{0}) == len(b) }
