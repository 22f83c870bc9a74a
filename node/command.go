package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/teeup/teeup/internal/buildinfo"
	"github.com/teeup/teeup/internal/fsutil"
	"github.com/teeup/teeup/layout"
	"github.com/teeup/teeup/ledger"
	"github.com/teeup/teeup/nodeconfig"
	"github.com/teeup/teeup/tee"
	"github.com/teeup/teeup/tee/boot"
)

// Environment variables that override the configuration file (flags
// override both).
const (
	EnvPlatform     = "TEEUP_PLATFORM"
	EnvEnclaveDebug = "TEEUP_ENCLAVE_DEBUG"
	EnvDataDir      = "TEEUP_DATA_DIR"
	EnvNodeID       = "TEEUP_NODE_ID"
	EnvGenesis      = "TEEUP_GENESIS"
	EnvLogLevel     = "TEEUP_LOG_LEVEL"
)

// NewCommand returns the teeup-node command line.
func NewCommand(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:           "teeup-node",
		Short:         "teeup consensus node (an enclave)",
		Version:       buildinfo.Version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	var configPath string
	cfg := &Config{}
	bindFlags := func(fs *pflag.FlagSet) {
		fs.StringVar(&configPath, "config", "", "JSON configuration file")
		fs.Uint64Var(&cfg.NodeID, "node-id", 0, "node id in the genesis (env "+EnvNodeID+")")
		fs.StringVar(&cfg.Genesis, "genesis", "", "genesis file (env "+EnvGenesis+")")
		fs.StringVar(&cfg.DataDir, "data-dir", "", "data directory (env "+EnvDataDir+")")
		fs.StringVar(&cfg.Platform, "platform", "", "simulated platform directory (env "+EnvPlatform+")")
		fs.BoolVar(&cfg.EnclaveDebug, "enclave-debug", false, "run without a valid signature structure, as a DEBUG enclave (env "+EnvEnclaveDebug+"=1)")
	}
	run := &cobra.Command{
		Use:   "run",
		Short: "Run the node",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := resolveConfig(configPath, cfg, cmd.Flags())
			if err != nil {
				return err
			}
			faults, err := faultsFromEnv(stderr)
			if err != nil {
				return err
			}
			return Run(cmd.Context(), *c, Options{Stderr: stderr, Faults: faults})
		},
	}
	bindFlags(run.Flags())
	run.Flags().StringVar(&cfg.PeerListen, "peer-listen", "", "peer listen address (default: genesis peer_addr)")
	run.Flags().StringVar(&cfg.ClientListen, "client-listen", "", "client API listen address (default: genesis client_addr)")
	run.Flags().StringVar(&cfg.AdminSocket, "admin-socket", "", "admin API unix socket (default DATA/admin.sock)")
	run.Flags().StringVar(&cfg.AdminListen, "admin-listen", "", "also serve the admin API to remote operators over mutual TLS on this address (host:port)")
	run.Flags().StringVar(&cfg.ImportKeysFrom, "import-keys-from", "", "agent socket to receive keys from through the handover")
	run.Flags().StringVar(&cfg.EnclaveID, "enclave-id", "", "signed release manifest covering this binary (presented when importing keys)")
	run.Flags().BoolVar(&cfg.Bootstrap, "bootstrap", false, "may create the network ledger key when no node has one")
	run.Flags().StringVar(&cfg.LogLevel, "log-level", "", "debug, info, warn or error (env "+EnvLogLevel+")")
	run.Flags().StringVar(&cfg.MetricsListen, "metrics-listen", "", "serve Prometheus metrics on this address")

	var dryRun bool
	migrate := &cobra.Command{
		Use:   "migrate",
		Short: "Run (or with --dry-run, show) the ledger's forward schema migrations; the node must be stopped",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := resolveConfig(configPath, cfg, cmd.Flags())
			if err != nil {
				return err
			}
			return runMigrate(cmd.Context(), *c, dryRun, stdout, stderr)
		},
	}
	bindFlags(migrate.Flags())
	migrate.Flags().BoolVar(&dryRun, "dry-run", false, "print the plan and write nothing")

	identity := &cobra.Command{
		Use:   "identity",
		Short: "Print this binary's enclave identity as JSON",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := resolveConfig(configPath, cfg, cmd.Flags())
			if err != nil {
				return err
			}
			p, err := boot.Open(boot.Options{Program: "teeup-node", PlatformDir: c.Platform, Debug: c.EnclaveDebug, Warnings: stderr})
			if err != nil {
				return err
			}
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(struct {
				Version   string       `json:"version"`
				Schema    int          `json:"schema"`
				Simulated bool         `json:"simulated"`
				Identity  tee.Identity `json:"identity"`
			}{buildinfo.Version, TargetSchema(), p.Simulated, p.Enclave.Identity()})
		},
	}
	bindFlags(identity.Flags())
	root.AddCommand(run, migrate, identity)
	return root
}

