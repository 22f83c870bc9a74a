package cli

import (
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/teeup/teeup/keyfile"
	"github.com/teeup/teeup/ledger"
	"github.com/teeup/teeup/nodeapi"
)

// resolveKeyPath maps a devnet key name ("operator-1") to its file when
// --devnet is given and no such file exists in the working directory.
func resolveKeyPath(t *target, name string) string { return t.keyPath(name) }

// resolveAddress accepts a hex address, a public or private key file, or a
// devnet key name.
func resolveAddress(t *target, s string) (ledger.Address, error) {
	if a, err := ledger.ParseAddress(s); err == nil {
		return a, nil
	}
	path := resolveKeyPath(t, s)
	pub, err := keyfile.ReadPublic(path)
	if err != nil {
		if p2 := path + keyfile.PublicSuffix; p2 != path {
			if pub2, err2 := keyfile.ReadPublic(p2); err2 == nil {
				return ledger.AddressOf(pub2)
			}
		}
		return ledger.Address{}, fmt.Errorf("%q is neither a hex address nor a key file: %w", s, err)
	}
	return ledger.AddressOf(pub)
}

func newPayCmd() *cobra.Command {
	var t target
	var from, to string
	var amount, nonce uint64
	var asJSON, viaAdmin bool
	cmd := &cobra.Command{
		Use:   "pay --from KEY --to ADDRESS --amount N",
		Short: "Send a payment and wait until it is committed in a block",
		Long: `Sign a payment with the ed25519 key file --from and send it to a node over attested TLS
(the node's quote is checked against the expected MRENCLAVE before anything is sent). The
command returns once the payment is committed in a block and prints the height, or exits 1
with the node's reason if it is rejected. With --admin the payment goes through the node's
admin API — its unix socket, or with --host HOST:PORT --node-id N --operator-key KEY the
remote host's over mutual TLS — which works while client ingress is closed (operator test
payments; only the host's own operators may submit there).

--to takes a hex address, a key file or, with --devnet, a devnet key name (user-3, operator-1).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if from == "" || to == "" || amount == 0 {
				return errors.New("pay: --from KEY, --to ADDRESS and a positive --amount are required")
			}
			priv, err := keyfile.ReadPrivate(resolveKeyPath(&t, from))
			if err != nil {
				return fmt.Errorf("pay: %w", err)
			}
			toAddr, err := resolveAddress(&t, to)
			if err != nil {
				return fmt.Errorf("pay: --to: %w", err)
			}
			fromAddr, err := ledger.AddressOf(priv.Public().(ed25519.PublicKey))
			if err != nil {
				return err
			}
			chainID, acct, submit, err := payPath(cmd, &t, viaAdmin, fromAddr)
			if err != nil {
				return err
			}
			n := nonce
			if n == 0 {
				n = acct.Nonce + 1
			}
			tx := ledger.NewPayment(chainID, priv, toAddr, amount, n)
			rec, err := submit(tx.Encode())
			if code := nodeapi.TxCode(err); code != "" {
				return fmt.Errorf("pay: %w (code %s)", err, code)
			}
			if err != nil {
				return fmt.Errorf("pay: %w", err)
			}
			if asJSON {
				return json.NewEncoder(stdoutOf(cmd)).Encode(rec)
			}
			fmt.Fprintf(stdoutOf(cmd), "committed tx %s at height %d (%d from %s to %s, nonce %d)\n", rec.TxID, rec.Height, amount, fromAddr.String()[:12], toAddr.String()[:12], n)
			return nil
		},
	}
	t.bind(cmd, true)
	cmd.Flags().StringVar(&from, "from", "", "payer's ed25519 key file (or devnet key name)")
	cmd.Flags().StringVar(&to, "to", "", "payee address, key file or devnet key name")
	cmd.Flags().Uint64Var(&amount, "amount", 0, "amount to pay")
	cmd.Flags().Uint64Var(&nonce, "nonce", 0, "transaction nonce (default: the account's next)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the receipt as JSON")
	cmd.Flags().BoolVar(&viaAdmin, "admin", false, "submit through the admin API — its socket, or with --host the remote host's (works while ingress is closed)")
	return cmd
}

// payPath returns the chain id, the payer's account and a submit function
// over the client API or the admin socket.
func payPath(cmd *cobra.Command, t *target, viaAdmin bool, from ledger.Address) (string, *nodeapi.Account, func([]byte) (*nodeapi.Receipt, error), error) {
	ctx := cmd.Context()
	chainID, err := chainIDOf(t)
	if err != nil {
		return "", nil, nil, err
	}
	if viaAdmin || (t.host != "" && t.addr == "") {
		a, err := t.admin()
		if err != nil {
			return "", nil, nil, err
		}
		acct, err := a.Account(ctx, from.String())
		if err != nil {
			return "", nil, nil, fmt.Errorf("pay: read payer account: %w", err)
		}
		return chainID, acct, func(tx []byte) (*nodeapi.Receipt, error) { return a.Submit(ctx, tx) }, nil
	}
	c, err := t.client()
	if err != nil {
		return "", nil, nil, err
	}
	acct, err := c.Account(ctx, from.String())
	if err != nil {
		return "", nil, nil, fmt.Errorf("pay: read payer account: %w", err)
	}
	return chainID, acct, func(tx []byte) (*nodeapi.Receipt, error) { return c.Submit(ctx, tx) }, nil
}

// chainIDOf finds the chain id from --chain-id, or the devnet's genesis.
func chainIDOf(t *target) (string, error) { return t.chain() }

func newBalanceCmd() *cobra.Command {
	var t target
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "balance ADDRESS",
		Short: "Show an account's committed balance and next nonce",
		Long:  "ADDRESS is a hex address, a key file or, with --devnet, a devnet key name (operator-1, user-2).",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			addr, err := resolveAddress(&t, args[0])
			if err != nil {
				return fmt.Errorf("balance: %w", err)
			}
			c, err := t.client()
			if err != nil {
				return err
			}
			a, err := c.Account(cmd.Context(), addr.String())
			if err != nil {
				return fmt.Errorf("balance: %w", err)
			}
			if asJSON {
				return json.NewEncoder(stdoutOf(cmd)).Encode(a)
			}
			fmt.Fprintf(stdoutOf(cmd), "%s balance %s nonce %d\n", a.Address, strconv.FormatUint(a.Balance, 10), a.Nonce)
			return nil
		},
	}
	t.bind(cmd, false)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
