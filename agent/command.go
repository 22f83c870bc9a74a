package agent

import (
	"io"

	"github.com/spf13/cobra"

	"github.com/teeup/teeup/internal/buildinfo"
)

// NewCommand returns the teeup-agent command line.
func NewCommand(stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:           "teeup-agent",
		Short:         "teeup upgrade agent (an enclave): supervises the node and hands its keys to new versions",
		Version:       buildinfo.Version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	var configPath string
	var debug bool
	run := &cobra.Command{
		Use:   "run --config FILE",
		Short: "Run the agent",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := LoadConfig(configPath)
			if err != nil {
				return err
			}
			if debug {
				c.EnclaveDebug = true
			}
			faults, err := faultsFromEnv(stderr)
			if err != nil {
				return err
			}
			return Run(cmd.Context(), *c, Options{Stderr: stderr, Faults: faults})
		},
	}
	run.Flags().StringVar(&configPath, "config", "", "agent configuration file (required)")
	run.Flags().BoolVar(&debug, "enclave-debug", false, "run without a valid signature structure, as a DEBUG enclave")
	_ = run.MarkFlagRequired("config")
	root.AddCommand(run, newSuccessorCommand(stderr))
	return root
}

// newSuccessorCommand is the handover mode a new agent binary runs in
// while the old agent moves its held state to it (RunSuccessor); only the
// old agent starts it.
func newSuccessorCommand(stderr io.Writer) *cobra.Command {
	var o SuccessorOptions
	cmd := &cobra.Command{
		Use:    "successor --genesis G --platform P --dir D --socket S --release R --from MRENCLAVE --id ID",
		Short:  "Receive the old agent's held state during a self-upgrade (started by the old agent)",
		Args:   cobra.NoArgs,
		Hidden: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.Stderr = stderr
			return RunSuccessor(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Genesis, "genesis", "", "genesis file")
	f.StringVar(&o.Platform, "platform", "", "platform directory")
	f.StringVar(&o.Dir, "dir", "", "agent directory")
	f.StringVar(&o.Socket, "socket", "", "the old agent's handover socket")
	f.StringVar(&o.Release, "release", "", "signed release whose agent this binary is")
	f.StringVar(&o.From, "from", "", "the old agent's MRENCLAVE")
	f.StringVar(&o.ID, "id", "", "self-upgrade id")
	f.BoolVar(&o.Debug, "enclave-debug", false, "run as a DEBUG enclave")
	for _, n := range []string{"genesis", "platform", "dir", "socket", "release", "from", "id"} {
		_ = cmd.MarkFlagRequired(n)
	}
	return cmd
}
