package cli

import (
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/teeup/teeup/tee/sim"
)

func newPlatformCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "platform",
		Short: "Manage simulated TEE platforms (one per simulated host)",
	}
	var caDir string
	initCmd := &cobra.Command{
		Use:   "init DIR",
		Short: "Create a simulated platform in DIR, certified by a simulated root CA",
		Long: `Create a simulated platform in DIR: a random platform secret (root of report and seal
keys), an attestation key and its certificate issued by the simulated root CA, and a copy of
the root certificate. All files are mode 0600. The CA is taken from --ca (created there if it
does not exist); without --ca a new CA is created in DIR/ca. Every platform of one network
must share one CA, as every SGX machine shares Intel's root.

Simulation gives no hardware protection: anyone who can read DIR can forge reports and
unseal data.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := args[0]
			if caDir == "" {
				caDir = filepath.Join(dir, "ca")
			}
			ca, err := sim.OpenOrInitCA(caDir)
			if err != nil {
				return err
			}
			p, err := sim.InitPlatform(dir, ca)
			if err != nil {
				return err
			}
			fmt.Fprintf(stdoutOf(cmd), "platform %s created in %s (root CA %s)\n", p.ID(), dir, caDir)
			return nil
		},
	}
	initCmd.Flags().StringVar(&caDir, "ca", "", "directory of the simulated root CA (created if missing; default DIR/ca)")
	cmd.AddCommand(initCmd)
	return cmd
}
