// Package ego implements tee.Enclave and tee.QuoteVerifier on real Intel SGX
// hardware through EGo (github.com/edgelesssys/ego). Everything except this
// file is behind the "ego" build tag, so an ordinary build sees an empty
// package and needs neither cgo nor the EGo toolchain.
//
// # Building and running
//
// Build the enclave program with EGo's Go wrapper and the tag, sign it, and
// run it through the EGo loader:
//
//	ego-go build -tags ego -o teeup-node ./cmd/teeup-node
//	ego sign enclave.json        # or: ego sign teeup-node
//	ego run teeup-node --data /data/node ...
//
// enclave.json names the executable ("exe"), the signer's RSA key ("key"),
// "productID" and "securityVersion" (the tee.Identity ProductID and
// SecurityVersion), and "debug". MRENCLAVE is measured by the hardware over
// the signed enclave; print it with "ego uniqueid teeup-node" and MRSIGNER
// with "ego signerid teeup-node". Those are the values release manifests and
// peering policies must carry, not the SHA-256 of the file that tee/sim uses.
//
// Inside the enclave, only environment variables whose names start with
// EDG_ are visible and the file system is an in-enclave memfs unless
// enclave.json mounts host directories ("mounts" with type "hostfs"); pass
// configuration as flags and mount the data directory.
//
// # Refusing to run outside an enclave
//
// Outside an EGo enclave (a plain binary, or "ego run" with OE_SIMULATION=1)
// EGo's report calls fail with OE_UNSUPPORTED but its seal-key calls
// "succeed" and return an all-zero key. Sealing application keys under a
// public all-zero key would silently hand them to anyone, so New refuses to
// return an enclave unless the self report succeeds, and SealKey refuses any
// all-zero key the platform returns. For development without SGX use the
// default build, which runs on tee/sim.
//
// # Seal keys
//
// SealKey builds the 512-byte SGX KEYREQUEST (sgx_key_request_t) itself:
// KEYNAME = SEAL, KEYPOLICY = MRENCLAVE (tee.SealUnique) or MRSIGNER
// (tee.SealProduct), the requested ISVSVN (0 under tee.SealUnique, whose keys
// must not depend on the SVN), the enclave's current CPUSVN, the caller's key
// id, and Open Enclave's default attribute masks. EGETKEY returns a 128-bit
// key, which is expanded to tee.SealKeySize bytes with HKDF-SHA256.
//
// Limitation: tee's sealed-blob header does not record the CPUSVN a key was
// derived under, so data sealed before a CPU microcode (TCB) update cannot
// be unsealed after it, because the key is always requested at the current
// CPUSVN. Move such data through a key handover before updating microcode.
package ego
