package ledger

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"slices"

	"github.com/teeup/teeup/internal/wire"
	"github.com/teeup/teeup/release"
)

// Membership
//
// The genesis is only the initial membership. Nodes join and leave, and the
// Node Operators Group (NOG) and the Key Management Group (KMG) change,
// through governance transactions that the current NOG votes on to its
// current quorum:
//
//   - TxAddNode: a new member (id, name, peer and client addresses, its
//     operator's key, the node identity key it must register with).
//   - TxRemoveNode: a member leaves; its id is never reused.
//   - TxRekeyNode: a member's node identity key is replaced (the node lost
//     its sealed keys and came back with a new one). Its operator's
//     signature alone suffices; NOG members may also vote it to quorum.
//   - TxChangeGroup: the NOG or the KMG is replaced (keys and threshold).
//     A KMG change must also carry the signatures of the current KMG's
//     threshold over the new group, so that anyone holding the genesis can
//     verify the chain of KMG groups.
//
// Effects happen when the block committing the vote that completes the
// quorum is applied, on every node at the same height. Raft configuration
// changes follow membership: the leader proposes them, and each node
// applies one only if it agrees with the members on chain at that entry.
//
// A member has at most one pending vote of each membership kind: a new one
// replaces it. When the NOG changes, every pending vote is dropped (of
// every kind, releases included): a vote counts only under the group that
// cast it, and a former member's vote is refused from then on.
//
// Storage, under GovernancePrefix:
//
//	g/ms         membership state: the current groups (absent: the
//	             genesis's), pending votes, counters
//	g/m/<id:8>   member record (absent for every id: the genesis nodes)
//	g/c/<n:8>    membership change record, in order

// Membership transaction limits.
const (
	maxNodeNameLen = 64
	maxAddrLen     = 255
	// MaxGroupKeys bounds a group's size.
	MaxGroupKeys = 64
)

// GroupKind names a governance group.
type GroupKind uint8

// Groups.
const (
	GroupNOG GroupKind = 1
	GroupKMG GroupKind = 2
)

// String names the group.
func (k GroupKind) String() string {
	switch k {
	case GroupNOG:
		return "nog"
	case GroupKMG:
		return "kmg"
	default:
		return fmt.Sprintf("group %d", uint8(k))
	}
}

// MemberSpec is the payload of a TxAddNode: who joins.
type MemberSpec struct {
	ID         uint64
	Name       string
	PeerAddr   string
	ClientAddr string
	// Operator is the public key of the member's operator (zero: none; then
	// only the NOG can re-key the node).
	Operator Address
	// NodeKey is the node identity key the new node must register with
	// (zero: the first key it registers is taken).
	NodeKey Address
}

// NodeRemoval is the payload of a TxRemoveNode.
type NodeRemoval struct{ ID uint64 }

// NodeRekey is the payload of a TxRekeyNode.
type NodeRekey struct {
	ID  uint64
	Key Address
}

// GroupChange is the payload of a TxChangeGroup: the new keys and
// threshold of a group. A KMG change carries KMGSignatures: the current
// KMG's threshold signing GroupChangeSigningBytes.
type GroupChange struct {
	Group         GroupKind
	Keys          []Address
	Threshold     int
	KMGSignatures []release.Signature
}

// Member is a member of the network as the chain records it.
type Member struct {
	MemberSpec
	// AddedAt is the height of the block that added it (0: genesis).
	AddedAt uint64
	// RemovedAt is the height of the block that removed it (0: a member).
	RemovedAt uint64
}

// Active reports whether the member has not been removed.
func (m Member) Active() bool { return m.RemovedAt == 0 }

// MembershipChange records one change of membership or of a group.
type MembershipChange struct {
	Height    uint64
	Kind      TxKind
	Subject   []byte // the payload that took effect
	Approvers []Address
}

// membershipVote is a member's pending vote.
type membershipVote struct {
	Voter Address
	Kind  TxKind
	Hash  Hash // SHA-256 of the payload
}

// storedGroup is a group in force.
type storedGroup struct {
	Keys      []Address
	Threshold int
	Since     uint64
}

// membershipState is the g/ms record.
type membershipState struct {
	nog, kmg *storedGroup // nil: the genesis's
	votes    []membershipVote
	changes  uint64
}

var (
	keyMembershipState = []byte(GovernancePrefix + "ms")
)

