package app

import (
	"context"
	"crypto/tls"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	recoveryv1 "github.com/walletprovider/recoveryservice/gen/recovery/v1"
)

// TestMTLSThroughRun serves recoveryd over TLS with --client-ca on a real
// 127.0.0.1 TCP port, with a CA the test makes: a client certificate
// naming a caller (URI SAN) authenticates it, a certificate naming nobody
// is refused, a certificate from another CA fails the handshake, and a
// connection without a certificate may still use its bearer token.
func TestMTLSThroughRun(t *testing.T) {
	dir := t.TempDir()
	pki := newTestPKI(t, dir, "recovery-test")
	strangerCA := newTestPKI(t, dir, "stranger")
	server := pki.serverCert(t, "recoveryd")
	// --client-trust-domain recovery.test: its SPIFFE IDs name callers by
	// their exact path.
	walletCert := pki.clientCert(t, "wallet-api", "spiffe://recovery.test/"+walletAPI.name)
	otherOrgCert := pki.clientCert(t, "other-org-api", "spiffe://recovery.test/"+otherOrgAPI.name)
	unknownCert := pki.clientCert(t, "nobody", "spiffe://recovery.test/nobody")
	foreignCert := strangerCA.clientCert(t, "forged-wallet-api", "spiffe://recovery.test/"+walletAPI.name)
	// Signed by the trusted CA, but only ending in a caller's name.
	otherDomainCert := pki.clientCert(t, "other-domain", "spiffe://attacker.example/ns/dev/sa/"+walletAPI.name)
	nestedPathCert := pki.clientCert(t, "nested-path", "spiffe://recovery.test/ns/payments/sa/"+walletAPI.name)

	log, _ := newTestLogger(t)
	up := startUpstream(t, t.TempDir(), log, nil)
	cfg := remoteConfig(t, up, t.TempDir())
	cfg.CallerTokensFile = writeCallersFile(t, filepath.Join(dir, "callers.json"), walletAPI, otherOrgAPI)
	cfg.TLSCert, cfg.TLSKey, cfg.ClientCA = server.certFile, server.keyFile, pki.caFile
	cfg.ClientTrustDomain = "recovery.test"
	lis, err := (&net.ListenConfig{}).Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	// The harness's own connection presents no certificate: health is
	// public, so readiness is visible to it.
	srv := startServerCreds(t, cfg, log, Options{Listener: lis}, clientTLS(pki, nil))
	srv.waitServing(t)
	ctx := testCtx(t)

	dial := func(cert *tls.Certificate) recoveryv1.RecoveryServiceClient {
		conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(clientTLS(pki, cert)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close() })
		return recoveryv1.NewRecoveryServiceClient(conn)
	}
	assign := func(c recoveryv1.RecoveryServiceClient, ctx context.Context, user string) (*recoveryv1.AssignKeyResponse, error) {
		return c.AssignKey(ctx, assignKeyRequest(user, recoveryv1.KeyEnvironment_KEY_ENVIRONMENT_HOT))
	}

	t.Run("certificate naming a caller", func(t *testing.T) {
		resp, err := assign(dial(&walletCert.tls), ctx, "mtls-user")
		if err != nil {
			t.Fatalf("AssignKey with wallet-api's certificate: %v", err)
		}
		if got := resp.GetKey().GetAssignedBy(); got != walletAPI.name {
			t.Errorf("assigned_by = %q, want %q (from the certificate's URI SAN)", got, walletAPI.name)
		}
	})
	t.Run("certificate naming a caller of another organisation", func(t *testing.T) {
		_, err := assign(dial(&otherOrgCert.tls), ctx, "mtls-user-2")
		wantStatus(t, err, codes.PermissionDenied, "ORGANISATION_NOT_ALLOWED")
	})
	t.Run("certificate naming nobody in the callers file", func(t *testing.T) {
		_, err := assign(dial(&unknownCert.tls), ctx, "mtls-user-3")
		wantStatus(t, err, codes.Unauthenticated, "CALLER_CERT_UNKNOWN")
	})
	t.Run("certificate of another trust domain ending in a caller's name", func(t *testing.T) {
		_, err := assign(dial(&otherDomainCert.tls), ctx, "mtls-user-5")
		wantStatus(t, err, codes.Unauthenticated, "CALLER_CERT_UNKNOWN")
	})
	t.Run("certificate whose path only ends in a caller's name", func(t *testing.T) {
		_, err := assign(dial(&nestedPathCert.tls), ctx, "mtls-user-6")
		wantStatus(t, err, codes.Unauthenticated, "CALLER_CERT_UNKNOWN")
	})
	t.Run("certificate and token of different callers", func(t *testing.T) {
		_, err := assign(dial(&walletCert.tls), withToken(ctx, otherOrgAPI.token), "mtls-user-4")
		wantStatus(t, err, codes.Unauthenticated, "CALLER_IDENTITY_CONFLICT")
	})
	t.Run("certificate from another CA", func(t *testing.T) {
		// NOTE: Go's client sends only a certificate the server's CA list
		// accepts; this one is forced onto the wire, as a forger would.
		// TLS 1.2, because there the server's refusal ends the client's own
		// handshake; under 1.3 the client finishes first and only learns of
		// it as a broken connection, worded by timing.
		creds := &tls.Config{MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS12, RootCAs: pki.pool(), //nolint:gosec // TLS 1.2 on purpose, see above.
			GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &foreignCert.tls, nil }}
		conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(credentials.NewTLS(creds)))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_, err = assign(recoveryv1.NewRecoveryServiceClient(conn), ctx, "mtls-user-5")
		// The handshake fails, so the call never reaches an interceptor.
		if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "tls: unknown certificate authority") {
			t.Fatalf("AssignKey with a certificate from another CA = %v, want Unavailable: the server refuses the handshake", err)
		}
	})
	t.Run("no certificate, no token", func(t *testing.T) {
		_, err := assign(dial(nil), ctx, "mtls-user-6")
		wantStatus(t, err, codes.Unauthenticated, "CALLER_TOKEN_MISSING")
	})
	t.Run("no certificate, with a token", func(t *testing.T) {
		resp, err := assign(dial(nil), withToken(ctx, walletAPI.token), "mtls-user-7")
		if err != nil {
			t.Fatalf("AssignKey over TLS with a token: %v", err)
		}
		if got := resp.GetKey().GetAssignedBy(); got != walletAPI.name {
			t.Errorf("assigned_by = %q, want %q", got, walletAPI.name)
		}
	})

	keys := up.Inspect.Keys(t)
	if len(keys) != 2 {
		t.Errorf("upstream assigned %d keys, want 2 (only the two authenticated, authorized calls): %+v", len(keys), keys)
	}
}

// clientTLS trusts the test CA and presents cert, if any.
func clientTLS(pki *testPKI, cert *tls.Certificate) credentials.TransportCredentials {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pki.pool()}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	return credentials.NewTLS(cfg)
}
