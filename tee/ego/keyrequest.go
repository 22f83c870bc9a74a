//go:build ego

package ego

import "encoding/binary"

// SGX key request constants (Intel SDK common/inc/sgx_key.h).
const (
	keyNameSeal        = 4 // SGX_KEYSELECT_SEAL
	keyPolicyMRENCLAVE = 1 // SGX_KEYPOLICY_MRENCLAVE
	keyPolicyMRSIGNER  = 2 // SGX_KEYPOLICY_MRSIGNER
	keyRequestSize     = 512
	cpuSVNSize         = 16
)

// Open Enclave's default seal-key attribute masks (openenclave
// include/openenclave/bits/sgx/sgxtypes.h, mirrored in EGo's enclave/ert.h):
// every attribute bit is bound except those with no security implication,
// namely reserved flag bits 6..55, MODE64BIT, PROVISION_KEY and
// EINITTOKEN_KEY, and MISCSELECT bits 0..27. XFRM is not bound.
const (
	sgxFlagsMode64Bit      = 0x0000000000000004
	sgxFlagsProvisionKey   = 0x0000000000000010
	sgxFlagsEinitTokenKey  = 0x0000000000000020
	sgxFlagsNonSecurity    = 0x00FFFFFFFFFFFFC0 | sgxFlagsMode64Bit | sgxFlagsProvisionKey | sgxFlagsEinitTokenKey
	sgxMiscNonSecurity     = 0x0FFFFFFF
	sealKeyDefaultFlagMask = ^uint64(sgxFlagsNonSecurity)
	sealKeyDefaultMiscMask = ^uint32(sgxMiscNonSecurity)
	sealKeyDefaultXFRMMask = uint64(0)
)

// keyRequest is SGX's KEYREQUEST (sgx_key_request_t), the input of EGETKEY.
type keyRequest struct {
	KeyName   uint16
	KeyPolicy uint16
	ISVSVN    uint16
	CPUSVN    [cpuSVNSize]byte
	FlagsMask uint64
	XFRMMask  uint64
	KeyID     [32]byte
	MiscMask  uint32
}

// marshal encodes the request in the 512-byte little-endian layout of
// sgx_key_request_t:
//
//	key_name 2 | key_policy 2 | isv_svn 2 | reserved 2 | cpu_svn 16 |
//	attribute_mask (flags 8, xfrm 8) | key_id 32 | misc_mask 4 |
//	config_svn 2 | reserved 434
func (k keyRequest) marshal() []byte {
	b := make([]byte, 0, keyRequestSize)
	b = binary.LittleEndian.AppendUint16(b, k.KeyName)
	b = binary.LittleEndian.AppendUint16(b, k.KeyPolicy)
	b = binary.LittleEndian.AppendUint16(b, k.ISVSVN)
	b = binary.LittleEndian.AppendUint16(b, 0)
	b = append(b, k.CPUSVN[:]...)
	b = binary.LittleEndian.AppendUint64(b, k.FlagsMask)
	b = binary.LittleEndian.AppendUint64(b, k.XFRMMask)
	b = append(b, k.KeyID[:]...)
	b = binary.LittleEndian.AppendUint32(b, k.MiscMask)
	return b[:keyRequestSize]
}
