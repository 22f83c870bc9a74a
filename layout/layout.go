// Package layout owns the on-disk layout of a teeup host. A node keeps
// everything in its data directory, the upgrade agent in its own
// directory:
//
//	DATA/                      node data directory (0700)
//	  ledger/                  Pebble ledger
//	  keys/<mrenclave>.sealed  application keys, sealed to one node MRENCLAVE
//	  admin.sock               admin API (default; node.json may move it)
//	  handover.sock            the node serves its keys to the agent (default)
//	  ingress.json             client ingress state
//	  incoming/                state received from peers before it is installed
//
//	AGENT/                     agent directory (0700)
//	  journal.json             the agent's journal
//	  agent-id.json            the agent's verified network-signed enclave ID
//	  releases/<version>/      staged release: release.json, teeup-node(.sig), teeup-distribute
//	  keys/<upgrade>.sealed    keys the agent holds during a handover
//	  snapshots/<name>/        ledger snapshots
//	  agent.sock               admin API
//	  handover.sock            the agent serves held keys to the new node
//	  node.pid, distribute.pid supervised processes
//	  node.log                 the node's output (default)
//
//	ROOT/flagday/              a flag-day coordinator's journals (package flagday)
//	  current                  the id of the newest flag day
//	  <id>/journal.json        one flag day's record
//	  <id>/events.jsonl        its event log
//	  <id>/report.json         its final report
//
//	PLATFORM/                  the host's simulated platform (package tee/sim)
//	  root.crt                 the attestation root certificate it pins
//
// Every program that reads or writes these paths (node, agent, devnet,
// snapshots, the CLI, tests) calls this package; none spells a name out.
// It depends on nothing heavier than package tee, so the agent links it
// without the node.
package layout

import (
	"path/filepath"
	"strings"

	"github.com/teeup/teeup/tee"
)

// Program binary names, as releases and devnets lay them out.
const (
	NodeProgram       = "teeup-node"
	AgentProgram      = "teeup-agent"
	DistributeProgram = "teeup-distribute"
)

// SigStructSuffix is appended to an enclave binary's path to name its
// signature structure (tee/sim's BINARY.sig; a release's URL + ".sig").
const SigStructSuffix = ".sig"

// SigStruct returns the signature structure path of an enclave binary.
func SigStruct(binary string) string { return binary + SigStructSuffix }

// sealedSuffix ends the name of every sealed key file.
const sealedSuffix = ".sealed"

// Node is a node's data directory.
type Node string

// Dir returns the directory itself.
func (d Node) Dir() string { return string(d) }

// Ledger is the Pebble ledger's directory.
func (d Node) Ledger() string { return filepath.Join(string(d), "ledger") }

// Keys holds the sealed key files, one per node MRENCLAVE that has held
// the keys. Old versions' files stay until the agent finalizes an upgrade.
func (d Node) Keys() string { return filepath.Join(string(d), "keys") }

// SealedKeys is the key file sealed to MRENCLAVE m.
func (d Node) SealedKeys(m tee.Measurement) string {
	return filepath.Join(d.Keys(), m.String()+sealedSuffix)
}

// SealedKeysMeasurement parses the name of a file in Keys: the MRENCLAVE
// its keys are sealed to, and whether the name is a sealed key file's.
func SealedKeysMeasurement(name string) (tee.Measurement, bool) {
	hexm, ok := strings.CutSuffix(name, sealedSuffix)
	if !ok {
		return tee.Measurement{}, false
	}
	m, err := tee.ParseMeasurement(hexm)
	return m, err == nil
}

// PendingIdentity is where a node waiting for the ledger key keeps its
// sealed identity key alone.
func (d Node) PendingIdentity(m tee.Measurement) string {
	return filepath.Join(d.Keys(), m.String()+".identity"+sealedSuffix)
}

// Outgoing holds the checkpoints this node is sending to peers.
func (d Node) Outgoing() string { return filepath.Join(string(d), "outgoing") }

// AdminSocket is the admin API's default unix socket.
func (d Node) AdminSocket() string { return filepath.Join(string(d), "admin.sock") }

// HandoverSocket is where the node serves its keys to the agent by default.
func (d Node) HandoverSocket() string { return filepath.Join(string(d), "handover.sock") }

// Ingress is the persisted client ingress state.
func (d Node) Ingress() string { return filepath.Join(string(d), "ingress.json") }

// Incoming is where state received from peers is assembled before the
// node installs it.
func (d Node) Incoming() string { return filepath.Join(string(d), "incoming") }

// Agent is an upgrade agent's directory.
type Agent string

// AgentOfSocket returns the agent directory whose admin socket is sock
// (the agent's socket always lives in its directory).
func AgentOfSocket(sock string) Agent { return Agent(filepath.Dir(sock)) }

// Dir returns the directory itself.
func (d Agent) Dir() string { return string(d) }

// Journal is the agent's journal.
func (d Agent) Journal() string { return filepath.Join(string(d), "journal.json") }

// FlagDayJournal is the agent's flag-day state (package agent/decide).
func (d Agent) FlagDayJournal() string { return filepath.Join(string(d), "flagday.json") }

// EnclaveIDCache holds the agent's verified network-signed enclave ID.
func (d Agent) EnclaveIDCache() string { return filepath.Join(string(d), "agent-id.json") }

// Releases holds the staged releases, one directory per version.
func (d Agent) Releases() string { return filepath.Join(string(d), "releases") }

// Release is the staged release of version v.
func (d Agent) Release(v string) Release { return Release(filepath.Join(d.Releases(), v)) }