const (
	prefixMember       = GovernancePrefix + "m/"
	prefixMemberChange = GovernancePrefix + "c/"
	membershipVersion  = 1
)

func memberKey(id uint64) []byte      { return heightKey(prefixMember, id) }
func memberChangeKey(n uint64) []byte { return heightKey(prefixMemberChange, n) }
func payloadHash(payload []byte) Hash { return sha256.Sum256(payload) }
func (g *storedGroup) group() release.Group {
	keys := make([]string, len(g.Keys))
	for i, k := range g.Keys {
		keys[i] = k.String()
	}
	return release.Group{Keys: keys, Threshold: g.Threshold}
}

// EncodeMemberSpec encodes a TxAddNode payload.
func EncodeMemberSpec(m MemberSpec) []byte {
	e := wire.NewEncoder(128)
	e.U64(m.ID)
	e.String(m.Name)
	e.String(m.PeerAddr)
	e.String(m.ClientAddr)
	e.Fixed(m.Operator[:])
	e.Fixed(m.NodeKey[:])
	return e.Bytes()
}

// DecodeMemberSpec decodes and checks a TxAddNode payload.
func DecodeMemberSpec(b []byte) (MemberSpec, error) {
	var m MemberSpec
	d := wire.NewDecoder("member", b)
	m.ID = d.U64("id")
	m.Name = d.String("name", maxNodeNameLen)
	m.PeerAddr = d.String("peer address", maxAddrLen)
	m.ClientAddr = d.String("client address", maxAddrLen)
	d.Fixed("operator", m.Operator[:])
	d.Fixed("node key", m.NodeKey[:])
	if err := d.Finish(); err != nil {
		return MemberSpec{}, err
	}
	if m.ID == 0 {
		return MemberSpec{}, fmt.Errorf("decode member: id must be at least 1")
	}
	for _, a := range []struct{ field, addr string }{{"peer address", m.PeerAddr}, {"client address", m.ClientAddr}} {
		if host, port, err := net.SplitHostPort(a.addr); err != nil || host == "" || port == "" {
			return MemberSpec{}, fmt.Errorf("decode member: %s %q is not host:port", a.field, a.addr)
		}
	}
	if m.PeerAddr == m.ClientAddr {
		return MemberSpec{}, fmt.Errorf("decode member: peer and client address are both %s", m.PeerAddr)
	}
	return m, nil
}

// EncodeNodeRemoval encodes a TxRemoveNode payload.
func EncodeNodeRemoval(r NodeRemoval) []byte { return u64(r.ID) }

// DecodeNodeRemoval decodes a TxRemoveNode payload.
func DecodeNodeRemoval(b []byte) (NodeRemoval, error) {
	d := wire.NewDecoder("node removal", b)
	r := NodeRemoval{ID: d.U64("id")}
	if err := d.Finish(); err != nil {
		return NodeRemoval{}, err
	}
	if r.ID == 0 {
		return NodeRemoval{}, fmt.Errorf("decode node removal: id must be at least 1")
	}
	return r, nil
}

// EncodeNodeRekey encodes a TxRekeyNode payload.
func EncodeNodeRekey(r NodeRekey) []byte {
	e := wire.NewEncoder(40)
	e.U64(r.ID)
	e.Fixed(r.Key[:])
	return e.Bytes()
}

// DecodeNodeRekey decodes a TxRekeyNode payload.
func DecodeNodeRekey(b []byte) (NodeRekey, error) {
	var r NodeRekey
	d := wire.NewDecoder("node rekey", b)
	r.ID = d.U64("id")
	d.Fixed("key", r.Key[:])
	if err := d.Finish(); err != nil {
		return NodeRekey{}, err
	}
	if r.ID == 0 || r.Key.IsZero() {
		return NodeRekey{}, fmt.Errorf("decode node rekey: id and key are required")
	}
	return r, nil
}

// GroupChangeSigningBytes is what the current KMG signs to approve a new
// group on chain chainID (bound to the chain and to the number of changes
// before it, so a signature cannot be replayed for another change).
func GroupChangeSigningBytes(chainID string, seq uint64, c GroupChange) []byte {
	e := wire.NewEncoder(64 + 32*len(c.Keys))
	e.String("teeup group change v1")
	e.String(chainID)
	e.U64(seq)
	e.U8(uint8(c.Group))
	e.U32(uint32(len(c.Keys)))
	for _, k := range c.Keys {
		e.Fixed(k[:])
	}
	e.U32(uint32(c.Threshold))
	return e.Bytes()
}

