package auth_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"

	recoveryv1 "github.com/walletprovider/recoveryservice/gen/recovery/v1"
	"github.com/walletprovider/recoveryservice/service/auth"
)

// testCA is a certificate authority made by the test (P-256: cheap to
// generate, unlike RSA-4096).
type testCA struct {
	cert    *x509.Certificate
	key     *ecdsa.PrivateKey
	pemFile string
	serial  int64
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	key := newECKey(t)
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	ca := &testCA{cert: cert, key: key, serial: 1}
	ca.pemFile = writePEM(t, strings.ReplaceAll(name, " ", "-")+".pem", "CERTIFICATE", der)
	return ca
}

func newECKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// writePEM writes one PEM block to a fresh file and returns its path.
func writePEM(t *testing.T, name, blockType string, der []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: blockType, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// issue signs a leaf certificate for the given SANs and usage, returning it
// as a tls.Certificate and as PEM files (certificate, key).
func (ca *testCA) issue(t *testing.T, usage x509.ExtKeyUsage, dns []string, uris []string, ips []net.IP) (tls.Certificate, string, string) {
	t.Helper()
	key := newECKey(t)
	ca.serial++
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(ca.serial),
		Subject:      pkix.Name{CommonName: "wallet-api"}, // ignored: only SANs name callers
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
		DNSNames:     dns,
		IPAddresses:  ips,
	}
	for _, s := range uris {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = append(tmpl.URIs, u)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile := writePEM(t, "cert.pem", "CERTIFICATE", der)
	keyFile := writePEM(t, "key.pem", "PRIVATE KEY", keyDER)
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	return pair, certFile, keyFile
}

// mtlsSetup is a CA, a server certificate for 127.0.0.1 and the files
// ServerTLSConfig reads.
type mtlsSetup struct {
	ca                *testCA
	certFile, keyFile string
}

func newMTLSSetup(t *testing.T) mtlsSetup {
	t.Helper()
	ca := newTestCA(t, "recovery test CA")
	_, certFile, keyFile := ca.issue(t, x509.ExtKeyUsageServerAuth, nil, nil, []net.IP{net.IPv4(127, 0, 0, 1)})
	return mtlsSetup{ca: ca, certFile: certFile, keyFile: keyFile}
}

// clientCreds are TLS client credentials trusting the server's CA,
// presenting cert (when not nil) whatever the server asks for, and recording the negotiated TLS version.
func (s mtlsSetup) clientCreds(t *testing.T, cert *tls.Certificate, maxVersion uint16, version *atomic.Uint32) credentials.TransportCredentials {
	t.Helper()
	roots := x509.NewCertPool()
	roots.AddCert(s.ca.cert)
	cfg := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS10, MaxVersion: maxVersion} //nolint:gosec // the test probes the server's minimum.
	if cert != nil {
		// NOTE: Go's client leaves out a certificate whose issuer is not
		// among the CAs the server asks for; present it regardless, so the
		// server's own verification is what is tested.
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return cert, nil
		}
	}
	if version != nil {
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			version.Store(uint32(cs.Version))
			return nil
		}
	}
	return credentials.NewTLS(cfg)
}

