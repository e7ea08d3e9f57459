package kubeaction

// What k8s.find looks at in an object, whatever its kind: its name and
// labels, the images and service accounts of any pod spec in it (a Pod's,
// a Deployment's template, a CronJob's job template), and a binding's
// subjects and role.

import (
	"fmt"
	"sort"
	"strings"
)

// matchObject returns what in o matches the step's indicators.
func matchObject(o map[string]any, a findArgs) []string {
	var what []string
	seen := map[string]bool{}
	add := func(s string) {
		if !seen[s] {
			seen[s] = true
			what = append(what, s)
		}
	}
	text := func(field, value string) {
		if value != "" && a.matchText(value) {
			add(field + " " + value)
		}
	}
	md, _ := o["metadata"].(map[string]any)
	name, _ := md["name"].(string)
	text("name", name)
	if labels, ok := md["labels"].(map[string]any); ok {
		keys := make([]string, 0, len(labels))
		for k := range labels {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			v, _ := labels[k].(string)
			if a.matchText(k) || a.matchText(v) {
				add("label " + k + "=" + v)
			}
		}
	}
	// A Deployment's old ReplicaSets keep the templates it rolled away
	// from: still a match (a rollback would run them again), but said so.
	old := ""
	if kind, _ := o["kind"].(string); kind == "ReplicaSet" {
		if spec, ok := o["spec"].(map[string]any); ok {
			if n, ok := spec["replicas"].(int64); ok && n == 0 {
				old = " (in an old revision with 0 replicas: a rollback would run it again)"
			}
		}
	}
	walkPodSpecs(o, func(images []string, serviceAccount string) {
		for _, img := range images {
			if img != "" && a.matchText(img) {
				add("image " + img + old)
			}
			if r := a.matchRegistry(img); r != "" {
				add(r + old)
			}
		}
		if serviceAccount != "" && a.matchText(serviceAccount) {
			add("service account " + serviceAccount + old)
		}
	})
	if subjects, ok := o["subjects"].([]any); ok {
		for _, s := range subjects {
			m, _ := s.(map[string]any)
			kind, _ := m["kind"].(string)
			ns, _ := m["namespace"].(string)
			n, _ := m["name"].(string)
			if a.matchText(n) || a.matchText(ns) {
				add("subject " + kind + " " + nsName(ns, n))
			}
		}
	}
	if ref, ok := o["roleRef"].(map[string]any); ok {
		kind, _ := ref["kind"].(string)
		n, _ := ref["name"].(string)
		if a.matchText(n) {
			add("role " + kind + " " + n)
		}
	}
	return what
}

func (a findArgs) matchText(s string) bool {
	l := strings.ToLower(s)
	for _, ind := range a.indicators {
		if strings.Contains(l, ind) {
			return true
		}
	}
	for _, re := range a.patterns {
		if re.MatchString(s) {
			return true
		}
	}
	return false
}

// matchRegistry says why an image's origin is an indicator, or "".
func (a findArgs) matchRegistry(img string) string {
	full := normalizeImage(img)
	for _, r := range a.registries {
		if fromRegistry(full, r) {
			return fmt.Sprintf("image %s from registry %s", img, r)
		}
	}
	if len(a.allowed) == 0 {
		return ""
	}
	for _, r := range a.allowed {
		if fromRegistry(full, r) {
			return ""
		}
	}
	return fmt.Sprintf("image %s from a registry not allowed (%s)", img, registryOf(full))
}

// normalizeImage writes an image reference in full, as the container
// runtime resolves it: busybox is docker.io/library/busybox.
func normalizeImage(img string) string {
	first, rest, ok := strings.Cut(img, "/")
	switch {
	case !ok:
		return "docker.io/library/" + img
	case strings.ContainsAny(first, ".:") || first == "localhost":
		return img
	}
	return "docker.io/" + first + "/" + rest
}

func registryOf(full string) string {
	host, _, _ := strings.Cut(full, "/")
	return host
}

// fromRegistry says whether a full image reference comes from a registry
// host or repository prefix.
func fromRegistry(full, prefix string) bool {
	prefix = strings.TrimSuffix(normalizePrefix(prefix), "/")
	return full == prefix || strings.HasPrefix(full, prefix+"/") || strings.HasPrefix(full, prefix+":") || strings.HasPrefix(full, prefix+"@")
}

// normalizePrefix completes a prefix without a registry host the way an
// image is completed (library and library/x are Docker Hub's); a
// registry host (with a dot or a port, or localhost) is kept.
func normalizePrefix(p string) string {
	first, _, _ := strings.Cut(p, "/")
	if strings.ContainsAny(first, ".:") || first == "localhost" {
		return p
	}
	return "docker.io/" + p
}

// walkPodSpecs calls fn for every pod spec in o: a map with containers.
func walkPodSpecs(v any, fn func(images []string, serviceAccount string)) {
	switch x := v.(type) {
	case map[string]any:
		if cs, ok := x["containers"].([]any); ok {
			var images []string
			for _, key := range []string{"initContainers", "containers", "ephemeralContainers"} {
				list, _ := x[key].([]any)
				if key == "containers" {
					list = cs
				}
				for _, c := range list {
					m, _ := c.(map[string]any)
					if img, _ := m["image"].(string); img != "" {
						images = append(images, img)
					}
				}
			}
			sa, _ := x["serviceAccountName"].(string)
			fn(images, sa)
			return
		}
		for k, child := range x {
			if k == "status" || k == "metadata" {
				continue // status repeats the spec's images, resolved
			}
			walkPodSpecs(child, fn)
		}
	case []any:
		for _, child := range x {
			walkPodSpecs(child, fn)
		}
	}
}