// EncodeGroupChange encodes a TxChangeGroup payload.
func EncodeGroupChange(c GroupChange) []byte {
	e := wire.NewEncoder(64 + 32*len(c.Keys) + 96*len(c.KMGSignatures))
	e.U8(uint8(c.Group))
	encodeAddresses(e, c.Keys)
	e.U32(uint32(c.Threshold))
	e.U32(uint32(len(c.KMGSignatures)))
	for _, s := range c.KMGSignatures {
		pub, _ := hex.DecodeString(s.Key)
		sig, _ := hex.DecodeString(s.Sig)
		e.Var(pub)
		e.Var(sig)
	}
	return e.Bytes()
}

// DecodeGroupChange decodes and checks a TxChangeGroup payload.
func DecodeGroupChange(b []byte) (GroupChange, error) {
	var c GroupChange
	d := wire.NewDecoder("group change", b)
	c.Group = GroupKind(d.U8("group"))
	c.Keys = decodeAddresses(d, "key")
	c.Threshold = int(d.U32("threshold"))
	n := d.Count("signatures", min(release.MaxSignatures, d.Remaining()/8))
	for i := 0; i < n && d.Err() == nil; i++ {
		pub := d.Var("signature key", ed25519.PublicKeySize)
		sig := d.Var("signature", ed25519.SignatureSize)
		c.KMGSignatures = append(c.KMGSignatures, release.Signature{Key: hex.EncodeToString(pub), Sig: hex.EncodeToString(sig)})
	}
	if err := d.Finish(); err != nil {
		return GroupChange{}, err
	}
	switch c.Group {
	case GroupNOG, GroupKMG:
	default:
		return GroupChange{}, fmt.Errorf("decode group change: unknown group %d", c.Group)
	}
	if len(c.Keys) == 0 || len(c.Keys) > MaxGroupKeys {
		return GroupChange{}, fmt.Errorf("decode group change: %d keys, want 1 to %d", len(c.Keys), MaxGroupKeys)
	}
	seen := map[Address]bool{}
	for _, k := range c.Keys {
		if k.IsZero() || seen[k] {
			return GroupChange{}, fmt.Errorf("decode group change: key %s is zero or appears twice", k)
		}
		seen[k] = true
	}
	if c.Threshold < 1 || c.Threshold > len(c.Keys) {
		return GroupChange{}, fmt.Errorf("decode group change: threshold %d of %d keys", c.Threshold, len(c.Keys))
	}
	if c.Group == GroupNOG && len(c.KMGSignatures) > 0 {
		return GroupChange{}, fmt.Errorf("decode group change: a NOG change carries no KMG signatures")
	}
	return c, nil
}

func encodeMember(m Member) []byte {
	e := wire.NewEncoder(160)
	e.U8(membershipVersion)
	e.Fixed(EncodeMemberSpec(m.MemberSpec))
	e.U64(m.AddedAt)
	e.U64(m.RemovedAt)
	return e.Bytes()
}

func decodeMember(b []byte) (Member, error) {
	if len(b) < 1+16 || b[0] != membershipVersion {
		return Member{}, fmt.Errorf("decode member record: bad length or version")
	}
	spec, err := DecodeMemberSpec(b[1 : len(b)-16])
	if err != nil {
		return Member{}, err
	}
	d := wire.NewDecoder("member record", b[len(b)-16:])
	m := Member{MemberSpec: spec, AddedAt: d.U64("added at"), RemovedAt: d.U64("removed at")}
	return m, d.Finish()
}

func encodeStoredGroup(e *wire.Encoder, g *storedGroup) {
	e.Bool(g != nil)
	if g == nil {
		return
	}
	encodeAddresses(e, g.Keys)
	e.U32(uint32(g.Threshold))
	e.U64(g.Since)
}

func decodeStoredGroup(d *wire.Decoder) *storedGroup {
	if !d.Bool("group present") {
		return nil
	}
	g := &storedGroup{Keys: decodeAddresses(d, "group key")}
	g.Threshold = int(d.U32("threshold"))
	g.Since = d.U64("since")
	return g
}