// HeldKeysDir holds the keys the agent holds during handovers.
func (d Agent) HeldKeysDir() string { return filepath.Join(string(d), "keys") }

// HeldKeys is the key file the agent sealed for upgrade id.
func (d Agent) HeldKeys(id string) string { return filepath.Join(d.HeldKeysDir(), id+sealedSuffix) }

// ValidID reports whether id can name a file in an agent directory (an
// upgrade or self-upgrade id): non-empty, no separator, not a dot name.
func ValidID(id string) bool {
	return id != "" && id[0] != '.' && !strings.ContainsAny(id, "/\x00")
}

// HeldKeysID parses the name of a file in HeldKeysDir: the upgrade id it
// holds keys for, and whether the name is a held key file's.
func HeldKeysID(name string) (string, bool) {
	id, ok := strings.CutSuffix(name, sealedSuffix)
	return id, ok && ValidID(id)
}

// Agents holds the agent binaries staged for self-upgrades, one
// directory per release version.
func (d Agent) Agents() string { return filepath.Join(string(d), "agents") }

// AgentBinary is the staged teeup-agent of release version v; its
// signature structure is SigStruct(AgentBinary(v)).
func (d Agent) AgentBinary(v string) string {
	return filepath.Join(d.Agents(), v, AgentProgram)
}

// SuccessorDir holds the state an agent handed to its successor.
func (d Agent) SuccessorDir() string { return filepath.Join(string(d), "successor") }

// SuccessorState is the held state handed over in self-upgrade id,
// sealed to the new agent.
func (d Agent) SuccessorState(id string) string {
	return filepath.Join(d.SuccessorDir(), id+sealedSuffix)
}

// SuccessorSocket is where the old agent serves its held state to the new
// agent during a self-upgrade.
func (d Agent) SuccessorSocket() string { return filepath.Join(string(d), "successor.sock") }

// SuccessorLog is the new agent's output while it runs in handover mode.
func (d Agent) SuccessorLog() string { return filepath.Join(string(d), "successor.log") }

// Snapshots holds the agent's ledger snapshots.
func (d Agent) Snapshots() string { return filepath.Join(string(d), "snapshots") }

// Snapshot is the snapshot called name.
func (d Agent) Snapshot(name string) string { return filepath.Join(d.Snapshots(), name) }

// Socket is the agent's admin API socket.
func (d Agent) Socket() string { return filepath.Join(string(d), "agent.sock") }

// HandoverSocket is where the agent serves held keys to a new node.
func (d Agent) HandoverSocket() string { return filepath.Join(string(d), "handover.sock") }

// NodePID records the supervised node's pid.
func (d Agent) NodePID() string { return filepath.Join(string(d), "node.pid") }

// DistributePID records the supervised distribution process's pid.
func (d Agent) DistributePID() string { return filepath.Join(string(d), "distribute.pid") }

// NodeLog is where the node's output goes unless configured otherwise.
func (d Agent) NodeLog() string { return filepath.Join(string(d), "node.log") }

// RootCertFile names the attestation root certificate in a platform
// directory, and in the simulated root CA's directory beside root.key
// (tee/sim uses this name).
const RootCertFile = "root.crt"

// Platform is a host's platform directory (tee/sim's; an EGo host has
// none, and its quotes chain to Intel's root instead).
type Platform string

// Dir returns the directory itself.
func (p Platform) Dir() string { return string(p) }

// RootCert is the attestation root certificate the platform pins, the one
// to verify the quotes of the network's other enclaves against.
func (p Platform) RootCert() string { return filepath.Join(string(p), RootCertFile) }

// FlagDays is where a flag-day coordinator ('teeup flagday', package
// flagday) keeps its journals, one directory per flag day.
type FlagDays string

// FlagDaysUnder returns the flag-day journals' directory under root
// (root/flagday).
func FlagDaysUnder(root string) FlagDays { return FlagDays(filepath.Join(root, "flagday")) }

// Dir returns the directory itself.
func (d FlagDays) Dir() string { return string(d) }

// Current holds the id of the newest flag day.
func (d FlagDays) Current() string { return filepath.Join(string(d), "current") }

// FlagDay is the journal directory of flag day id.
func (d FlagDays) FlagDay(id string) FlagDay { return FlagDay(filepath.Join(string(d), id)) }

// FlagDay is one flag day's journal directory.
type FlagDay string

// Dir returns the directory itself.
func (f FlagDay) Dir() string { return string(f) }

// Journal is the flag day's record.
func (f FlagDay) Journal() string { return filepath.Join(string(f), "journal.json") }

// Report is the flag day's final report.
func (f FlagDay) Report() string { return filepath.Join(string(f), "report.json") }

// Events is the flag day's append-only event log (JSON lines).
func (f FlagDay) Events() string { return filepath.Join(string(f), "events.jsonl") }

// Release is a release's directory of binaries: a staged release in an
// agent directory, or a devnet's releases/<version>.
type Release string

// Dir returns the directory itself.
func (r Release) Dir() string { return string(r) }

// Manifest is the signed release manifest.
func (r Release) Manifest() string { return filepath.Join(string(r), "release.json") }

// NodeBinary is the release's teeup-node; its signature structure is
// SigStruct(NodeBinary()).
func (r Release) NodeBinary() string { return filepath.Join(string(r), NodeProgram) }

// AgentBinary is the release's teeup-agent.
func (r Release) AgentBinary() string { return filepath.Join(string(r), AgentProgram) }

// DistributeBinary is the release's teeup-distribute, when it ships one.
func (r Release) DistributeBinary() string { return filepath.Join(string(r), DistributeProgram) }
