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
	root.AddCommand(run)
	return root
}