func TestMTLS(t *testing.T) {
	setup := newMTLSSetup(t)
	serverTLS, err := auth.ServerTLSConfig(setup.certFile, setup.keyFile, setup.ca.pemFile)
	if err != nil {
		t.Fatalf("ServerTLSConfig: %v", err)
	}
	if serverTLS.ClientAuth != tls.VerifyClientCertIfGiven || serverTLS.MinVersion != tls.VersionTLS12 {
		t.Fatalf("ClientAuth %v, MinVersion %x; want VerifyClientCertIfGiven, TLS 1.2", serverTLS.ClientAuth, serverTLS.MinVersion)
	}
	a := newAuthenticator(t, auth.Config{ClientTrustDomain: "test.example"}, nil)
	addr := startServer(t, a, credentials.NewTLS(serverTLS))

	client := func(dns []string, uris []string) *tls.Certificate {
		pair, _, _ := setup.ca.issue(t, x509.ExtKeyUsageClientAuth, dns, uris, nil)
		return &pair
	}
	walletAPI := client(nil, []string{"spiffe://test.example/wallet-api"})
	// Names that end in a caller's name but are not it: the last-segment
	// rule that once accepted them made support-tool (every organisation)
	// of any certificate a trusted CA signed.
	attackerSPIFFE := client(nil, []string{"spiffe://attacker.example/ns/dev/sa/support-tool"})
	attackerHTTPS := client(nil, []string{"https://evil.example/x/support-tool"})
	nestedPath := client(nil, []string{"spiffe://test.example/ns/payments/sa/wallet-api"})
	wholeURI := client(nil, []string{"spiffe://test.example/support"})
	batch := client([]string{"batch-worker.internal"}, nil)
	stranger := client([]string{"stranger.internal"}, []string{"spiffe://test.example/ns/x/sa/stranger"})
	twoCallers := client([]string{"batch-worker.internal"}, []string{"spiffe://test.example/wallet-api"})

	tests := []struct {
		name       string
		cert       *tls.Certificate
		header     []string
		wantReason recoveryv1.ErrorReason
		wantCaller string
	}{
		{"URI SAN, trust domain and exact path", walletAPI, nil, 0, "wallet-api"},
		{"URI SAN of another trust domain ending in a caller", attackerSPIFFE, nil, auth.ReasonCertUnknown, ""},
		{"https URI SAN ending in a caller", attackerHTTPS, nil, auth.ReasonCertUnknown, ""},
		{"URI SAN, trust domain, path ending in a caller", nestedPath, nil, auth.ReasonCertUnknown, ""},
		{"URI SAN, whole URI", wholeURI, nil, 0, "spiffe://test.example/support"},
		{"DNS SAN", batch, nil, 0, "batch-worker.internal"},
		{"certificate naming no caller", stranger, nil, auth.ReasonCertUnknown, ""},
		{"certificate naming two callers", twoCallers, nil, auth.ReasonIdentityConflict, ""},
		{"no certificate, token", nil, []string{"Bearer " + tokenSupport}, 0, "support-tool"},
		{"no certificate, no token", nil, nil, auth.ReasonTokenMissing, ""},
		{"certificate and token of the same caller", walletAPI, []string{"Bearer " + tokenWalletAPI}, 0, "wallet-api"},
		{"certificate and token of different callers", walletAPI, []string{"Bearer " + tokenSupport}, auth.ReasonIdentityConflict, ""},
		{"known certificate, wrong token", walletAPI, []string{"Bearer not-a-known-token"}, auth.ReasonTokenInvalid, ""},
		{"unknown certificate, valid token", stranger, []string{"Bearer " + tokenWalletAPI}, auth.ReasonCertUnknown, ""},
	}
	for _, tt := range tests {
		var version atomic.Uint32
		conn := dial(t, addr, setup.clientCreds(t, tt.cert, 0, &version))
		for _, c := range []struct {
			name string
			call func(context.Context, *grpc.ClientConn) (seenCaller, error)
		}{{"unary", getKeyAs}, {"stream", secureFileAs}} {
			t.Run(tt.name+"/"+c.name, func(t *testing.T) {
				seen, err := c.call(withAuthorization(t, tt.header...), conn)
				if tt.wantReason != 0 {
					wantRefusal(t, err, codes.Unauthenticated, tt.wantReason)
					return
				}
				if err != nil {
					t.Fatalf("call: %v", err)
				}
				if !seen.authenticated || seen.name != tt.wantCaller {
					t.Fatalf("handler saw %+v, want caller %q", seen, tt.wantCaller)
				}
				if got := version.Load(); got != tls.VersionTLS13 {
					t.Fatalf("negotiated TLS version %x, want TLS 1.3", got)
				}
			})
		}
	}

	t.Run("client certificate from another CA is refused at the handshake", func(t *testing.T) {
		other := newTestCA(t, "other CA")
		foreign, _, _ := other.issue(t, x509.ExtKeyUsageClientAuth, nil, []string{"spiffe://test.example/wallet-api"}, nil)
		conn := dial(t, addr, setup.clientCreds(t, &foreign, 0, nil))
		_, err := getKeyAs(withAuthorization(t, "Bearer "+tokenWalletAPI), conn)
		// The message varies with timing (the TLS alert, or a broken pipe
		// when the client writes first); the code does not. Were the
		// certificate accepted, the call would succeed (it names
		// wallet-api, as the token does); were it taken unverified, it
		// would be Unauthenticated.
		if codeOf(err) != codes.Unavailable {
			t.Fatalf("foreign client certificate: %v, want Unavailable (handshake refused)", err)
		}
	})
	t.Run("TLS 1.2 clients are served", func(t *testing.T) {
		var version atomic.Uint32
		conn := dial(t, addr, setup.clientCreds(t, walletAPI, tls.VersionTLS12, &version))
		seen, err := getKeyAs(withAuthorization(t), conn)
		if err != nil || seen.name != "wallet-api" || version.Load() != tls.VersionTLS12 {
			t.Fatalf("TLS 1.2: saw %+v, %v, version %x", seen, err, version.Load())
		}
	})
	t.Run("TLS 1.1 clients are refused", func(t *testing.T) {
		conn := dial(t, addr, setup.clientCreds(t, walletAPI, tls.VersionTLS11, nil))
		if _, err := getKeyAs(withAuthorization(t), conn); codeOf(err) != codes.Unavailable {
			t.Fatalf("TLS 1.1: %v, want Unavailable (handshake refused)", err)
		}
	})
}

