package runbook

import (
	"reflect"
	"testing"
)

type oneSpec Spec

func (o oneSpec) Spec(name string) (Spec, bool) { return Spec(o), name == o.Name }

// A map param's keys are templates too (set-image's {container: image}),
// and an unset param in a key leaves the step waiting for it.
func TestMapKeysAreTemplated(t *testing.T) {
	spec := oneSpec{Name: "k8s.set-image", Params: []ParamDef{{Name: "images", Type: Map}}}
	doc := `apiVersion: irctl/v1
kind: Runbook
name: k
params:
  container: {default: app}
  image: {default: "ghcr.io/x/app:v2"}
  other: {}
phases:
  eradicate:
    - name: set
      action: k8s.set-image
      with: {images: {"{{ .container }}": "{{ .image }}"}}
    - name: waits
      action: k8s.set-image
      with: {images: {"{{ .other }}": "{{ .image }}"}}
`
	rb, err := Load("k.yaml", []byte(doc), Options{Catalog: spec})
	if err != nil {
		t.Fatal(err)
	}
	got := rb.Phases["eradicate"][0].Params.Map("images")
	if !reflect.DeepEqual(got, map[string]string{"app": "ghcr.io/x/app:v2"}) {
		t.Fatalf("images = %v", got)
	}
	if u := rb.Phases["eradicate"][1].Unresolved; !reflect.DeepEqual(u, []string{"other"}) {
		t.Fatalf("unresolved = %v", u)
	}
	if !rb.Phases["eradicate"][1].Uses("other") {
		t.Fatal("a key's param is not counted as used")
	}
}
