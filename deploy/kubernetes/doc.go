// Package kubernetes holds recoveryd's Kubernetes manifests (a kustomize
// base and the development and production overlays) and the test that
// renders them and checks what a reviewer would: probes, the drain, the
// security context, secrets as files, and that the configuration passes
// recoveryd's own validation. It has no Go code besides that test.
package kubernetes