func TestMTLSRequired(t *testing.T) {
	setup := newMTLSSetup(t)
	serverTLS, err := auth.ServerTLSConfig(setup.certFile, setup.keyFile, setup.ca.pemFile, auth.RequireClientCert())
	if err != nil {
		t.Fatalf("ServerTLSConfig: %v", err)
	}
	if serverTLS.ClientAuth != tls.RequireAndVerifyClientCert {
		t.Fatalf("ClientAuth %v, want RequireAndVerifyClientCert", serverTLS.ClientAuth)
	}
	addr := startServer(t, newAuthenticator(t, auth.Config{}, nil), credentials.NewTLS(serverTLS))

	// Without a certificate even a valid token is refused, at the handshake.
	_, err = getKeyAs(withAuthorization(t, "Bearer "+tokenWalletAPI), dial(t, addr, setup.clientCreds(t, nil, 0, nil)))
	if codeOf(err) != codes.Unavailable {
		t.Fatalf("no client certificate: %v, want Unavailable (handshake refused)", err)
	}
	pair, _, _ := setup.ca.issue(t, x509.ExtKeyUsageClientAuth, []string{"batch-worker.internal"}, nil, nil)
	seen, err := getKeyAs(withAuthorization(t), dial(t, addr, setup.clientCreds(t, &pair, 0, nil)))
	if err != nil || seen.name != "batch-worker.internal" {
		t.Fatalf("client certificate: saw %+v, %v", seen, err)
	}
}

func TestServerTLSConfigWithoutClientCA(t *testing.T) {
	setup := newMTLSSetup(t)
	serverTLS, err := auth.ServerTLSConfig(setup.certFile, setup.keyFile, "")
	if err != nil {
		t.Fatalf("ServerTLSConfig: %v", err)
	}
	if serverTLS.ClientAuth != tls.NoClientCert || serverTLS.ClientCAs != nil {
		t.Fatalf("ClientAuth %v with no client CA, want NoClientCert", serverTLS.ClientAuth)
	}
	addr := startServer(t, newAuthenticator(t, auth.Config{}, nil), credentials.NewTLS(serverTLS))
	seen, err := getKeyAs(withAuthorization(t, "Bearer "+tokenBatch), dial(t, addr, setup.clientCreds(t, nil, 0, nil)))
	if err != nil || seen.name != "batch-worker.internal" {
		t.Fatalf("token over TLS: saw %+v, %v", seen, err)
	}
}

func TestServerTLSConfigRejects(t *testing.T) {
	setup := newMTLSSetup(t)
	other := newMTLSSetup(t)
	notPEM := writeCallersFile(t, "not a certificate")
	tests := []struct {
		name          string
		cert, key, ca string
		opts          []auth.TLSOption
		wantIn        string
	}{
		{"no certificate", "", setup.keyFile, "", nil, "both a certificate file and a key file"},
		{"no key", setup.certFile, "", "", nil, "both a certificate file and a key file"},
		{"missing certificate file", setup.certFile + ".missing", setup.keyFile, "", nil, "no such file"},
		{"key of another certificate", setup.certFile, other.keyFile, "", nil, "private key does not match public key"},
		{"client CA file missing", setup.certFile, setup.keyFile, setup.ca.pemFile + ".missing", nil, "client CA file"},
		{"client CA file without certificates", setup.certFile, setup.keyFile, notPEM, nil, "no PEM CERTIFICATE blocks"},
		{"client certificates required without a CA", setup.certFile, setup.keyFile, "", []auth.TLSOption{auth.RequireClientCert()}, "needs a client CA file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := auth.ServerTLSConfig(tt.cert, tt.key, tt.ca, tt.opts...)
			if err == nil || !strings.Contains(err.Error(), tt.wantIn) {
				t.Fatalf("ServerTLSConfig = %v, %v; want an error containing %q", cfg, err, tt.wantIn)
			}
		})
	}
}

// TestUnverifiedClientCertificateIsNoIdentity runs a server whose TLS
// configuration (not ServerTLSConfig's) requests client certificates
// without verifying them: a certificate naming a caller must not
// authenticate it.
func TestUnverifiedClientCertificateIsNoIdentity(t *testing.T) {
	setup := newMTLSSetup(t)
	serverCert, err := tls.LoadX509KeyPair(setup.certFile, setup.keyFile)
	if err != nil {
		t.Fatal(err)
	}
	serverTLS := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{serverCert}, ClientAuth: tls.RequestClientCert}
	// The trust domain makes the certificate name wallet-api, were it taken.
	addr := startServer(t, newAuthenticator(t, auth.Config{ClientTrustDomain: "test.example"}, nil), credentials.NewTLS(serverTLS))
	selfMade := newTestCA(t, "self-made CA")
	pair, _, _ := selfMade.issue(t, x509.ExtKeyUsageClientAuth, nil, []string{"spiffe://test.example/wallet-api"}, nil)
	conn := dial(t, addr, setup.clientCreds(t, &pair, 0, nil))
	for _, header := range [][]string{nil, {"Bearer " + tokenWalletAPI}} {
		_, err := getKeyAs(withAuthorization(t, header...), conn)
		wantRefusal(t, err, codes.Unauthenticated, auth.ReasonCertUnknown)
	}
}
