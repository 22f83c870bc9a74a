package cli

import (
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/teeup/teeup/keyfile"
)

func newKeysCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "keys",
		Short: "Manage ed25519 keys (enclave signers, KMG and NOG members, accounts)",
	}
	var out string
	gen := &cobra.Command{
		Use:   "gen --out FILE",
		Short: "Generate an ed25519 key: FILE (PEM PKCS#8, 0600) and FILE.pub (PEM PKIX)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return errors.New("keys gen: --out FILE is required")
			}
			pub, err := keyfile.Generate(out)
			if err != nil {
				return err
			}
			fmt.Fprintf(stdoutOf(cmd), "%s\n", hex.EncodeToString(pub))
			return nil
		},
	}
	gen.Flags().StringVar(&out, "out", "", "path of the private key file to create (its public key goes to FILE.pub)")
	show := &cobra.Command{
		Use:   "show FILE",
		Short: "Print the public key (hex) of a key file: private or public PEM, or 64 hex digits",
		Long: `Print the ed25519 public key held in FILE as 64 hex digits: the form genesis files, bundles
and --key arguments use. FILE may be a private key (PEM PKCS #8, as 'teeup keys gen' writes it),
a public key (PEM PKIX, FILE.pub) or a file of 64 hex digits. Only the public key is printed.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			pub, err := keyfile.ReadPublic(args[0])
			if err != nil {
				return fmt.Errorf("keys show: %w", err)
			}
			fmt.Fprintf(stdoutOf(cmd), "%s\n", hex.EncodeToString(pub))
			return nil
		},
	}
	cmd.AddCommand(gen, show)
	return cmd
}
