package sandbox

// The rest of a working cluster around envtest's etcd and kube-apiserver:
// kube-controller-manager and kube-scheduler (upstream, built by `make
// sandbox-bins`) and kwok, whose simulated kubelets take the seeded Nodes
// and move their pods through kwok's "fast" stages (testdata/sandbox/kwok):
// scheduled pods become Running and Ready, Job pods complete, deleted pods
// go. Each runs as a child process in its own process group, logging to
// the sandbox's kube directory.

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"irctl.dev/irctl"
)

// The sandbox's server binaries, all in the bin directory.
var (
	controlPlaneBins = []string{"kube-apiserver", "etcd"}
	clusterBins      = []string{"kube-controller-manager", "kube-scheduler", "kwok"}
)

// kcmControllers leaves out the controllers that need a cloud, a network
// plugin or real volumes (the seed binds its one volume itself), and the
// node lifecycle controller: its one use here, lifting the not-ready taint
// the API server puts on new Nodes, the seed does at once; kwok keeps the
// seeded Nodes Ready; and it would mark the bare Nodes tests create (no
// kubelet, never Ready) unreachable, and their pods not ready, 50s later.
const kcmControllers = "*,-nodeipam,-nodelifecycle,-cloud-node-lifecycle,-service,-route,-persistentvolume-binder,-attachdetach"

// kwok simulates the kubelets of the Nodes labelled so (the seeded ones):
// a Node created without the label, as tests do for a node no kubelet
// serves, stays without one.
const (
	kwokNodeLabel = "kwok.x-k8s.io/node"
	kwokNodeValue = "fake"
)

// podCIDR is where kwok takes the simulated pods' addresses from (its
// default, 10.0.0.1/24, overlaps envtest's Service range).
const podCIDR = "10.244.0.1/16"

// component is one server of the sandbox run as a child process.
type component struct {
	name   string
	cmd    *exec.Cmd
	log    string
	exited chan struct{}
	err    error // of Wait, once exited is closed
}

// startComponent starts bin with args in its own process group, output to
// dir/NAME.log.
func startComponent(name, bin string, args []string, dir string) (*component, error) {
	logPath := filepath.Join(dir, name+".log")
	out, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	defer out.Close() // the child keeps its own descriptor
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = out, out
	ownProcessGroup(cmd)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	c := &component{name: name, cmd: cmd, log: logPath, exited: make(chan struct{})}
	go func() {
		c.err = cmd.Wait()
		close(c.exited)
	}()
	return c, nil
}

// running returns an error quoting its log if c has exited.
func (c *component) running() error {
	select {
	case <-c.exited:
		out, _ := os.ReadFile(c.log)
		return fmt.Errorf("%s exited (%v)\n--- end of %s:\n%s", c.name, c.err, filepath.Base(c.log), tail(out, 15))
	default:
		return nil
	}
}

// stop asks c to exit (SIGTERM) and, after timeout, kills its process
// group.
func (c *component) stop(timeout time.Duration) {
	select {
	case <-c.exited:
		return
	default:
	}
	_ = terminate(c.cmd.Process.Pid)
	select {
	case <-c.exited:
	case <-time.After(timeout):
		killGroup(c.cmd.Process.Pid)
		<-c.exited
	}
}

// cluster is the set of components beside envtest's servers.
type cluster struct {
	comps []*component
}