func (s *membershipState) encode() []byte {
	e := wire.NewEncoder(128)
	e.U8(membershipVersion)
	encodeStoredGroup(e, s.nog)
	encodeStoredGroup(e, s.kmg)
	e.U64(s.changes)
	e.U32(uint32(len(s.votes)))
	for _, v := range s.votes {
		e.Fixed(v.Voter[:])
		e.U8(uint8(v.Kind))
		e.Fixed(v.Hash[:])
	}
	return e.Bytes()
}

func decodeMembershipState(b []byte) (*membershipState, error) {
	s := &membershipState{}
	d := wire.NewDecoder("membership state", b)
	if v := d.U8("version"); d.Err() == nil && v != membershipVersion {
		return nil, fmt.Errorf("decode membership state: version %d, this binary reads %d", v, membershipVersion)
	}
	s.nog = decodeStoredGroup(d)
	s.kmg = decodeStoredGroup(d)
	s.changes = d.U64("changes")
	n := d.Count("votes", d.Remaining()/65)
	for i := 0; i < n && d.Err() == nil; i++ {
		var v membershipVote
		d.Fixed("voter", v.Voter[:])
		v.Kind = TxKind(d.U8("kind"))
		d.Fixed("hash", v.Hash[:])
		s.votes = append(s.votes, v)
	}
	if err := d.Finish(); err != nil {
		return nil, err
	}
	for _, g := range []*storedGroup{s.nog, s.kmg} {
		if g != nil && (g.Threshold < 1 || g.Threshold > len(g.Keys)) {
			return nil, fmt.Errorf("decode membership state: threshold %d of %d keys", g.Threshold, len(g.Keys))
		}
	}
	return s, nil
}

func encodeMembershipChange(c MembershipChange) []byte {
	e := wire.NewEncoder(64 + len(c.Subject))
	e.U64(c.Height)
	e.U8(uint8(c.Kind))
	e.Var(c.Subject)
	encodeAddresses(e, c.Approvers)
	return e.Bytes()
}

func decodeMembershipChange(b []byte) (MembershipChange, error) {
	d := wire.NewDecoder("membership change", b)
	c := MembershipChange{Height: d.U64("height"), Kind: TxKind(d.U8("kind"))}
	c.Subject = d.Var("subject", MaxGovernancePayloadSize)
	c.Approvers = decodeAddresses(d, "approver")
	return c, d.Finish()
}

// readMembershipState reads g/ms; absent, the genesis groups and no votes.
func readMembershipState(r reader) (*membershipState, error) {
	v, ok, err := getFrom(r, keyMembershipState)
	if err != nil || !ok {
		return &membershipState{}, err
	}
	s, err := decodeMembershipState(v)
	if err != nil {
		return nil, fmt.Errorf("corrupt membership state: %w", err)
	}
	return s, nil
}

// readMembers returns every member record by id; with none stored, the
// genesis nodes.
func readMembers(r iterable, g *Genesis) ([]Member, error) {
	var out []Member
	err := scan(r, []byte(prefixMember), false, func(k, v []byte) (bool, error) {
		m, err := decodeMember(v)
		if err != nil {
			return false, fmt.Errorf("corrupt member record %x: %w", k, err)
		}
		out = append(out, m)
		return true, nil
	})
	if err != nil {
		return nil, err
	}
	if len(out) > 0 {
		return out, nil
	}
	return genesisMembers(g), nil
}

func genesisMembers(g *Genesis) []Member {
	out := make([]Member, 0, len(g.Nodes))
	for _, n := range g.Nodes {
		out = append(out, Member{MemberSpec: MemberSpec{
			ID: n.ID, Name: n.Name, PeerAddr: n.PeerAddr, ClientAddr: n.ClientAddr,
			Operator: n.OperatorAddress(), NodeKey: n.NodeKeyAddress(),
		}})
	}
	return out
}

// membership returns the applier's view: the state record, cached.
func (a *applier) membership() (*membershipState, error) {
	if a.ms == nil {
		ms, err := readMembershipState(a.s.db)
		if err != nil {
			return nil, err
		}
		a.ms = ms
	}
	return a.ms, nil
}

func (a *applier) saveMembership() error {
	return a.govSet(keyMembershipState, a.ms.encode())
}

// members returns the members as this entry sees them.
func (a *applier) members() ([]Member, error) {
	if a.memberCache != nil {
		return a.memberCache, nil
	}
	ms, err := readMembers(a.s.db, a.s.genesis)
	if err != nil {
		return nil, err
	}
	a.memberCache = ms
	return ms, nil
}

