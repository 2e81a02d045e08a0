package app

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc/metadata"
)

// testCaller is one entry of a callers file the test writes, with the
// token whose digest it lists.
type testCaller struct {
	name  string
	token string
	orgs  []string
	// limits are the entry's optional overload limits.
	limits callerLimitsJSON
	// roles are the entry's optional roles ("operator").
	roles []string
}

// callerLimitsJSON is the optional limits of a callers file entry.
type callerLimitsJSON struct {
	RateLimit          *float64 `json:"rate_limit,omitempty"`
	RateBurst          *int     `json:"rate_burst,omitempty"`
	MaxConcurrentCalls *int     `json:"max_concurrent_calls,omitempty"`
}

// Callers of the security tests. Tokens are long random-looking strings so
// that a search of the logs for one cannot match anything else.
var (
	walletAPI   = testCaller{name: "wallet-api", token: "tok-wallet-api-5d0f6c1be2a94e7f", orgs: []string{testCustomerID}}
	otherOrgAPI = testCaller{name: "other-org-api", token: "tok-other-org-9a7c33e1d4b8f026", orgs: []string{"other-org"}}
)

// writeCallersFile writes callers to path as a callers file (0600, as
// service/auth requires) and returns path. It replaces the file atomically,
// as an operator's deployment tool would, so a reload never reads half a
// file.
func writeCallersFile(t testing.TB, path string, callers ...testCaller) string {
	t.Helper()
	type entry struct {
		Name          string   `json:"name"`
		TokenSHA256   string   `json:"token_sha256"`
		Organisations []string `json:"organisations"`
		callerLimitsJSON
		Roles []string `json:"roles,omitempty"`
	}
	var doc struct {
		Callers []entry `json:"callers"`
	}
	for _, c := range callers {
		sum := sha256.Sum256([]byte(c.token))
		doc.Callers = append(doc.Callers, entry{Name: c.name, TokenSHA256: hex.EncodeToString(sum[:]), Organisations: c.orgs, callerLimitsJSON: c.limits, Roles: c.roles})
	}
	data, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	writeFileAtomically(t, path, data)
	return path
}

// writeFileAtomically writes data to path 0600 through a rename.
func writeFileAtomically(t testing.TB, path string, data []byte) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// withToken is ctx carrying "authorization: Bearer <token>".
func withToken(ctx context.Context, token string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
}

// testPKI is a certificate authority made by the test: P-256 keys, so
// making one costs microseconds.
type testPKI struct {
	dir    string
	cert   *x509.Certificate
	key    *ecdsa.PrivateKey
	caFile string
	serial int64
}

// newTestPKI makes a CA named name and writes its certificate to dir.
func newTestPKI(t testing.TB, dir, name string) *testPKI {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	p := &testPKI{dir: dir, cert: cert, key: key, caFile: filepath.Join(dir, name+"-ca.pem"), serial: 1}
	if err := os.WriteFile(p.caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// pool is a cert pool holding the CA.
func (p *testPKI) pool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(p.cert)
	return pool
}

// issued is a certificate the CA signed, as files and as a tls.Certificate.
type issued struct {
	certFile, keyFile string
	tls               tls.Certificate
}

// serverCert issues a certificate for 127.0.0.1.
func (p *testPKI) serverCert(t testing.TB, name string) issued {
	t.Helper()
	return p.issue(t, name, func(c *x509.Certificate) {
		c.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
		c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	})
}

// clientCert issues a client certificate carrying the URI SANs uris.
func (p *testPKI) clientCert(t testing.TB, name string, uris ...string) issued {
	t.Helper()
	return p.issue(t, name, func(c *x509.Certificate) {
		for _, raw := range uris {
			u, err := url.Parse(raw)
			if err != nil {
				t.Fatal(err)
			}
			c.URIs = append(c.URIs, u)
		}
		c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	})
}

// issue signs a fresh key's certificate, shaped by adjust.
func (p *testPKI) issue(t testing.TB, name string, adjust func(*x509.Certificate)) issued {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p.serial++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(p.serial),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	adjust(tmpl)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.cert, &key.PublicKey, p.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	out := issued{certFile: filepath.Join(p.dir, name+".crt"), keyFile: filepath.Join(p.dir, name+".key")}
	if err := os.WriteFile(out.certFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(out.keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if out.tls, err = tls.X509KeyPair(certPEM, keyPEM); err != nil {
		t.Fatal(err)
	}
	return out
}