// startControllers starts kube-controller-manager and kube-scheduler
// against the API server of cfg, with admin credentials written to
// kubeDir/admin.kubeconfig. The controller manager signs ServiceAccount
// tokens with the key envtest gave the API server.
func (s *Sandbox) startControllers(binDir string) error {
	kubeconfig := filepath.Join(s.kubeDir, "admin.kubeconfig")
	if err := writeAdminKubeconfig(kubeconfig, s.RESTConfig); err != nil {
		return err
	}
	auth := []string{
		"--kubeconfig=" + kubeconfig,
		"--authentication-kubeconfig=" + kubeconfig,
		"--authorization-kubeconfig=" + kubeconfig,
		"--leader-elect=false",
		"--secure-port=0",
	}
	saKey := filepath.Join(s.env.ControlPlane.APIServer.CertDir, "sa-signer.key")
	kcm := append([]string{
		"--service-account-private-key-file=" + saKey,
		"--controllers=" + kcmControllers,
	}, auth...)
	for _, c := range []struct {
		name string
		args []string
	}{{"kube-controller-manager", kcm}, {"kube-scheduler", auth}} {
		comp, err := startComponent(c.name, filepath.Join(binDir, c.name), c.args, s.kubeDir)
		if err != nil {
			return err
		}
		s.cluster.comps = append(s.cluster.comps, comp)
		s.record(c.name, comp.cmd.Process.Pid, comp.cmd.Path)
	}
	return nil
}

// startKwok starts kwok, managing the seeded Nodes, with the fast stages. Start
// it once the seeded Nodes report Ready: kwok's node-initialize stage then
// leaves their status (and the log endpoints registered there) alone.
func (s *Sandbox) startKwok(binDir string) error {
	config := filepath.Join(s.kubeDir, "kwok.yaml")
	stages, err := kwokStages()
	if err != nil {
		return err
	}
	if err := os.WriteFile(config, stages, 0o600); err != nil {
		return err
	}
	args := []string{
		"--kubeconfig=" + filepath.Join(s.kubeDir, "admin.kubeconfig"),
		"--config=" + config,
		"--manage-all-nodes=false",
		"--manage-nodes-with-label-selector=" + kwokNodeLabel + "=" + kwokNodeValue,
		"--cidr=" + podCIDR,
	}
	comp, err := startComponent("kwok", filepath.Join(binDir, "kwok"), args, s.kubeDir)
	if err != nil {
		return err
	}
	s.cluster.comps = append(s.cluster.comps, comp)
	s.record("kwok", comp.cmd.Process.Pid, comp.cmd.Path)
	return nil
}

// running returns the first component that has exited, as an error.
func (c *cluster) running() error {
	for _, comp := range c.comps {
		if err := comp.running(); err != nil {
			return err
		}
	}
	return nil
}

// stop stops the components, the last started first, concurrently.
func (c *cluster) stop() {
	var wg sync.WaitGroup
	for _, comp := range c.comps {
		wg.Go(func() { comp.stop(10 * time.Second) })
	}
	wg.Wait()
}

// kwokStages joins testdata/sandbox/kwok/*.yaml into one multi-document
// YAML for kwok's --config.
func kwokStages() ([]byte, error) {
	const dir = "testdata/sandbox/kwok"
	entries, err := fs.ReadDir(irctl.SandboxSeed, dir)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".yaml") {
			continue
		}
		data, err := irctl.SandboxSeed.ReadFile(dir + "/" + e.Name())
		if err != nil {
			return nil, err
		}
		b.WriteString("---\n")
		b.Write(data)
	}
	if b.Len() == 0 {
		return nil, errors.New("no kwok stages in " + dir)
	}
	return b.Bytes(), nil
}

// writeAdminKubeconfig writes a kubeconfig (0600) for cfg's client
// certificate.
func writeAdminKubeconfig(path string, cfg *rest.Config) error {
	data, err := clientcmd.Write(kubeconfigFor(cfg))
	if err != nil {
		return err
	}
	return writeFileAtomic(path, data)
}

// kubeconfigFor is a kubeconfig holding cfg's server and client
// certificate, with the context irctl-sandbox.
func kubeconfigFor(cfg *rest.Config) clientcmdapi.Config {
	const name = "irctl-sandbox"
	kc := clientcmdapi.NewConfig()
	kc.Clusters[name] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos[name+"-admin"] = &clientcmdapi.AuthInfo{
		ClientCertificateData: cfg.CertData,
		ClientKeyData:         cfg.KeyData,
	}
	kc.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: name + "-admin", Namespace: DemoNamespace}
	kc.CurrentContext = name
	return *kc
}
