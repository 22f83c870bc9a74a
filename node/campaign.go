package node

// campaignFirst reports whether this node campaigns at once when raft
// starts (consensus.Config.CampaignFirst): its chain is halted at the
// activation height of the upgrade in force, the schedule names this node's
// measurement (so this is the new network of a flag day, all of whose nodes
// start within moments of each other), and it is the lowest-numbered active
// member, which every new node computes the same way. Any error or doubt
// answers false: the network then elects a leader after an election
// timeout, as always.
func (n *Node) campaignFirst() bool {
	s, ok, err := n.store.ActiveSchedule()
	if err != nil || !ok || s.NodeMREnclave != n.identity.UniqueID {
		return false
	}
	if head, _ := n.store.Head(); head != s.ActivationHeight {
		return false
	}
	members, err := n.store.Members()
	if err != nil {
		return false
	}
	var first uint64
	for _, m := range members {
		if m.Active() && (first == 0 || m.ID < first) {
			first = m.ID
		}
	}
	return first != 0 && first == n.cfg.NodeID
}
