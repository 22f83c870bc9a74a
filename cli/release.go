package cli

import (
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/teeup/teeup/keyfile"
	"github.com/teeup/teeup/release"
)

func newReleaseCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "release",
		Short: "Create, sign and verify release manifests (Key Management Group signatures)",
		Long: `A release manifest names a version of the network's node and agent enclaves (and optionally
the distribute program) by hash, measurement, signer, product ID, SVN and URL. Key Management
Group members sign it, together with the node's and agent's "network-signed enclave IDs"; the
agent stages a release, and node and agent exchange keys, only when a threshold of the group
has signed.`,
	}
	cmd.AddCommand(newReleaseCreateCmd(), newReleaseSignCmd(), newReleaseVerifyCmd())
	cmd.AddCommand(newReleaseGovernanceCmds()...)
	return cmd
}

func newReleaseCreateCmd() *cobra.Command {
	var (
		network, version, node, agent, distribute, urlBase, notes, out string
		schema                                                         int
		migrations                                                     []string
	)
	cmd := &cobra.Command{
		Use:   "create --network ID --version V --node BIN --agent BIN --out FILE",
		Short: "Write an unsigned release manifest for signed node and agent binaries",
		Long: `Measure the node and agent binaries, check their signature structures (BIN.sig, written by
'teeup enclave sign'), and write an unsigned release to FILE, which must not exist. Each
binary's URL is --url-base + "/" + its file name; without --url-base it is a file:// URL of
the binary where it is now. Its signature structure is expected at the same URL + ".sig".`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			for _, f := range []struct{ name, value string }{
				{"network ID", network}, {"version V", version}, {"node BIN", node}, {"agent BIN", agent}, {"out FILE", out},
			} {
				if f.value == "" {
					return fmt.Errorf("release create: --%s is required", f.name)
				}
			}
			nodeURL, err := releaseURL(urlBase, node)
			if err != nil {
				return fmt.Errorf("release create: %w", err)
			}
			nodeC, err := release.ComponentFromBinary(node, nodeURL)
			if err != nil {
				return fmt.Errorf("release create: node: %w", err)
			}
			agentURL, err := releaseURL(urlBase, agent)
			if err != nil {
				return fmt.Errorf("release create: %w", err)
			}
			agentC, err := release.ComponentFromBinary(agent, agentURL)
			if err != nil {
				return fmt.Errorf("release create: agent: %w", err)
			}
			m := release.Manifest{
				NetworkID:     network,
				Version:       version,
				Node:          nodeC,
				Agent:         agentC,
				SchemaVersion: schema,
				Migrations:    migrations,
				Notes:         notes,
				CreatedAt:     time.Now().UTC().Truncate(time.Second),
			}
			if distribute != "" {
				u, err := releaseURL(urlBase, distribute)
				if err != nil {
					return fmt.Errorf("release create: %w", err)
				}
				a, err := release.ArtifactFromFile(distribute, u)
				if err != nil {
					return fmt.Errorf("release create: distribute: %w", err)
				}
				m.Distribute = &a
			}
			sr, err := release.New(m)
			if err != nil {
				return fmt.Errorf("release create: %w", err)
			}
			if err := sr.SaveNew(out); err != nil {
				return fmt.Errorf("release create: %w", err)
			}
			w := stdoutOf(cmd)
			fmt.Fprintf(w, "created %s (unsigned): network %s version %s\n", out, m.NetworkID, m.Version)
			fmt.Fprintf(w, "  node   mrenclave %s  %s\n", m.Node.MREnclave, m.Node.URL)
			fmt.Fprintf(w, "  agent  mrenclave %s  %s\n", m.Agent.MREnclave, m.Agent.URL)
			if m.Distribute != nil {
				fmt.Fprintf(w, "  distribute sha256 %s  %s\n", m.Distribute.SHA256, m.Distribute.URL)
			}
			fmt.Fprintf(w, "next: each Key Management Group member runs 'teeup release sign --key KEY %s'\n", out)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&network, "network", "", "network (chain) id the release is for")
	f.StringVar(&version, "version", "", "semantic version MAJOR.MINOR.PATCH[-PRERELEASE]")
	f.StringVar(&node, "node", "", "signed node enclave binary")
	f.StringVar(&agent, "agent", "", "signed agent enclave binary")
	f.StringVar(&distribute, "distribute", "", "distribute program binary (optional)")
	f.StringVar(&urlBase, "url-base", "", "URL the binaries will be published under (http, https or file; default: file:// URLs of the binaries' directories)")
	f.IntVar(&schema, "schema", 0, "ledger schema version the node migrates to (0: the newest the node knows)")
	f.StringArrayVar(&migrations, "migration", nil, "name of a ledger migration the upgrade runs (repeatable)")
	f.StringVar(&notes, "notes", "", "release notes")
	f.StringVar(&out, "out", "", "manifest file to create")
	return cmd
}

