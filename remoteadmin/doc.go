// Package remoteadmin is operator access to a host's admin APIs (the
// node's and the agent's) over TCP with mutual TLS.
//
// The server is an enclave and proves it: its TLS certificate carries a
// quote (package attest) whose report data binds the certificate's key and
// Binding(role, chain id, node id), so a client that verified the quote
// against its pinned root and expected measurements knows it reached a
// genuine enclave of that measurement that serves role for that node of
// that chain — before it sends anything.
//
// The client is an operator and proves it with standard TLS 1.3 client
// authentication: it presents a self-signed X.509 certificate whose
// public key is the operator's ed25519 key, and TLS's CertificateVerify is
// that key's signature over the handshake transcript. Only the public key
// is used; it is authorised per request against the host's Policy: its own
// operators read and write, readers (the Node Operators Group in force and
// the operators of the network's members) only read. Session resumption is
// off, so every connection proves both sides afresh.
//
// The unix sockets stay for local use; CheckNodeID guards them (and the
// TCP listener) against a client that addressed another node.
package remoteadmin
