package release

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
)

// maxGenesisRead bounds how much of a genesis file LoadNetwork reads (the
// ledger's own limit is the same).
const maxGenesisRead = 4 << 20

// Network is what checking releases and enclave IDs needs of a network:
// its id and its Key Management Group, as its genesis file states them.
// The upgrade agent reads only this; the node reads and validates the
// whole genesis (package ledger).
type Network struct {
	// ChainID is the network id releases and enclave IDs name.
	ChainID string `json:"chain_id"`
	// KMG is the Key Management Group.
	KMG Group `json:"kmg"`
}

// LoadNetwork reads the chain id and the Key Management Group from a
// genesis file. Other fields are the ledger's and are not checked here.
func LoadNetwork(genesisPath string) (*Network, error) {
	f, err := os.Open(genesisPath)
	if err != nil {
		return nil, fmt.Errorf("load network: %w", err)
	}
	defer f.Close()
	raw, err := io.ReadAll(io.LimitReader(f, maxGenesisRead+1))
	if err != nil {
		return nil, fmt.Errorf("load network from %s: %w", genesisPath, err)
	}
	if len(raw) > maxGenesisRead {
		return nil, fmt.Errorf("load network from %s: larger than %d bytes", genesisPath, maxGenesisRead)
	}
	n, err := ParseNetwork(raw)
	if err != nil {
		return nil, fmt.Errorf("load network from %s: %w", genesisPath, err)
	}
	return n, nil
}

// ParseNetwork parses a genesis document's chain id and Key Management
// Group and validates them.
func ParseNetwork(raw []byte) (*Network, error) {
	var n Network
	if err := json.Unmarshal(raw, &n); err != nil {
		return nil, fmt.Errorf("parse genesis: %w", err)
	}
	if n.ChainID == "" {
		return nil, errors.New("genesis names no chain_id")
	}
	if err := n.KMG.Validate(); err != nil {
		return nil, fmt.Errorf("genesis key management group: %w", err)
	}
	return &n, nil
}