func (a *applier) member(id uint64) (Member, bool, error) {
	ms, err := a.members()
	if err != nil {
		return Member{}, false, err
	}
	m, ok := findMember(ms, id)
	return m, ok, nil
}

// findMember returns member id of ms; ok is false if it never was one.
func findMember(ms []Member, id uint64) (Member, bool) {
	for _, m := range ms {
		if m.ID == id {
			return m, true
		}
	}
	return Member{}, false
}

// putMember writes a member record. The first change writes the genesis
// members too, so that from then on the records are the membership.
func (a *applier) putMember(m Member) error {
	ms, err := a.members()
	if err != nil {
		return err
	}
	found := false
	for i := range ms {
		if ms[i].ID == m.ID {
			ms[i], found = m, true
		}
	}
	if !found {
		ms = append(ms, m)
	}
	a.memberCache = ms
	for _, x := range ms {
		if err := a.govSet(memberKey(x.ID), encodeMember(x)); err != nil {
			return err
		}
	}
	return nil
}

// nog returns the Node Operators Group in force.
func (a *applier) nog() (release.Group, error) {
	ms, err := a.membership()
	if err != nil {
		return release.Group{}, err
	}
	if ms.nog != nil {
		return ms.nog.group(), nil
	}
	return a.s.genesis.NOG, nil
}

// kmg returns the Key Management Group in force.
func (a *applier) kmg() (release.Group, error) {
	ms, err := a.membership()
	if err != nil {
		return release.Group{}, err
	}
	if ms.kmg != nil {
		return ms.kmg.group(), nil
	}
	return a.s.genesis.KMG, nil
}

// recordChange appends a membership change record.
func (a *applier) recordChange(c MembershipChange) error {
	ms, err := a.membership()
	if err != nil {
		return err
	}
	if err := a.govSet(memberChangeKey(ms.changes), encodeMembershipChange(c)); err != nil {
		return err
	}
	ms.changes++
	return nil
}

// vote records voter's vote for (kind, payload) and returns the voters of
// exactly that payload so far. A voter's earlier vote of the same kind is
// replaced.
func (a *applier) vote(voter Address, kind TxKind, payload []byte) ([]Address, error) {
	ms, err := a.membership()
	if err != nil {
		return nil, err
	}
	h := payloadHash(payload)
	ms.votes = slices.DeleteFunc(ms.votes, func(v membershipVote) bool { return v.Voter == voter && v.Kind == kind })
	ms.votes = append(ms.votes, membershipVote{Voter: voter, Kind: kind, Hash: h})
	var voters []Address
	for _, v := range ms.votes {
		if v.Kind == kind && v.Hash == h {
			voters = append(voters, v.Voter)
		}
	}
	return voters, nil
}

// hasVoted reports whether voter already voted for exactly (kind, payload).
func (a *applier) hasVoted(voter Address, kind TxKind, payload []byte) (bool, error) {
	ms, err := a.membership()
	if err != nil {
		return false, err
	}
	h := payloadHash(payload)
	return slices.Contains(ms.votes, membershipVote{Voter: voter, Kind: kind, Hash: h}), nil
}

// clearVotes drops the votes for (kind, payload) once they took effect.
func (a *applier) clearVotes(kind TxKind, payload []byte) {
	h := payloadHash(payload)
	a.ms.votes = slices.DeleteFunc(a.ms.votes, func(v membershipVote) bool { return v.Kind == kind && v.Hash == h })
}

// membershipTx checks (and with apply, performs) a membership transaction
// of an NOG member or, for a re-key, of the node's operator.
func (a *applier) membershipTx(t *Tx, ph govPhase, apply bool) (verdict, error) {
	switch t.Kind {
	case TxAddNode:
		spec, err := DecodeMemberSpec(t.Payload)
		if err != nil {
			return reject(CodeMalformed, "bad payload: %v", err), nil
		}
		return a.addNode(t, spec, ph, apply)
	case TxRemoveNode:
		r, err := DecodeNodeRemoval(t.Payload)
		if err != nil {
			return reject(CodeMalformed, "bad payload: %v", err), nil
		}
		return a.removeNode(t, r, ph, apply)
	case TxRekeyNode:
		r, err := DecodeNodeRekey(t.Payload)
		if err != nil {
			return reject(CodeMalformed, "bad payload: %v", err), nil
		}
		return a.rekeyNode(t, r, ph, apply)
	case TxChangeGroup:
		c, err := DecodeGroupChange(t.Payload)
		if err != nil {
			return reject(CodeMalformed, "bad payload: %v", err), nil
		}
		return a.changeGroup(t, c, ph, apply)
	default:
		return reject(CodeMalformed, "%s is not a membership kind", t.Kind), nil
	}
}

