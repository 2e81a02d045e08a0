// Package image holds recoveryd's container image (Containerfile, the
// podman settings, build.sh behind `make image`) and the test that builds
// the image and runs it: the image is checked as it ships, against a real
// emulator, with the container read-only and its user non-root. It has no
// Go code besides that test.
package image
