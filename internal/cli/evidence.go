package cli

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"irctl.dev/irctl/internal/action"
	"irctl.dev/irctl/internal/evidence"
	"irctl.dev/irctl/internal/exitcode"
	"irctl.dev/irctl/internal/incident"
	"irctl.dev/irctl/internal/kube"
)

// evidenceOpener opens the incident's evidence store once, on first use.
type evidenceOpener struct {
	once  sync.Once
	store *evidence.Store
	err   error
}

// signingKeyEnv names the ed25519 private key (PEM) that, when set, signs
// the manifest after every commit.
const signingKeyEnv = "IRCTL_EVIDENCE_KEY"

// evidenceStore is action.Env.Evidence: the current incident's store,
// opened on first use with the collector's identity. A client dry run
// writes nothing, evidence included.
func (f *factory) evidenceStore() (*evidence.Store, error) {
	if f.dryRun == action.DryRunClient {
		return nil, errors.New("no evidence is written under --dry-run=client")
	}
	f.evidence.once.Do(func() {
		inc, err := f.openIncident()
		if err != nil {
			f.evidence.err = err
			return
		}
		f.evidence.store, f.evidence.err = evidence.Open(inc.Dir(), f.evidenceMeta())
		if f.evidence.err != nil {
			return
		}
		if p := os.Getenv(signingKeyEnv); p != "" {
			key, err := evidence.LoadPrivateKey(p)
			if err != nil {
				f.evidence.store, f.evidence.err = nil, exitcode.Wrap(exitcode.Usage, fmt.Errorf("%s: %w", signingKeyEnv, err))
				return
			}
			f.evidence.store.SetSigningKey(key)
		}
	})
	return f.evidence.store, f.evidence.err
}

// evidenceMeta gathers who is collecting: the OS user, the identity the
// API server sees and the database role, best effort ("unknown: why").
func (f *factory) evidenceMeta() evidence.Meta {
	m := evidence.Meta{Operator: incident.Operator(), ToolVersion: Version(), RunbookHash: f.runbookHash}
	if m.RunbookHash == "" {
		m.RunbookHash = "unknown: no runbook loaded"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	m.KubeIdentity = f.kubeIdentity(ctx)
	m.DBUser = f.dbUser(ctx)
	return m
}

func (f *factory) kubeIdentity(ctx context.Context) string {
	if _, err := f.kubeFlags.ToRawKubeConfigLoader().ClientConfig(); err != nil {
		return "unknown: kubernetes not configured (" + oneLine(err.Error()) + ")"
	}
	c, err := f.kubeClients()
	if err != nil {
		return "unknown: " + oneLine(err.Error())
	}
	r, err := c.Core.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		return "unknown: SelfSubjectReview: " + kube.Short(err)
	}
	u := r.Status.UserInfo
	if len(u.Groups) > 0 {
		return fmt.Sprintf("%s (groups %s)", u.Username, strings.Join(u.Groups, ","))
	}
	return u.Username
}

func (f *factory) dbUser(ctx context.Context) string {
	if f.databaseURL == "" && os.Getenv("PGHOST") == "" && os.Getenv("PGDATABASE") == "" {
		return "unknown: no database configured"
	}
	pool, err := f.database(ctx)
	if err != nil {
		return "unknown: " + oneLine(err.Error())
	}
	var user string
	if err := pool.QueryRow(ctx, "SELECT current_user").Scan(&user); err != nil {
		return "unknown: " + oneLine(err.Error())
	}
	return user
}

func newEvidenceCmd(f *factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "evidence",
		Short: "List, verify, sign and pack the incident's evidence",
		Long: `Evidence collected by the preserve and assess steps lives in the incident's
evidence/ directory: files written once (0600), and manifest.jsonl, a
hash-chained list of every item with its SHA-256, size, source (server,
objects with UID and resourceVersion, or SQL text, params and row count),
collection times, collector identity, irctl version and runbook hash.

After each commit the incident journal records an anchor (the entry count
and the hash of the newest manifest line), so that removing or rewriting
the newest entries is caught by verify. With IRCTL_EVIDENCE_KEY naming an
ed25519 private key (irctl evidence keygen), every commit also re-signs the
manifest (manifest.sig).`,
	}
	cmd.AddCommand(newEvidenceListCmd(f), newEvidenceVerifyCmd(f), newEvidencePackCmd(f), newEvidenceSignCmd(f), newEvidenceKeygenCmd(f))
	return cmd
}