// tally casts t's vote and reports whether the quorum is reached, with
// its voters. It refuses a duplicate vote.
func (a *applier) tally(t *Tx, apply bool) (reached bool, voters []Address, v verdict, err error) {
	dup, err := a.hasVoted(t.From, t.Kind, t.Payload)
	if err != nil {
		return false, nil, verdict{}, err
	}
	if dup {
		return false, nil, reject(CodeDuplicate, "duplicate vote: %s already voted for this %s", t.From, t.Kind), nil
	}
	if !apply {
		return false, nil, verdict{}, nil
	}
	voters, err = a.vote(t.From, t.Kind, t.Payload)
	if err != nil {
		return false, nil, verdict{}, err
	}
	if err := a.saveMembership(); err != nil {
		return false, nil, verdict{}, err
	}
	q, err := a.quorumNow()
	if err != nil {
		return false, nil, verdict{}, err
	}
	a.s.log.Info("membership vote", "kind", t.Kind, "member", t.From, "votes", len(voters), "quorum", q)
	return len(voters) >= q, voters, verdict{}, nil
}

func (a *applier) quorumNow() (int, error) {
	g, err := a.nog()
	if err != nil {
		return 0, err
	}
	return g.Threshold, nil
}

func (a *applier) addNode(t *Tx, spec MemberSpec, ph govPhase, apply bool) (verdict, error) {
	members, err := a.members()
	if err != nil {
		return verdict{}, err
	}
	active := 0
	for _, m := range members {
		if m.ID == spec.ID {
			if m.Active() {
				return reject(CodeConflict, "node %d is already a member", spec.ID), nil
			}
			return reject(CodeConflict, "node id %d was removed at height %d: ids are never reused", spec.ID, m.RemovedAt), nil
		}
		if m.Active() {
			active++
			if m.PeerAddr == spec.PeerAddr || m.ClientAddr == spec.ClientAddr || m.PeerAddr == spec.ClientAddr || m.ClientAddr == spec.PeerAddr {
				return reject(CodeKeyConflict, "an address of node %d is already used by member %d", spec.ID, m.ID), nil
			}
		}
		if !spec.NodeKey.IsZero() && m.NodeKey == spec.NodeKey {
			return reject(CodeKeyConflict, "node key %s already belongs to node %d", spec.NodeKey, m.ID), nil
		}
	}
	if !spec.NodeKey.IsZero() {
		if owner, ok, err := a.registeredOwner(spec.NodeKey); err != nil || ok {
			if err != nil {
				return verdict{}, err
			}
			return reject(CodeKeyConflict, "node key %s is registered for node %d", spec.NodeKey, owner), nil
		}
	}
	if active >= MaxMembers {
		return reject(CodeConflict, "the network has %d members, the most teeup supports", active), nil
	}
	reached, voters, v, err := a.tally(t, apply)
	if err != nil || v.failed() || !reached {
		return v, err
	}
	if err := a.putMember(Member{MemberSpec: spec, AddedAt: ph.height}); err != nil {
		return verdict{}, err
	}
	a.clearVotes(t.Kind, t.Payload)
	a.s.log.Info("member added", "id", spec.ID, "name", spec.Name, "peer", spec.PeerAddr, "height", ph.height)
	return verdict{}, a.finishChange(ph, t, voters)
}

func (a *applier) removeNode(t *Tx, r NodeRemoval, ph govPhase, apply bool) (verdict, error) {
	m, ok, err := a.member(r.ID)
	if err != nil {
		return verdict{}, err
	}
	if !ok || !m.Active() {
		return reject(CodeNotMember, "node %d is not a member", r.ID), nil
	}
	members, err := a.members()
	if err != nil {
		return verdict{}, err
	}
	active := 0
	for _, x := range members {
		if x.Active() {
			active++
		}
	}
	if active <= 1 {
		return reject(CodeConflict, "node %d is the last member", r.ID), nil
	}
	reached, voters, v, err := a.tally(t, apply)
	if err != nil || v.failed() || !reached {
		return v, err
	}
	m.RemovedAt = ph.height
	if err := a.putMember(m); err != nil {
		return verdict{}, err
	}
	a.clearVotes(t.Kind, t.Payload)
	a.s.log.Warn("member removed", "id", r.ID, "height", ph.height)
	return verdict{}, a.finishChange(ph, t, voters)
}

