package sandbox

import (
	"fmt"
	"path/filepath"

	"k8s.io/client-go/rest"
)

// writeFiles writes dir/kubeconfig and dir/env.
func (s *Sandbox) writeFiles(dir string) error {
	s.KubeconfigPath = filepath.Join(dir, "kubeconfig")
	kcfg := s.RESTConfig
	if s.APIProxy != nil {
		kcfg = rest.CopyConfig(s.RESTConfig)
		kcfg.Host = "https://" + s.APIProxy.Addr
	}
	if err := writeAdminKubeconfig(s.KubeconfigPath, kcfg); err != nil {
		return err
	}
	env := fmt.Sprintf("# irctl sandbox: source this file (. %s) to point kubectl, psql and irctl at it.\n"+
		"export KUBECONFIG=%s\nexport IRCTL_DATABASE_URL=%s\n",
		shellQuote(filepath.Join(dir, "env")), shellQuote(s.KubeconfigPath), shellQuote(s.ResponderDatabaseURL))
	if s.OrchestratorURL != "" {
		env += fmt.Sprintf("export ORCHESTRATOR_URL=%s\n", shellQuote(s.OrchestratorURL))
		env += fmt.Sprintf("# what the seeded attacker holds: a leaked API key and a stolen JWT\nexport ATTACKER_API_KEY=%s\nexport ATTACKER_JWT=%s\n",
			shellQuote(s.AttackerAPIKey), shellQuote(s.AttackerJWT))
	}
	env += s.notifyEnv()
	env += s.monitoringEnv()
	return writeFileAtomic(filepath.Join(dir, "env"), []byte(env))
}