func newEvidenceListCmd(f *factory) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the evidence items in manifest order",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			inc, err := f.openIncident()
			if err != nil {
				return err
			}
			entries, err := evidence.ReadManifest(inc.Dir())
			if err != nil {
				return err
			}
			if f.jsonOutput() {
				if entries == nil {
					entries = []evidence.Entry{}
				}
				return f.printJSON(entries)
			}
			if len(entries) == 0 {
				fmt.Fprintf(f.io.Out, "no evidence collected for %s yet\n", inc.ID)
				return nil
			}
			tw := tabwriter.NewWriter(f.io.Out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "SEQ\tNAME\tSIZE\tSHA256\tCOLLECTED (UTC)\tSOURCE")
			for _, e := range entries {
				fmt.Fprintf(tw, "%d\t%s\t%d\t%s\t%s\t%s\n", e.Seq, e.Name, e.Size, e.SHA256[:min(12, len(e.SHA256))], e.CollectedEnd.UTC().Format(time.RFC3339), describeSource(e.Source))
			}
			return tw.Flush()
		},
	}
}

// describeSource is a short, one-line account of where an item came from.
func describeSource(s evidence.Source) string {
	switch s.Kind {
	case evidence.KindSQL:
		d := "sql: " + oneLine(s.SQL)
		if len(d) > 60 {
			d = d[:57] + "..."
		}
		if s.Rows != nil {
			d += fmt.Sprintf(" (%d rows)", *s.Rows)
		}
		return d
	case evidence.KindKubernetes:
		if len(s.Objects) == 1 {
			return "kubernetes: " + s.Objects[0].String()
		}
		return fmt.Sprintf("kubernetes: %d objects", len(s.Objects))
	default:
		return s.Kind + ": " + oneLine(s.Query)
	}
}