func (a *applier) rekeyNode(t *Tx, r NodeRekey, ph govPhase, apply bool) (verdict, error) {
	m, ok, err := a.member(r.ID)
	if err != nil {
		return verdict{}, err
	}
	if !ok || !m.Active() {
		return reject(CodeNotMember, "node %d is not a member", r.ID), nil
	}
	rec, registered, err := a.s.Node(r.ID)
	if err != nil {
		return verdict{}, err
	}
	if registered && rec.Key == r.Key {
		return reject(CodeDuplicate, "node %d is already registered with key %s", r.ID, r.Key), nil
	}
	if owner, ok, err := a.registeredOwner(r.Key); err != nil || ok {
		if err != nil {
			return verdict{}, err
		}
		return reject(CodeKeyConflict, "key %s is registered for node %d", r.Key, owner), nil
	}
	byOperator := !m.Operator.IsZero() && t.From == m.Operator
	isNOG, err := a.isOperatorNow(t.From)
	if err != nil {
		return verdict{}, err
	}
	if !byOperator && !isNOG {
		return reject(CodeNotMember, "%s may not re-key node %d: only its operator or members of the node operators group", t.From, r.ID), nil
	}
	voters := []Address{t.From}
	if !byOperator {
		reached, vs, v, err := a.tally(t, apply)
		if err != nil || v.failed() || !reached {
			return v, err
		}
		voters = vs
		a.clearVotes(t.Kind, t.Payload)
	} else if !apply {
		return verdict{}, nil
	}
	m.NodeKey = r.Key
	if err := a.putMember(m); err != nil {
		return verdict{}, err
	}
	nrec := NodeRecord{ID: r.ID, Key: r.Key, Measurement: rec.Measurement}
	if err := a.batch.Set(nodeKey(r.ID), encodeNode(nrec), nil); err != nil {
		return verdict{}, err
	}
	if err := a.batch.Set(nodeKeyHistoryKey(r.ID, r.Key), u64(ph.height), nil); err != nil {
		return verdict{}, err
	}
	a.s.log.Warn("node re-keyed: its previous identity key is revoked", "id", r.ID, "key", r.Key.String()[:12], "height", ph.height, "by_operator", byOperator)
	return verdict{}, a.finishChange(ph, t, voters)
}

func (a *applier) changeGroup(t *Tx, c GroupChange, ph govPhase, apply bool) (verdict, error) {
	if c.Group == GroupKMG {
		cur, err := a.kmg()
		if err != nil {
			return verdict{}, err
		}
		ms, err := a.membership()
		if err != nil {
			return verdict{}, err
		}
		msg := GroupChangeSigningBytes(a.s.genesis.ChainID, ms.changes, c)
		if err := cur.VerifyThreshold(msg, c.KMGSignatures); err != nil {
			return reject(CodeBadSignature, "the current key management group's threshold must sign a KMG change: %v", err), nil
		}
	}
	reached, voters, v, err := a.tally(t, apply)
	if err != nil || v.failed() || !reached {
		return v, err
	}
	g := &storedGroup{Keys: slices.Clone(c.Keys), Threshold: c.Threshold, Since: ph.height}
	ms := a.ms
	switch c.Group {
	case GroupNOG:
		ms.nog = g
		// Votes count only under the group that cast them.
		ms.votes = nil
		gs, err := a.governance()
		if err != nil {
			return verdict{}, err
		}
		gs.scheduleVotes, gs.abortVotes, gs.rollbackVotes = nil, nil, nil
		if err := a.saveGovernance(); err != nil {
			return verdict{}, err
		}
	case GroupKMG:
		ms.kmg = g
		a.clearVotes(t.Kind, t.Payload)
	}
	a.s.log.Warn("governance group changed", "group", c.Group, "keys", len(c.Keys), "threshold", c.Threshold, "height", ph.height)
	return verdict{}, a.finishChange(ph, t, voters)
}

