package sandbox

// The simulated kubelets' request decoding (PodLogOptions, as the API
// server passes them on) and their serving certificate.

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"net/url"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// decodeLogOptions reads the query parameters of PodLogOptions that the
// API server passes on to the kubelet.
func decodeLogOptions(q url.Values) (*corev1.PodLogOptions, error) {
	o := &corev1.PodLogOptions{Container: q.Get("container")}
	var errs []error
	flag := func(name string) bool {
		v, err := strconv.ParseBool(q.Get(name))
		errs = append(errs, err)
		return v
	}
	number := func(name string) *int64 {
		n, err := strconv.ParseInt(q.Get(name), 10, 64)
		errs = append(errs, err)
		return &n
	}
	for name := range q {
		switch name {
		case "follow":
			o.Follow = flag(name)
		case "previous":
			o.Previous = flag(name)
		case "timestamps":
			o.Timestamps = flag(name)
		case "insecureSkipTLSVerifyBackend":
			o.InsecureSkipTLSVerifyBackend = flag(name)
		case "sinceSeconds":
			o.SinceSeconds = number(name)
		case "tailLines":
			o.TailLines = number(name)
		case "limitBytes":
			o.LimitBytes = number(name)
		case "sinceTime":
			t, err := time.Parse(time.RFC3339, q.Get(name))
			errs = append(errs, err)
			o.SinceTime = &metav1.Time{Time: t}
		case "stream":
			o.Stream = ptr.To(q.Get(name))
		}
	}
	return o, errors.Join(errs...)
}

// validLogOptions is the API's validation of PodLogOptions, which the
// kubelet repeats.
func validLogOptions(o *corev1.PodLogOptions) bool {
	switch {
	case o.SinceSeconds != nil && o.SinceTime != nil,
		o.SinceSeconds != nil && *o.SinceSeconds < 1,
		o.TailLines != nil && *o.TailLines < 0,
		o.LimitBytes != nil && *o.LimitBytes < 1:
		return false
	case o.Stream != nil:
		return *o.Stream == corev1.LogStreamAll || *o.Stream == corev1.LogStreamStdout || *o.Stream == corev1.LogStreamStderr
	}
	return true
}

// selfSignedCert is the simulated kubelets' serving certificate. The API
// server does not check it (the sandbox gives it no
// --kubelet-certificate-authority), as with kubelets' default self-signed
// certificates.
func selfSignedCert(nodes []string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return tls.Certificate{}, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "irctl-sandbox-kubelet"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.ParseIP(kubeletAddress)},
		DNSNames:     append([]string{"localhost"}, nodes...),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
