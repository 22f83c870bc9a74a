package cli

import (
	"errors"
	"fmt"
	"math"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/teeup/teeup/keyfile"
	"github.com/teeup/teeup/tee"
	"github.com/teeup/teeup/tee/sim"
)

func newEnclaveCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "enclave",
		Short: "Measure, sign and inspect enclave binaries",
	}
	cmd.AddCommand(newEnclaveMeasureCmd(), newEnclaveSignCmd(), newEnclaveInspectCmd())
	return cmd
}

func newEnclaveMeasureCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "measure BINARY",
		Short: "Print the MRENCLAVE of BINARY as hex (equal to sha256sum BINARY)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := sim.Measure(args[0])
			if err != nil {
				return err
			}
			fmt.Fprintln(stdoutOf(cmd), m)
			return nil
		},
	}
}

// parseUint16Flag parses a flag value as a uint16 with a clear error.
func parseUint16Flag(name, v string) (uint16, error) {
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil || n > math.MaxUint16 {
		return 0, fmt.Errorf("--%s %q: want an integer between 0 and %d", name, v, math.MaxUint16)
	}
	return uint16(n), nil
}

func newEnclaveSignCmd() *cobra.Command {
	var keyPath, product, svn string
	cmd := &cobra.Command{
		Use:   "sign --key KEY --product-id N --svn N BINARY",
		Short: "Write BINARY.sig: the signer's statement of BINARY's MRENCLAVE, product ID and SVN",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if keyPath == "" {
				return errors.New("enclave sign: --key KEY is required (create one with 'teeup keys gen')")
			}
			pid, err := parseUint16Flag("product-id", product)
			if err != nil {
				return fmt.Errorf("enclave sign: %w", err)
			}
			s, err := parseUint16Flag("svn", svn)
			if err != nil {
				return fmt.Errorf("enclave sign: %w", err)
			}
			key, err := keyfile.ReadPrivate(keyPath)
			if err != nil {
				return fmt.Errorf("enclave sign: %w", err)
			}
			ss, err := sim.SignBinary(args[0], pid, s, key)
			if err != nil {
				return fmt.Errorf("enclave sign: %w", err)
			}
			fmt.Fprintf(stdoutOf(cmd), "signed %s\n  mrenclave %s\n  mrsigner  %s\n  product   %d\n  svn       %d\n  written   %s%s\n",
				args[0], ss.UniqueID, ss.SignerID(), ss.ProductID, ss.SecurityVersion, args[0], sim.SigStructSuffix)
			return nil
		},
	}
	cmd.Flags().StringVar(&keyPath, "key", "", "ed25519 signer key file")
	cmd.Flags().StringVar(&product, "product-id", "", "product ID (0-65535)")
	cmd.Flags().StringVar(&svn, "svn", "", "security version number (0-65535)")
	_ = cmd.MarkFlagRequired("product-id")
	_ = cmd.MarkFlagRequired("svn")
	return cmd
}

// enclaveInspection is the JSON output of 'teeup enclave inspect'.
type enclaveInspection struct {
	Binary          string          `json:"binary"`
	MREnclave       tee.Measurement `json:"mrenclave"`
	SigStruct       bool            `json:"sigstruct_present"`
	SignatureValid  bool            `json:"signature_valid"`
	MatchesBinary   bool            `json:"matches_binary"`
	MRSigner        *string         `json:"mrsigner,omitempty"`
	ProductID       *uint16         `json:"product_id,omitempty"`
	SecurityVersion *uint16         `json:"security_version,omitempty"`
	Error           string          `json:"error,omitempty"`
}

func newEnclaveInspectCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "inspect BINARY",
		Short: "Show BINARY's identity and whether its signature structure verifies",
		Long: `Show BINARY's MRENCLAVE, and from BINARY.sig its signer (MRSIGNER), product ID and SVN,
whether the signature verifies and whether it matches the binary. Exits 1 if it does not.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			in := inspectEnclave(args[0])
			if in.MREnclave.IsZero() && in.Error != "" {
				return errors.New(in.Error)
			}
			w := stdoutOf(cmd)
			if asJSON {
				if err := printJSON(w, in); err != nil {
					return fmt.Errorf("enclave inspect: %w", err)
				}
			} else {
				fmt.Fprintf(w, "binary     %s\nmrenclave  %s\n", in.Binary, in.MREnclave)
				if in.MRSigner != nil {
					fmt.Fprintf(w, "mrsigner   %s\nproduct    %d\nsvn        %d\n", *in.MRSigner, *in.ProductID, *in.SecurityVersion)
				}
				fmt.Fprintf(w, "signature  present=%t valid=%t matches-binary=%t\n", in.SigStruct, in.SignatureValid, in.MatchesBinary)
			}
			if in.Error != "" {
				return &ExitError{Code: 1, Err: errors.New(in.Error)}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func inspectEnclave(path string) enclaveInspection {
	in := enclaveInspection{Binary: path}
	m, err := sim.Measure(path)
	if err != nil {
		in.Error = err.Error()
		return in
	}
	in.MREnclave = m
	ss, err := sim.ReadSigStruct(path)
	if err != nil {
		in.SigStruct = !errors.Is(err, sim.ErrNoSigStruct)
		in.Error = err.Error()
		return in
	}
	in.SigStruct, in.SignatureValid = true, true
	signer := ss.SignerID().String()
	in.MRSigner, in.ProductID, in.SecurityVersion = &signer, &ss.ProductID, &ss.SecurityVersion
	in.MatchesBinary = ss.UniqueID == m
	if !in.MatchesBinary {
		in.Error = fmt.Sprintf("%s: signature structure is for MRENCLAVE %s but the binary measures %s (binary changed after signing)", path, ss.UniqueID, m)
	}
	return in
}
