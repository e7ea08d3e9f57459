package credaction

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"strings"
	"testing"
)

// RFC 7677 section 3's exchange (user "user", password "pencil"): the
// verifier we compute must make the server signature the RFC shows, and
// accept the client proof the RFC shows, exactly as a server holding only
// StoredKey and ServerKey checks them.
func TestScramVerifierAgainstRFC7677(t *testing.T) {
	const (
		saltB64  = "W22ZaJ0SNY7soEsUEjb6gQ=="
		authMsg  = "n=user,r=rOprNGfwEbeRWgbNEkqO,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
		proofB64 = "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
		sigB64   = "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
	)
	salt, _ := base64.StdEncoding.DecodeString(saltB64)
	v, err := scramVerifierWith("pencil", salt, 4096)
	if err != nil {
		t.Fatal(err)
	}
	prefix := "SCRAM-SHA-256$4096:" + saltB64 + "$"
	if !strings.HasPrefix(v, prefix) {
		t.Fatalf("format: %s", v)
	}
	keys := strings.Split(strings.TrimPrefix(v, prefix), ":")
	if len(keys) != 2 {
		t.Fatalf("format: %s", v)
	}
	storedKey, _ := base64.StdEncoding.DecodeString(keys[0])
	serverKey, _ := base64.StdEncoding.DecodeString(keys[1])

	sig, _ := base64.StdEncoding.DecodeString(sigB64)
	if got := hmacSHA256(serverKey, authMsg); !hmac.Equal(got, sig) {
		t.Errorf("ServerKey gives server signature %x, RFC 7677 says %x", got, sig)
	}
	proof, _ := base64.StdEncoding.DecodeString(proofB64)
	clientSig := hmacSHA256(storedKey, authMsg)
	clientKey := make([]byte, len(proof))
	for i := range proof {
		clientKey[i] = proof[i] ^ clientSig[i]
	}
	if sum := sha256.Sum256(clientKey); !bytes.Equal(sum[:], storedKey) {
		t.Error("StoredKey does not accept RFC 7677's client proof")
	}
}

func TestNewPasswordIsRandomASCII(t *testing.T) {
	a, b := newPassword(), newPassword()
	if a == b || len(a) != 43 || strings.ContainsAny(a, "'\\\"$ ") {
		t.Errorf("passwords %q %q", a, b)
	}
	v1, _ := scramVerifier(a)
	v2, _ := scramVerifier(a)
	if v1 == v2 {
		t.Error("each verifier needs a fresh salt")
	}
}