// finishChange records the change and saves the membership state.
func (a *applier) finishChange(ph govPhase, t *Tx, voters []Address) error {
	if err := a.recordChange(MembershipChange{Height: ph.height, Kind: t.Kind, Subject: bytes.Clone(t.Payload), Approvers: voters}); err != nil {
		return err
	}
	return a.saveMembership()
}

// registeredOwner returns the node a key is registered for, if any.
func (a *applier) registeredOwner(key Address) (uint64, bool, error) {
	nodes, err := a.s.Nodes()
	if err != nil {
		return 0, false, err
	}
	for _, n := range nodes {
		if n.Key == key {
			return n.ID, true, nil
		}
	}
	return 0, false, nil
}

// isOperatorNow reports whether addr is in the NOG in force.
func (a *applier) isOperatorNow(addr Address) (bool, error) {
	g, err := a.nog()
	if err != nil {
		return false, err
	}
	return g.Contains(addr.PublicKey()), nil
}

// MaxMembers bounds the active members of a network.
const MaxMembers = 16

// Members returns the network's members (removed ones included, marked).
func (s *Store) Members() ([]Member, error) {
	ms, err := readMembers(s.db, s.genesis)
	if err != nil {
		return nil, fmt.Errorf("read members: %w", err)
	}
	return ms, nil
}

// Member returns member id; ok is false if it never was one.
func (s *Store) Member(id uint64) (Member, bool, error) {
	ms, err := s.Members()
	if err != nil {
		return Member{}, false, err
	}
	m, ok := findMember(ms, id)
	return m, ok, nil
}

// Groups returns the NOG and KMG in force.
func (s *Store) Groups() (nog, kmg release.Group, err error) {
	ms, err := readMembershipState(s.db)
	if err != nil {
		return release.Group{}, release.Group{}, err
	}
	nog, kmg = s.genesis.NOG, s.genesis.KMG
	if ms.nog != nil {
		nog = ms.nog.group()
	}
	if ms.kmg != nil {
		kmg = ms.kmg.group()
	}
	return nog, kmg, nil
}

// MembershipChanges returns every membership change, in order.
func (s *Store) MembershipChanges() ([]MembershipChange, error) {
	var out []MembershipChange
	err := scan(s.db, []byte(prefixMemberChange), false, func(k, v []byte) (bool, error) {
		c, err := decodeMembershipChange(v)
		if err != nil {
			return false, fmt.Errorf("corrupt membership change %x: %w", k, err)
		}
		out = append(out, c)
		return true, nil
	})
	return out, err
}

// MembershipVoteView is a pending membership vote.
type MembershipVoteView struct {
	Voter Address
	Kind  TxKind
	Hash  Hash
}

// MembershipVotes returns the pending membership votes.
func (s *Store) MembershipVotes() ([]MembershipVoteView, error) {
	ms, err := readMembershipState(s.db)
	if err != nil {
		return nil, err
	}
	out := make([]MembershipVoteView, 0, len(ms.votes))
	for _, v := range ms.votes {
		out = append(out, MembershipVoteView(v))
	}
	return out, nil
}

// NextGroupChangeSeq is the sequence number a KMG change signed now must
// name (see GroupChangeSigningBytes).
func (s *Store) NextGroupChangeSeq() (uint64, error) {
	ms, err := readMembershipState(s.db)
	if err != nil {
		return 0, err
	}
	return ms.changes, nil
}

// DescribeMembershipChange says in one line what a change did.
func DescribeMembershipChange(c MembershipChange) string {
	switch c.Kind {
	case TxAddNode:
		if m, err := DecodeMemberSpec(c.Subject); err == nil {
			return fmt.Sprintf("added node %d (%s) at %s", m.ID, m.Name, m.PeerAddr)
		}
	case TxRemoveNode:
		if r, err := DecodeNodeRemoval(c.Subject); err == nil {
			return fmt.Sprintf("removed node %d", r.ID)
		}
	case TxRekeyNode:
		if r, err := DecodeNodeRekey(c.Subject); err == nil {
			return fmt.Sprintf("re-keyed node %d to %s", r.ID, r.Key)
		}
	case TxChangeGroup:
		if g, err := DecodeGroupChange(c.Subject); err == nil {
			return fmt.Sprintf("%s is now %d of %d keys", g.Group, g.Threshold, len(g.Keys))
		}
	}
	return c.Kind.String()
}
