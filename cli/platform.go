package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/teeup/teeup/internal/fsutil"
	"github.com/teeup/teeup/tee/sim"
)

func newPlatformCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "platform",
		Short: "Manage simulated TEE platforms (one per simulated host) and their root CA",
		Long: `A simulated platform is a directory holding a platform secret (root of report and seal keys),
an attestation key, its certificate from the simulated root CA and the root certificate that
verifiers pin. On separate hosts, each host creates its own platform and a certificate request
('platform init DIR --root ROOT.crt'), the CA holder signs the request ('platform certify') and
the host installs the certificate ('platform install-cert'): the platform secret and the
attestation key never leave the host.`,
	}
	cmd.AddCommand(newPlatformInitCmd(), newPlatformCAInitCmd(), newPlatformCertifyCmd(), newPlatformInstallCertCmd(), newPlatformShowCmd())
	return cmd
}

func newPlatformInitCmd() *cobra.Command {
	var caDir, rootPath, requestOut string
	cmd := &cobra.Command{
		Use:   "init DIR [--ca CADIR | --root ROOT.crt [--request OUT.csr]]",
		Short: "Create a simulated platform in DIR, certified by the CA at once or by request",
		Long: `Create a simulated platform in DIR (0700; files 0600): a random platform secret, an attestation
key, and either its certificate or a request for one.

  --root ROOT.crt     pin ROOT.crt and write a certificate request (DIR/attestation.csr, and a
                      copy to --request OUT.csr): the CA holder signs it with 'teeup platform
                      certify', then 'teeup platform install-cert DIR CERT' completes the platform.
                      The secret and the attestation key never leave DIR.
  --ca CADIR          if CADIR holds root.key: certify at once (the CA is on this machine). If it
                      holds only root.crt: as --root CADIR/root.crt. If it holds neither: create a
                      new CA there first (a one-machine network). Nothing is written into CADIR
                      unless a CA is created.
  (neither)           create a new CA in DIR/ca and certify at once.

Every platform of one network must chain to one root, as every SGX machine chains to Intel's.
Simulation gives no hardware protection: anyone who can read DIR can forge reports and unseal
data.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := args[0]
			w := stdoutOf(cmd)
			if rootPath != "" && caDir != "" {
				return errors.New("platform init: give --ca CADIR or --root ROOT.crt, not both")
			}
			if rootPath == "" && caDir == "" && requestOut != "" {
				return errors.New("platform init: --request needs the root to pin: --root ROOT.crt (or --ca CADIR holding root.crt)")
			}
			if requestOut != "" && rootPath == "" {
				// --ca CADIR --request OUT: only a CA directory without its key.
				if _, err := os.Stat(filepath.Join(caDir, sim.CAKeyFile)); err == nil {
					return fmt.Errorf("platform init: %s holds the CA key, so the platform is certified at once; --request is for a CA held elsewhere (--root ROOT.crt)", caDir)
				}
				rootPath = filepath.Join(caDir, sim.RootCertFile)
			}
			if rootPath == "" {
				if caDir == "" {
					caDir = filepath.Join(dir, "ca")
				}
				ca, err := sim.OpenOrInitCA(caDir)
				switch {
				case errors.Is(err, sim.ErrNoCAKey):
					rootPath = filepath.Join(caDir, sim.RootCertFile) // only the root: request
				case err != nil:
					return fmt.Errorf("platform init: %w", err)
				default:
					p, err := sim.InitPlatform(dir, ca)
					if err != nil {
						return fmt.Errorf("platform init: %w", err)
					}
					fmt.Fprintf(w, "platform %s created in %s (root CA %s, root fingerprint %s)\n", p.ID(), dir, caDir, sim.Fingerprint(ca.Certificate()))
					return nil
				}
			}
			return requestPlatform(w, dir, rootPath, requestOut)
		},
	}
	f := cmd.Flags()
	f.StringVar(&caDir, "ca", "", "simulated root CA directory: with root.key certify at once, with only root.crt request a certificate (created if empty; default DIR/ca)")
	f.StringVar(&rootPath, "root", "", "root certificate to pin; the platform requests its certificate from the CA holder")
	f.StringVar(&requestOut, "request", "", "also write the certificate request to this file (it is always in DIR/attestation.csr)")
	return cmd
}

// requestPlatform creates a platform that requests its certificate and says
// what to do next.
func requestPlatform(w io.Writer, dir, rootPath, requestOut string) error {
	root, err := sim.ReadCertificate(rootPath)
	if err != nil {
		return fmt.Errorf("platform init: root to pin: %w", err)
	}
	csr, err := sim.RequestPlatform(dir, root)
	if err != nil {
		return fmt.Errorf("platform init: %w", err)
	}
	reqPath := filepath.Join(dir, sim.AttestationCSRFile)
	if requestOut != "" {
		if err := fsutil.WriteFileAtomic(requestOut, csr, 0o644); err != nil {
			return fmt.Errorf("platform init: write request: %w", err)
		}
		reqPath = requestOut
	}
	req, err := sim.ParseRequest(csr)
	if err != nil {
		return fmt.Errorf("platform init: %w", err)
	}
	fmt.Fprintf(w, "platform %s created in %s, awaiting its certificate (pinned root %s, fingerprint %s)\n", req.PlatformID, dir, rootPath, sim.Fingerprint(root))
	fmt.Fprintf(w, "next: send %s to the CA holder, who runs\n  teeup platform certify --ca CADIR %s -o %s.crt\n", reqPath, filepath.Base(reqPath), req.PlatformID)
	fmt.Fprintf(w, "then install the certificate here:\n  teeup platform install-cert %s %s.crt\n", dir, req.PlatformID)
	return nil
}

func newPlatformCAInitCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "ca-init CADIR",
		Short: "Create the network's simulated root CA in CADIR (root.key, root.crt)",
		Long: `Create a simulated root CA in CADIR (0700; files 0600): root.key, which certifies platforms and
stays with the CA holder, and root.crt, which every host pins (send it to every operator and
compare its fingerprint with them). Refuses a CADIR that already holds either file.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ca, err := sim.InitCA(args[0])
			if err != nil {
				return fmt.Errorf("platform ca-init: %w", err)
			}
			fmt.Fprintf(stdoutOf(cmd), "root CA created in %s: distribute %s (fingerprint %s); keep %s here\n",
				args[0], filepath.Join(args[0], sim.RootCertFile), sim.Fingerprint(ca.Certificate()), sim.CAKeyFile)
			return nil
		},
	}
}

