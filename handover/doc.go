// Package handover moves a node's application keys from one enclave to
// another on the same platform, by local attestation. It is the seed's
// "DCUpgrade" key exchange: the upgrade agent fetches the keys from the
// running (old) node, then hands them to the new node.
//
// Each exchange has two roles:
//
//   - the Provider holds the secret and challenges: the old node when the
//     agent fetches the keys, the agent when the new node fetches them;
//   - the Requester wants the secret and proves who it is: the agent, then
//     the new node.
//
// The exchange is four messages, each a distinct type with a strict binary
// encoding (magic "THND", version, type byte, then internal/wire fields):
//
//  1. Request   requester → provider: the requester's role.
//  2. Challenge provider → requester: a fresh nonce, chain id, height,
//     expiry, the provider's target info and role, and optionally its
//     network-signed enclave ID.
//  3. Answer    requester → provider: a local report for the provider whose
//     data is BindAnswer(nonce, chain id, requester role, one-time key), the
//     requester's fresh X25519 public key, its target info and its
//     network-signed enclave ID.
//  4. Delivery  provider → requester: the secret sealed with HPKE
//     (DHKEM(X25519), HKDF-SHA256, AES-256-GCM) to the one-time key, under
//     an info that binds the nonce, chain id and both parties' roles and
//     measurements, and a local report for the requester whose data is
//     BindDelivery(nonce, SHA-256(ciphertext)).
//
// Either side may instead send a Refusal carrying a human-readable reason.
//
// Provider and Requester are pure state machines: they do no I/O and take
// their clock from the configuration, so every step is testable. Serve and
// Fetch run one exchange over a net.Conn (a unix socket in production) with
// a simple framing: one type byte, a big-endian uint32 length, the payload.
package handover