// resolveConfig merges the file, the environment and set flags, in
// increasing precedence.
func resolveConfig(path string, flags *Config, fs *pflag.FlagSet) (*Config, error) {
	c := &Config{}
	if path != "" {
		var err error
		if c, err = nodeconfig.Load(path); err != nil {
			return nil, err
		}
	}
	env := func(name string, dst *string) {
		if v := os.Getenv(name); v != "" {
			*dst = v
		}
	}
	env(EnvPlatform, &c.Platform)
	env(EnvDataDir, &c.DataDir)
	env(EnvGenesis, &c.Genesis)
	env(EnvLogLevel, &c.LogLevel)
	if v := os.Getenv(EnvNodeID); v != "" {
		id, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%s=%q: not a node id", EnvNodeID, v)
		}
		c.NodeID = id
	}
	if v := os.Getenv(EnvEnclaveDebug); v == "1" || v == "true" {
		c.EnclaveDebug = true
	}
	set := func(name string, apply func()) {
		if f := fs.Lookup(name); f != nil && f.Changed {
			apply()
		}
	}
	set("node-id", func() { c.NodeID = flags.NodeID })
	set("genesis", func() { c.Genesis = flags.Genesis })
	set("data-dir", func() { c.DataDir = flags.DataDir })
	set("platform", func() { c.Platform = flags.Platform })
	set("enclave-debug", func() { c.EnclaveDebug = flags.EnclaveDebug })
	set("peer-listen", func() { c.PeerListen = flags.PeerListen })
	set("client-listen", func() { c.ClientListen = flags.ClientListen })
	set("admin-socket", func() { c.AdminSocket = flags.AdminSocket })
	set("admin-listen", func() { c.AdminListen = flags.AdminListen })
	set("import-keys-from", func() { c.ImportKeysFrom = flags.ImportKeysFrom })
	set("bootstrap", func() { c.Bootstrap = flags.Bootstrap })
	set("enclave-id", func() { c.EnclaveID = flags.EnclaveID })
	set("log-level", func() { c.LogLevel = flags.LogLevel })
	set("metrics-listen", func() { c.MetricsListen = flags.MetricsListen })
	return c, nil
}

func runMigrate(ctx context.Context, cfg Config, dryRun bool, stdout, stderr io.Writer) error {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	g, err := ledger.LoadGenesis(cfg.Genesis)
	if err != nil {
		return fmt.Errorf("genesis: %w", err)
	}
	if err := fsutil.PrivateDir(cfg.DataDir); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	p, err := boot.Open(boot.Options{Program: "teeup-node", PlatformDir: cfg.Platform, Debug: cfg.EnclaveDebug, Warnings: stderr})
	if err != nil {
		return err
	}
	keys, err := LoadKeys(p.Enclave, cfg.DataDir, g.ChainID, cfg.NodeID)
	if err != nil {
		if errors.Is(err, ErrNoKeys) {
			return fmt.Errorf("migrate: %w (migrations decrypt blocks with the ledger key, sealed to this enclave)", err)
		}
		return err
	}
	from, to, steps, err := ledger.Migrate(ctx, layout.Node(cfg.DataDir).Ledger(), ledger.MigrateOptions{Key: keys.LedgerKey, Target: TargetSchema(), DryRun: dryRun})
	if err != nil {
		return err
	}
	verb := "migrated"
	if dryRun {
		verb = "would migrate"
	}
	if from == to {
		fmt.Fprintf(stdout, "ledger schema is %d, which this binary (schema %d) needs: nothing to do\n", from, TargetSchema())
		return nil
	}
	fmt.Fprintf(stdout, "%s ledger schema %d -> %d:\n", verb, from, to)
	for _, s := range steps {
		state := "pending"
		if s.Applied {
			state = "applied"
		}
		fmt.Fprintf(stdout, "  %d %-24s %s\n", s.Version, s.Name, state)
	}
	return nil
}