func newPlatformCertifyCmd() *cobra.Command {
	var caDir, out string
	cmd := &cobra.Command{
		Use:   "certify --ca CADIR REQUEST -o CERT",
		Short: "Sign a platform's certificate request with the simulated root CA (the CA holder runs it)",
		Long: `Verify the certificate request REQUEST (made by 'teeup platform init DIR --root ROOT.crt' on
the host: a P-256 attestation key, self-signed, for one platform id; nothing else is accepted)
and write the platform's attestation certificate, issued by the CA in CADIR (which must hold
root.key), to CERT (must not exist). Send CERT back to the host.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if caDir == "" || out == "" {
				return errors.New("platform certify: --ca CADIR and -o CERT are required")
			}
			ca, err := sim.OpenCA(caDir)
			if err != nil {
				return fmt.Errorf("platform certify: %w", err)
			}
			raw, err := readLimitedFile(args[0], sim.MaxRequestSize)
			if err != nil {
				return fmt.Errorf("platform certify: %w", err)
			}
			cert, req, err := ca.CertifyRequest(raw)
			if err != nil {
				return fmt.Errorf("platform certify %s: %w", args[0], err)
			}
			if _, err := os.Lstat(out); err == nil {
				return fmt.Errorf("platform certify: %s already exists", out)
			}
			if err := fsutil.WriteFileAtomic(out, cert, 0o644); err != nil {
				return fmt.Errorf("platform certify: %w", err)
			}
			fmt.Fprintf(stdoutOf(cmd), "certified platform %s: %s (root fingerprint %s)\n", req.PlatformID, out, sim.Fingerprint(ca.Certificate()))
			return nil
		},
	}
	cmd.Flags().StringVar(&caDir, "ca", "", "the simulated root CA directory (root.key and root.crt)")
	cmd.Flags().StringVarP(&out, "out", "o", "", "certificate file to write")
	return cmd
}

func newPlatformInstallCertCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "install-cert DIR CERT",
		Short: "Install the attestation certificate the CA holder issued for the platform in DIR",
		Long: `Check that CERT is issued by the root DIR pins (DIR/root.crt), for DIR's own attestation key,
and install it as DIR/attestation.crt; the request is removed. The platform is then complete.
Installing the same certificate again is harmless; another certificate is refused.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			raw, err := readLimitedFile(args[1], sim.MaxCertificateSize)
			if err != nil {
				return fmt.Errorf("platform install-cert: %w", err)
			}
			p, err := sim.InstallCertificate(args[0], raw)
			if err != nil {
				return fmt.Errorf("platform install-cert: %w", err)
			}
			fmt.Fprintf(stdoutOf(cmd), "platform %s in %s is certified (root fingerprint %s)\n", p.ID(), args[0], sim.Fingerprint(p.RootCertificate()))
			return nil
		},
	}
}

func newPlatformShowCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "show DIR [--json]",
		Short: "Show a platform's id, state (certified or awaiting its certificate) and pinned root",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := args[0]
			st := struct {
				Dir             string `json:"dir"`
				ID              string `json:"id"`
				State           string `json:"state"`
				RootFingerprint string `json:"root_fingerprint"`
				Request         string `json:"request,omitempty"`
			}{Dir: dir}
			p, err := sim.OpenPlatform(dir)
			switch {
			case err == nil:
				st.ID, st.State, st.RootFingerprint = p.ID(), "certified", sim.Fingerprint(p.RootCertificate())
			case errors.Is(err, sim.ErrPlatformPending):
				raw, _, rerr := sim.PendingRequest(dir)
				if rerr != nil {
					return fmt.Errorf("platform show: %w", rerr)
				}
				req, rerr := sim.ParseRequest(raw)
				if rerr != nil {
					return fmt.Errorf("platform show: %w", rerr)
				}
				root, rerr := sim.ReadCertificate(filepath.Join(dir, sim.RootCertFile))
				if rerr != nil {
					return fmt.Errorf("platform show: %w", rerr)
				}
				st.ID, st.State, st.RootFingerprint, st.Request = req.PlatformID, "awaiting certificate", sim.Fingerprint(root), filepath.Join(dir, sim.AttestationCSRFile)
			default:
				return fmt.Errorf("platform show: %w", err)
			}
			if asJSON {
				return printJSON(stdoutOf(cmd), st)
			}
			w := stdoutOf(cmd)
			fmt.Fprintf(w, "platform %s in %s: %s\nroot fingerprint %s\n", st.ID, dir, st.State, st.RootFingerprint)
			if st.Request != "" {
				fmt.Fprintf(w, "request %s: have the CA holder run 'teeup platform certify', then 'teeup platform install-cert %s CERT'\n", st.Request, dir)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// readLimitedFile reads a file of at most limit bytes (inputs from other
// parties are bounded before they are parsed).
func readLimitedFile(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	raw, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if int64(len(raw)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, limit)
	}
	return raw, nil
}