func newEvidenceVerifyCmd(f *factory) *cobra.Command {
	var pubPath string
	cmd := &cobra.Command{
		Use:   "verify [--public-key FILE]",
		Short: "Re-hash every item and check the manifest chain (and signature)",
		Long: `Re-hashes every evidence item against the manifest and checks the manifest's
hash chain, and compares the manifest with the anchors the incident journal
holds for it (the newest entries removed, rewritten, or never anchored).
Prints each problem on its own line, naming the item (a changed, missing or
unlisted file; a manifest line edited, removed or reordered; a bad
signature), then a summary line. Exits 1 if anything is wrong. Commits wait
while it reads.

With --public-key, manifest.sig must be a valid signature by that key over the
whole manifest (see irctl evidence sign).`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			var pub ed25519.PublicKey
			if pubPath != "" {
				var err error
				if pub, err = evidence.LoadPublicKey(pubPath); err != nil {
					return exitcode.Wrap(exitcode.Usage, err)
				}
			}
			inc, err := f.openIncident()
			if err != nil {
				return err
			}
			r, err := evidence.Verify(inc.Dir(), pub)
			if err != nil {
				return err
			}
			if f.jsonOutput() {
				if r.Problems == nil {
					r.Problems = []evidence.Problem{}
				}
				if err := f.printJSON(r); err != nil {
					return err
				}
			} else {
				for _, p := range r.Problems {
					fmt.Fprintln(f.io.Out, oneLine(p.String()))
				}
				for _, n := range r.Notes {
					fmt.Fprintln(f.io.Out, "note: "+oneLine(n))
				}
				fmt.Fprintln(f.io.Out, r.Summary())
			}
			if !r.OK() {
				return exitcode.New(exitcode.Error, "evidence of %s failed verification: %d problem(s)", inc.ID, len(r.Problems))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&pubPath, "public-key", "", "ed25519 public key (PEM) that must have signed the manifest")
	return cmd
}

func newEvidencePackCmd(f *factory) *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "pack [-o FILE]",
		Short: "Write the evidence as a reproducible tar.gz bundle",
		Long: `Verifies the evidence, then writes the manifest, its signature and every item
as a reproducible tar.gz (same evidence, same bytes), from one reading of
the manifest under the evidence store's lock (commits wait meanwhile): default
./<incident>-evidence.tar.gz, "-o -" for stdout. An existing file is never
overwritten. Here -o names the bundle, not the output format.`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			inc, err := f.openIncident()
			if err != nil {
				return err
			}
			// Pack verifies and packs one reading of the manifest under the
			// store's lock; a refusal lists the problems.
			notVerified := func(err error) error {
				var nv *evidence.NotVerified
				if !errors.As(err, &nv) {
					return err
				}
				for _, p := range nv.Report.Problems {
					fmt.Fprintln(f.io.Out, oneLine(p.String()))
				}
				return exitcode.New(exitcode.Error, "evidence of %s failed verification (%d problem(s)); not packed", inc.ID, len(nv.Report.Problems))
			}
			if out == "" {
				out = inc.ID + "-evidence.tar.gz"
			}
			if out == "-" {
				_, err := evidence.Pack(inc.Dir(), f.io.Out)
				return notVerified(err)
			}
			file, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
			if err != nil {
				return exitcode.Wrap(exitcode.Usage, fmt.Errorf("bundle: %w (never overwritten)", unwrapPathErr(err)))
			}
			h := sha256.New()
			info, err := evidence.Pack(inc.Dir(), io.MultiWriter(file, h))
			if err == nil {
				err = file.Sync()
			}
			if cerr := file.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				os.Remove(out)
				return notVerified(err)
			}
			fmt.Fprintf(f.io.Out, "wrote %s: %d item(s), sha256 %s\n", out, info.Items, hex.EncodeToString(h.Sum(nil)))
			return nil
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", "bundle file (default ./<incident>-evidence.tar.gz; - for stdout)")
	return cmd
}

func newEvidenceSignCmd(f *factory) *cobra.Command {
	var keyPath string
	cmd := &cobra.Command{
		Use:   "sign --key FILE",
		Short: "Sign the evidence manifest with an ed25519 key (manifest.sig)",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			key, err := evidence.LoadPrivateKey(keyPath)
			if err != nil {
				return exitcode.Wrap(exitcode.Usage, err)
			}
			inc, err := f.openIncident()
			if err != nil {
				return err
			}
			info, err := evidence.Sign(inc.Dir(), key)
			if err != nil {
				return err
			}
			if f.jsonOutput() {
				return f.printJSON(info)
			}
			fmt.Fprintf(f.io.Out, "signed %d manifest line(s) of %s with key %s (manifest sha256 %s)\n", info.Lines, inc.ID, info.Key, info.ManifestSHA256)
			return nil
		},
	}
	cmd.Flags().StringVar(&keyPath, "key", "", "ed25519 private key (PEM, from irctl evidence keygen)")
	_ = cmd.MarkFlagRequired("key")
	return cmd
}

func newEvidenceKeygenCmd(f *factory) *cobra.Command {
	var keyPath, pubPath string
	cmd := &cobra.Command{
		Use:   "keygen [--key FILE] [--public-key FILE]",
		Short: "Create an ed25519 key pair for signing evidence (files 0600, never overwritten)",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			if pubPath == "" {
				pubPath = strings.TrimSuffix(keyPath, ".key") + ".pub"
			}
			pub, err := evidence.GenerateKey(keyPath, pubPath)
			if err != nil {
				return err
			}
			fmt.Fprintf(f.io.Out, "wrote private key %s and public key %s (%s)\n", keyPath, pubPath, evidence.KeyFingerprint(pub))
			return nil
		},
	}
	cmd.Flags().StringVar(&keyPath, "key", "irctl-evidence.key", "private key file to create")
	cmd.Flags().StringVar(&pubPath, "public-key", "", "public key file to create (default: the key file with .pub)")
	return cmd
}
