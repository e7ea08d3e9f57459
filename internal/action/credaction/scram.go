package credaction

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
)

// scramIterations is PostgreSQL's default scram_iterations.
const scramIterations = 4096

// scramVerifier computes what PostgreSQL stores for a SCRAM-SHA-256
// password (RFC 5802, RFC 7677), in its rolpassword format:
//
//	SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>
//
// Sent as ALTER ROLE ... PASSWORD '<verifier>', the server stores it as
// is, so the cleartext never reaches the server or its log. The password
// must be ASCII without control characters, for which SASLprep changes
// nothing (irctl generates it so).
func scramVerifier(password string) (string, error) {
	salt := make([]byte, 16)
	_, _ = rand.Read(salt) // never fails: it crashes the program instead
	return scramVerifierWith(password, salt, scramIterations)
}

func scramVerifierWith(password string, salt []byte, iterations int) (string, error) {
	salted, err := pbkdf2.Key(sha256.New, password, salt, iterations, sha256.Size)
	if err != nil {
		return "", err
	}
	clientKey := hmacSHA256(salted, "Client Key")
	storedKey := sha256.Sum256(clientKey)
	serverKey := hmacSHA256(salted, "Server Key")
	b64 := base64.StdEncoding.EncodeToString
	return fmt.Sprintf("SCRAM-SHA-256$%d:%s$%s:%s", iterations, b64(salt), b64(storedKey[:]), b64(serverKey)), nil
}

func hmacSHA256(key []byte, msg string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}

// newPassword is 32 random bytes, base64url without padding (43 ASCII
// characters: no quoting or SASLprep issues in any client).
func newPassword() string {
	raw := make([]byte, 32)
	_, _ = rand.Read(raw)
	defer clear(raw)
	return base64.RawURLEncoding.EncodeToString(raw)
}