// releaseURL returns where the file at path will be published: base + "/" +
// its name, or a file:// URL of its absolute path when base is empty.
func releaseURL(base, path string) (string, error) {
	name := url.PathEscape(filepath.Base(path))
	if base == "" {
		abs, err := filepath.Abs(filepath.Dir(path))
		if err != nil {
			return "", fmt.Errorf("locate %s: %w", path, err)
		}
		base = (&url.URL{Scheme: "file", Path: filepath.ToSlash(abs)}).String()
	}
	return strings.TrimRight(base, "/") + "/" + name, nil
}

func newReleaseSignCmd() *cobra.Command {
	var keyPath string
	cmd := &cobra.Command{
		Use:   "sign --key KEY FILE",
		Short: "Add a Key Management Group member's signature to a release manifest",
		Long: `Sign the manifest in FILE and its node and agent enclave IDs with the ed25519 key KEY, and
rewrite FILE atomically. Signing again with the same key replaces that key's signature.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if keyPath == "" {
				return errors.New("release sign: --key KEY is required")
			}
			key, err := keyfile.ReadPrivate(keyPath)
			if err != nil {
				return fmt.Errorf("release sign: %w", err)
			}
			sr, err := release.Load(args[0])
			if err != nil {
				return fmt.Errorf("release sign: %w", err)
			}
			if err := release.Sign(sr, key); err != nil {
				return fmt.Errorf("release sign: %w", err)
			}
			if err := sr.Save(args[0]); err != nil {
				return fmt.Errorf("release sign: %w", err)
			}
			n := len(sr.Signatures)
			plural := "s"
			if n == 1 {
				plural = ""
			}
			fmt.Fprintf(stdoutOf(cmd), "signed %s %s as %s; the manifest now has %d signature%s\n",
				args[0], sr.Manifest.Version, hex.EncodeToString(key.Public().(ed25519.PublicKey)), n, plural)
			return nil
		},
	}
	cmd.Flags().StringVar(&keyPath, "key", "", "ed25519 private key file of a Key Management Group member")
	return cmd
}

// releaseVerification is the JSON output of 'teeup release verify'.
type releaseVerification struct {
	File           string        `json:"file"`
	OK             bool          `json:"ok"`
	NetworkID      string        `json:"network_id,omitempty"`
	Version        string        `json:"version,omitempty"`
	NodeMREnclave  string        `json:"node_mrenclave,omitempty"`
	AgentMREnclave string        `json:"agent_mrenclave,omitempty"`
	Signatures     int           `json:"signatures"`
	Threshold      int           `json:"threshold"`
	Binaries       []binaryCheck `json:"binaries,omitempty"`
	Error          string        `json:"error,omitempty"`
}

// binaryCheck is the result of checking one local file against the release.
type binaryCheck struct {
	Role string `json:"role"`
	Path string `json:"path"`
	OK   bool   `json:"ok"`
}

// genesisKMG is the part of a genesis file 'release verify' reads.
type genesisKMG struct {
	ChainID string         `json:"chain_id"`
	KMG     *release.Group `json:"kmg"`
}

func newReleaseVerifyCmd() *cobra.Command {
	var (
		kmgKeys                                   []string
		threshold                                 int
		genesis, nodeBin, agentBin, distributeBin string
		asJSON                                    bool
	)
	cmd := &cobra.Command{
		Use:   "verify (--kmg-keys HEX,... --threshold T | --genesis FILE) FILE",
		Short: "Check a release manifest's Key Management Group signatures (and, optionally, local binaries)",
		Long: `Check that the release in FILE is well formed and that its manifest and its node and agent
enclave IDs each carry the Key Management Group's threshold of valid signatures. The group is
given with --kmg-keys and --threshold, or read from the "kmg" field of a genesis file, whose
chain id must then equal the release's network. With --node-binary, --agent-binary or
--distribute-binary, also check that those files are the release's. Exits 1 with the reason
if any check fails.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			res := releaseVerification{File: args[0]}
			err := verifyRelease(&res, args[0], kmgKeys, threshold, genesis, nodeBin, agentBin, distributeBin)
			if err != nil {
				res.Error = err.Error()
			} else {
				res.OK = true
			}
			w := stdoutOf(cmd)
			if asJSON {
				if jerr := printJSON(w, res); jerr != nil {
					return fmt.Errorf("release verify: %w", jerr)
				}
			}
			if err != nil {
				return &ExitError{Code: 1, Err: fmt.Errorf("release verify: %w", err)}
			}
			if !asJSON {
				fmt.Fprintf(w, "OK: release %s of network %s carries %d signatures (threshold %d)\n", res.Version, res.NetworkID, res.Signatures, res.Threshold)
				fmt.Fprintf(w, "  node   mrenclave %s\n  agent  mrenclave %s\n", res.NodeMREnclave, res.AgentMREnclave)
				for _, b := range res.Binaries {
					fmt.Fprintf(w, "  %s binary %s matches\n", b.Role, b.Path)
				}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&kmgKeys, "kmg-keys", nil, "Key Management Group public keys as hex, comma separated")
	f.IntVar(&threshold, "threshold", 0, "number of distinct group signatures required")
	f.StringVar(&genesis, "genesis", "", "genesis file to read the group from (its kmg field)")
	f.StringVar(&nodeBin, "node-binary", "", "also check this node binary (and its .sig) against the release")
	f.StringVar(&agentBin, "agent-binary", "", "also check this agent binary (and its .sig) against the release")
	f.StringVar(&distributeBin, "distribute-binary", "", "also check this distribute binary against the release")
	f.BoolVar(&asJSON, "json", false, "print the result as JSON")
	return cmd
}

// verifyRelease fills res while checking the release at path.
func verifyRelease(res *releaseVerification, path string, kmgKeys []string, threshold int, genesis, nodeBin, agentBin, distributeBin string) error {
	var kmg release.Group
	chainID := ""
	switch {
	case genesis != "" && (len(kmgKeys) > 0 || threshold != 0):
		return errors.New("give either --genesis or --kmg-keys with --threshold, not both")
	case genesis != "":
		g, id, err := readGenesisKMG(genesis)
		if err != nil {
			return err
		}
		kmg, chainID = g, id
	case len(kmgKeys) > 0 && threshold > 0:
		kmg = release.Group{Keys: kmgKeys, Threshold: threshold}
	default:
		return errors.New("the Key Management Group is required: --kmg-keys HEX,... with --threshold T, or --genesis FILE")
	}
	res.Threshold = kmg.Threshold
	if err := kmg.Validate(); err != nil {
		return fmt.Errorf("key management group: %w", err)
	}
	sr, err := release.Load(path)
	if err != nil {
		return err
	}
	m := &sr.Manifest
	res.NetworkID, res.Version, res.Signatures = m.NetworkID, m.Version, len(sr.Signatures)
	res.NodeMREnclave, res.AgentMREnclave = m.Node.MREnclave.String(), m.Agent.MREnclave.String()
	if chainID != "" && chainID != m.NetworkID {
		return fmt.Errorf("the release is for network %q, the genesis file for %q", m.NetworkID, chainID)
	}
	if err := sr.Verify(kmg); err != nil {
		return err
	}
	if nodeBin != "" {
		if _, err := release.VerifyBinary(nodeBin, m.Node); err != nil {
			return fmt.Errorf("node: %w", err)
		}
		res.Binaries = append(res.Binaries, binaryCheck{Role: "node", Path: nodeBin, OK: true})
	}
	if agentBin != "" {
		if _, err := release.VerifyBinary(agentBin, m.Agent); err != nil {
			return fmt.Errorf("agent: %w", err)
		}
		res.Binaries = append(res.Binaries, binaryCheck{Role: "agent", Path: agentBin, OK: true})
	}
	if distributeBin != "" {
		if m.Distribute == nil {
			return errors.New("--distribute-binary given but the release ships no distribute program")
		}
		if err := release.VerifyArtifact(distributeBin, *m.Distribute); err != nil {
			return fmt.Errorf("distribute: %w", err)
		}
		res.Binaries = append(res.Binaries, binaryCheck{Role: "distribute", Path: distributeBin, OK: true})
	}
	return nil
}

// readGenesisKMG reads the chain id and Key Management Group of a genesis
// file without depending on the ledger package.
func readGenesisKMG(path string) (release.Group, string, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return release.Group{}, "", fmt.Errorf("read genesis: %w", err)
	}
	var g genesisKMG
	if err := json.Unmarshal(raw, &g); err != nil {
		return release.Group{}, "", fmt.Errorf("read genesis %s: %w", path, err)
	}
	if g.KMG == nil {
		return release.Group{}, "", fmt.Errorf("read genesis %s: no kmg field", path)
	}
	return *g.KMG, g.ChainID, nil
}
