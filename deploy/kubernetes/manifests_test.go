package kubernetes_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// Names the manifests and recoveryd share.
const (
	readinessService = "recovery.v1.RecoveryService"
	runAsUser        = 65532
	// secretsRoot is where the overlays mount every Secret.
	secretsRoot = "/etc/recoveryd/"
)

// overlays are the rendered deployments, with what differs between them.
var overlays = []struct {
	name        string
	replicas    int
	environment string
}{
	{name: "development", replicas: 1, environment: "development"},
	{name: "production", replicas: 3, environment: "production"},
}

// kustomizeBinary is the pinned kustomize the Makefile installs into .bin.
// A missing one fails the test: the manifests are never left unchecked.
func kustomizeBinary(t *testing.T) string {
	t.Helper()
	bin, err := filepath.Abs(filepath.Join("..", "..", ".bin", "kustomize"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("kustomize is missing (%v): run `make tools` (installs the pinned kustomize into .bin)", err)
	}
	return bin
}

// testCtx bounds every child process of a test.
func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// object is one rendered Kubernetes object, decoded into the fields the
// checks read.
type object struct {
	Kind     string `yaml:"kind"`
	Metadata struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
	Data map[string]string `yaml:"data"`
	Spec struct {
		Replicas                 int              `yaml:"replicas"`
		Template                 podTemplate      `yaml:"template"`
		ClusterIP                string           `yaml:"clusterIP"`
		Ports                    []servicePort    `yaml:"ports"`
		Selector                 map[string]any   `yaml:"selector"`
		MaxUnavailable           any              `yaml:"maxUnavailable"`
		PolicyTypes              []string         `yaml:"policyTypes"`
		Ingress                  []networkIngress `yaml:"ingress"`
		PodSelector              map[string]any   `yaml:"podSelector"`
		TopologySpreadConstraint []map[string]any `yaml:"topologySpreadConstraints"`
		Extra                    map[string]any   `yaml:",inline"`
	} `yaml:"spec"`
}

type podTemplate struct {
	Metadata struct {
		Annotations map[string]string `yaml:"annotations"`
	} `yaml:"metadata"`
	Spec struct {
		TerminationGracePeriodSeconds int              `yaml:"terminationGracePeriodSeconds"`
		SecurityContext               podSecurity      `yaml:"securityContext"`
		Containers                    []container      `yaml:"containers"`
		Volumes                       []volume         `yaml:"volumes"`
		TopologySpreadConstraints     []map[string]any `yaml:"topologySpreadConstraints"`
	} `yaml:"spec"`
}

type podSecurity struct {
	RunAsNonRoot *bool `yaml:"runAsNonRoot"`
	RunAsUser    int   `yaml:"runAsUser"`
}

type container struct {
	Name string `yaml:"name"`
	Env  []struct {
		Name      string         `yaml:"name"`
		Value     string         `yaml:"value"`
		ValueFrom map[string]any `yaml:"valueFrom"`
	} `yaml:"env"`
	EnvFrom []struct {
		ConfigMapRef *struct{ Name string } `yaml:"configMapRef"`
		SecretRef    *struct{ Name string } `yaml:"secretRef"`
	} `yaml:"envFrom"`
	Ports []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	ReadinessProbe probe `yaml:"readinessProbe"`
	LivenessProbe  probe `yaml:"livenessProbe"`
	Lifecycle      struct {
		PreStop struct {
			Sleep struct {
				Seconds int `yaml:"seconds"`
			} `yaml:"sleep"`
		} `yaml:"preStop"`
	} `yaml:"lifecycle"`
	Resources struct {
		Requests map[string]string `yaml:"requests"`
		Limits   map[string]string `yaml:"limits"`
	} `yaml:"resources"`
	SecurityContext struct {
		AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
		ReadOnlyRootFilesystem   *bool `yaml:"readOnlyRootFilesystem"`
		Capabilities             struct {
			Drop []string `yaml:"drop"`
			Add  []string `yaml:"add"`
		} `yaml:"capabilities"`
	} `yaml:"securityContext"`
	VolumeMounts []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
		ReadOnly  bool   `yaml:"readOnly"`
		SubPath   string `yaml:"subPath"`
	} `yaml:"volumeMounts"`
}

type probe struct {
	GRPC *struct {
		Port    int    `yaml:"port"`
		Service string `yaml:"service"`
	} `yaml:"grpc"`
	HTTPGet *struct {
		Port any    `yaml:"port"`
		Path string `yaml:"path"`
	} `yaml:"httpGet"`
}

type volume struct {
	Name   string `yaml:"name"`
	Secret *struct {
		SecretName  string `yaml:"secretName"`
		DefaultMode *int   `yaml:"defaultMode"`
		Items       []struct {
			Key  string `yaml:"key"`
			Path string `yaml:"path"`
			Mode *int   `yaml:"mode"`
		} `yaml:"items"`
	} `yaml:"secret"`
	Projected map[string]any `yaml:"projected"`
	EmptyDir  map[string]any `yaml:"emptyDir"`
}

type servicePort struct {
	Name        string `yaml:"name"`
	Port        int    `yaml:"port"`
	AppProtocol string `yaml:"appProtocol"`
}

type networkIngress struct {
	From  []map[string]any `yaml:"from"`
	Ports []struct {
		Port any `yaml:"port"`
	} `yaml:"ports"`
}

// rendered is an overlay as kustomize renders it.
type rendered struct {
	objects []object
}

// render runs the pinned kustomize on an overlay.
func render(t *testing.T, overlay string) rendered {
	t.Helper()
	cmd := exec.CommandContext(testCtx(t), kustomizeBinary(t), "build", filepath.Join("overlays", overlay))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("kustomize build overlays/%s: %v\n%s", overlay, err, stderr.String())
	}
	var r rendered
	dec := yaml.NewDecoder(&stdout)
	for {
		var o object
		err := dec.Decode(&o)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("decoding overlays/%s: %v", overlay, err)
		}
		r.objects = append(r.objects, o)
	}
	return r
}

// all returns the objects of a kind.
func (r rendered) all(kind string) []object {
	var out []object
	for _, o := range r.objects {
		if o.Kind == kind {
			out = append(out, o)
		}
	}
	return out
}

// one returns the single object of a kind, failing the test otherwise.
func (r rendered) one(t *testing.T, kind string) object {
	t.Helper()
	objs := r.all(kind)
	if len(objs) != 1 {
		t.Fatalf("%d objects of kind %s, want 1", len(objs), kind)
	}
	return objs[0]
}

// recoverydHelp is what `recoveryd -help` says: its RECOVERY_* variables and
// the default of --shutdown-timeout.
type recoverydHelp struct {
	binary          string
	variables       map[string]bool
	shutdownDefault time.Duration
}

// built is the recoveryd every test of the package shares: one build.
var built struct {
	sync.Mutex
	help *recoverydHelp
	dir  string
}

func TestMain(m *testing.M) {
	code := m.Run()
	if built.dir != "" {
		_ = os.RemoveAll(built.dir)
	}
	os.Exit(code)
}

// buildRecoveryd builds recoveryd from this checkout, once per test binary,
// and reads its -help.
func buildRecoveryd(t *testing.T) recoverydHelp {
	t.Helper()
	built.Lock()
	defer built.Unlock()
	if built.help != nil {
		return *built.help
	}
	dir, err := os.MkdirTemp("", "recoveryd-manifests-")
	if err != nil {
		t.Fatal(err)
	}
	built.dir = dir
	bin := filepath.Join(dir, "recoveryd")
	build := exec.CommandContext(testCtx(t), "go", "build", "-o", bin, "../../cmd/recoveryd")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build recoveryd: %v\n%s", err, out)
	}
	var usage bytes.Buffer
	help := exec.CommandContext(testCtx(t), bin, "-help")
	help.Stdout, help.Stderr = &usage, &usage
	if err := help.Run(); err != nil {
		t.Fatalf("recoveryd -help: %v\n%s", err, usage.String())
	}
	h := recoverydHelp{binary: bin, variables: map[string]bool{}}
	for _, m := range regexp.MustCompile(`\(env (RECOVERY_[A-Z_]+)\)`).FindAllStringSubmatch(usage.String(), -1) {
		h.variables[m[1]] = true
	}
	m := regexp.MustCompile(`(?m)^  -shutdown-timeout duration\n.*\(default ([0-9a-z.]+)\)$`).FindStringSubmatch(usage.String())
	if m == nil {
		t.Fatalf("recoveryd -help shows no default for --shutdown-timeout:\n%s", usage.String())
	}
	d, err := time.ParseDuration(m[1])
	if err != nil {
		t.Fatal(err)
	}
	h.shutdownDefault = d
	if len(h.variables) < 10 {
		t.Fatalf("recoveryd -help names only %d RECOVERY_* variables:\n%s", len(h.variables), usage.String())
	}
	built.help = &h
	return h
}

// deployment returns the overlay's Deployment and its recoveryd container.
func deployment(t *testing.T, r rendered) (object, container) {
	t.Helper()
	d := r.one(t, "Deployment")
	if len(d.Spec.Template.Spec.Containers) != 1 {
		t.Fatalf("the Deployment has %d containers, want 1 (recoveryd)", len(d.Spec.Template.Spec.Containers))
	}
	return d, d.Spec.Template.Spec.Containers[0]
}

// containerPort returns the port of a named container port.
func containerPort(t *testing.T, c container, name string) int {
	t.Helper()
	for _, p := range c.Ports {
		if p.Name == name {
			return p.ContainerPort
		}
	}
	t.Fatalf("container %s declares no port named %q", c.Name, name)
	return 0
}

// config returns the recoveryd variables of the overlay: its ConfigMap's
// data (the container reads it with envFrom) and the container's own env.
func config(t *testing.T, r rendered) map[string]string {
	t.Helper()
	_, c := deployment(t, r)
	vars := map[string]string{}
	for _, from := range c.EnvFrom {
		if from.ConfigMapRef == nil {
			continue
		}
		found := false
		for _, cm := range r.all("ConfigMap") {
			if cm.Metadata.Name == from.ConfigMapRef.Name {
				found = true
				for k, v := range cm.Data {
					vars[k] = v
				}
			}
		}
		if !found {
			t.Fatalf("envFrom names ConfigMap %s, which the overlay does not render", from.ConfigMapRef.Name)
		}
	}
	for _, e := range c.Env {
		vars[e.Name] = e.Value
	}
	return vars
}

func TestOverlays(t *testing.T) {
	help := buildRecoveryd(t)
	for _, o := range overlays {
		t.Run(o.name, func(t *testing.T) {
			r := render(t, o.name)
			d, c := deployment(t, r)
			vars := config(t, r)
			grpcPort := containerPort(t, c, "grpc")
			adminPort := containerPort(t, c, "admin")

			t.Run("replicas", func(t *testing.T) {
				if d.Spec.Replicas != o.replicas {
					t.Errorf("replicas = %d, want %d", d.Spec.Replicas, o.replicas)
				}
				if vars["RECOVERY_ENVIRONMENT"] != o.environment {
					t.Errorf("RECOVERY_ENVIRONMENT = %q, want %q", vars["RECOVERY_ENVIRONMENT"], o.environment)
				}
			})

			t.Run("probes", func(t *testing.T) {
				checkProbes(t, c, vars, grpcPort, adminPort)
			})

			t.Run("drain", func(t *testing.T) {
				// The kubelet SIGKILLs after the grace period: it must
				// outlast the preStop sleep plus recoveryd's own drain.
				shutdown := help.shutdownDefault
				if v, ok := vars["RECOVERY_SHUTDOWN_TIMEOUT"]; ok {
					var err error
					if shutdown, err = time.ParseDuration(v); err != nil {
						t.Fatalf("RECOVERY_SHUTDOWN_TIMEOUT %q: %v", v, err)
					}
				}
				grace := time.Duration(d.Spec.Template.Spec.TerminationGracePeriodSeconds) * time.Second
				preStop := time.Duration(c.Lifecycle.PreStop.Sleep.Seconds) * time.Second
				for _, drain := range []time.Duration{help.shutdownDefault, shutdown} {
					if grace <= preStop+drain {
						t.Errorf("terminationGracePeriodSeconds %s is not longer than the preStop sleep %s + --shutdown-timeout %s", grace, preStop, drain)
					}
				}
			})

			t.Run("security context", func(t *testing.T) {
				checkSecurity(t, d, c)
			})

			t.Run("secrets are files", func(t *testing.T) {
				checkSecrets(t, d, c, vars)
			})

			t.Run("variables are flags", func(t *testing.T) {
				if len(vars) == 0 {
					t.Fatal("the container gets no RECOVERY_* variable")
				}
				for name := range vars {
					if !help.variables[name] {
						t.Errorf("%s is not a variable of `recoveryd -help`: a typo recoveryd would ignore", name)
					}
				}
			})

			t.Run("services", func(t *testing.T) {
				checkServices(t, r, d, grpcPort, adminPort)
			})

			t.Run("check-config", func(t *testing.T) {
				if code, out := checkConfig(t, help.binary, vars); code != 0 {
					t.Errorf("recoveryd --check-config with the overlay's configuration: exit %d\n%s", code, out)
				}
			})
		})
	}
}

// checkProbes: readiness asks for the RecoveryService's own health (NOT_SERVING
// at shutdown), liveness for the process. The kubelet's grpc probe speaks
// plaintext only, so a TLS listener is probed through the admin port's
// /readyz, which answers from the same health server.
func checkProbes(t *testing.T, c container, vars map[string]string, grpcPort, adminPort int) {
	t.Helper()
	if vars["RECOVERY_TLS_CERT"] == "" {
		rp, lp := c.ReadinessProbe.GRPC, c.LivenessProbe.GRPC
		if rp == nil || lp == nil {
			t.Fatalf("plaintext gRPC but not both probes are grpc: readiness %+v, liveness %+v", c.ReadinessProbe, c.LivenessProbe)
		}
		if rp.Port != grpcPort || rp.Service != readinessService {
			t.Errorf("readiness probe asks port %d for %q, want port %d for %q", rp.Port, rp.Service, grpcPort, readinessService)
		}
		if lp.Port != grpcPort {
			t.Errorf("liveness probe asks port %d, want the gRPC port %d", lp.Port, grpcPort)
		}
		return
	}
	if c.ReadinessProbe.GRPC != nil || c.LivenessProbe.GRPC != nil {
		t.Error("a grpc probe against a TLS listener: the kubelet's grpc probe cannot speak TLS and would never pass")
	}
	for name, p := range map[string]probe{"/readyz": c.ReadinessProbe, "/healthz": c.LivenessProbe} {
		if p.HTTPGet == nil || p.HTTPGet.Path != name || (p.HTTPGet.Port != "admin" && p.HTTPGet.Port != adminPort) {
			t.Errorf("probe %+v, want httpGet %s on the admin port", p, name)
		}
	}
	if vars["RECOVERY_ADMIN_LISTEN"] == "" {
		t.Error("probes on the admin port, but RECOVERY_ADMIN_LISTEN disables it")
	}
}

func checkSecurity(t *testing.T, d object, c container) {
	t.Helper()
	pod := d.Spec.Template.Spec.SecurityContext
	if pod.RunAsNonRoot == nil || !*pod.RunAsNonRoot {
		t.Error("pod securityContext lacks runAsNonRoot: true")
	}
	if pod.RunAsUser != runAsUser {
		t.Errorf("runAsUser = %d, want %d (the image's user)", pod.RunAsUser, runAsUser)
	}
	sc := c.SecurityContext
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Error("container securityContext lacks readOnlyRootFilesystem: true")
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Error("container securityContext lacks allowPrivilegeEscalation: false")
	}
	if !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0 {
		t.Errorf("capabilities drop %v add %v, want drop [ALL] and nothing added", sc.Capabilities.Drop, sc.Capabilities.Add)
	}
	for _, k := range []string{"cpu", "memory"} {
		if c.Resources.Requests[k] == "" {
			t.Errorf("no %s request", k)
		}
	}
	if c.Resources.Limits["memory"] == "" {
		t.Error("no memory limit")
	}
	if len(d.Spec.Template.Spec.TopologySpreadConstraints) == 0 {
		t.Error("no topologySpreadConstraints: replicas may share a node")
	}
}

// checkSecrets: no secret reaches recoveryd through its environment; every
// Secret is a read-only file of mode 0400 or 0440; every file variable
// under secretsRoot points into such a mount.
func checkSecrets(t *testing.T, d object, c container, vars map[string]string) {
	t.Helper()
	for _, e := range c.Env {
		if e.ValueFrom != nil {
			t.Errorf("env %s comes from %v: secrets are files, never variables", e.Name, e.ValueFrom)
		}
	}
	for _, from := range c.EnvFrom {
		if from.SecretRef != nil {
			t.Errorf("envFrom a Secret (%s): secrets are files, never variables", from.SecretRef.Name)
		}
	}
	secretVolumes := map[string]volume{}
	for _, v := range d.Spec.Template.Spec.Volumes {
		if v.Projected != nil {
			t.Errorf("volume %s is projected: this test checks secret volumes only", v.Name)
		}
		if v.Secret == nil {
			continue
		}
		secretVolumes[v.Name] = v
		modes := []*int{v.Secret.DefaultMode}
		for _, it := range v.Secret.Items {
			if it.Mode != nil {
				modes = append(modes, it.Mode)
			}
		}
		for _, m := range modes {
			switch {
			case m == nil:
				t.Errorf("Secret volume %s has no defaultMode: the default 0644 lets everyone read it", v.Name)
			case *m != 0o400 && *m != 0o440:
				t.Errorf("Secret volume %s has a file mode %#o, want 0400 or 0440 (defaultMode 256 or 288)", v.Name, *m)
			}
		}
	}
	secretMounts := map[string]string{} // mountPath → volume
	for _, m := range c.VolumeMounts {
		if _, ok := secretVolumes[m.Name]; !ok {
			continue
		}
		if !m.ReadOnly || m.SubPath != "" {
			t.Errorf("Secret volume %s mounted at %s: want readOnly and no subPath (a subPath never sees an updated Secret)", m.Name, m.MountPath)
		}
		secretMounts[strings.TrimSuffix(m.MountPath, "/")] = m.Name
	}
	for name := range secretVolumes {
		if !slices.Contains(mapValues(secretMounts), name) {
			t.Errorf("Secret volume %s is not mounted", name)
		}
	}
	for name, value := range vars {
		for _, path := range filePaths(value) {
			if !strings.HasPrefix(path, secretsRoot) {
				continue
			}
			if _, ok := secretMounts[filepath.Dir(path)]; !ok {
				t.Errorf("%s names %s, which no Secret volume mount holds", name, path)
			}
		}
	}
	if u, err := url.Parse(vars["RECOVERY_DATABASE_URL"]); err == nil {
		if _, has := u.User.Password(); has || u.Query().Has("password") {
			t.Error("RECOVERY_DATABASE_URL carries a password: use passfile= with a Secret file")
		}
	}
}

// filePaths returns the absolute paths in a variable's value: the value
// itself, or the path parameters of a URL (passfile=, sslrootcert=, …).
func filePaths(value string) []string {
	if strings.HasPrefix(value, "/") {
		return []string{value}
	}
	u, err := url.Parse(value)
	if err != nil {
		return nil
	}
	var out []string
	for _, vs := range u.Query() {
		for _, v := range vs {
			if strings.HasPrefix(v, "/") {
				out = append(out, v)
			}
		}
	}
	return out
}

func mapValues(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

func checkServices(t *testing.T, r rendered, d object, grpcPort, adminPort int) {
	t.Helper()
	var headless, clusterIP bool
	for _, s := range r.all("Service") {
		if len(s.Spec.Ports) != 1 || s.Spec.Ports[0].Port != grpcPort || s.Spec.Ports[0].AppProtocol != "grpc" {
			t.Errorf("Service %s ports %+v, want the gRPC port %d with appProtocol grpc", s.Metadata.Name, s.Spec.Ports, grpcPort)
		}
		if len(s.Spec.Selector) == 0 {
			t.Errorf("Service %s selects no pods", s.Metadata.Name)
		}
		if s.Spec.ClusterIP == "None" {
			headless = true
		} else {
			clusterIP = true
		}
	}
	if !headless || !clusterIP {
		t.Errorf("headless Service %v, ClusterIP Service %v: want both (round_robin clients and the usual one)", headless, clusterIP)
	}
	r.one(t, "PodDisruptionBudget")
	np := r.one(t, "NetworkPolicy")
	var ports []string
	for _, in := range np.Spec.Ingress {
		for _, p := range in.Ports {
			port, _ := p.Port.(int)
			ports = append(ports, strconv.Itoa(port))
			if port == adminPort && len(in.From) == 0 {
				t.Error("the NetworkPolicy lets anyone reach the admin port: only the monitoring namespace")
			}
			if port != grpcPort && port != adminPort {
				t.Errorf("the NetworkPolicy lets in port %d: only gRPC and admin", port)
			}
		}
		if len(in.Ports) == 0 {
			t.Error("a NetworkPolicy ingress rule without ports lets in every port")
		}
	}
	if !slices.Contains(ports, strconv.Itoa(grpcPort)) || !slices.Contains(ports, strconv.Itoa(adminPort)) {
		t.Errorf("NetworkPolicy ports %v, want %d and %d", ports, grpcPort, adminPort)
	}
	ann := d.Spec.Template.Metadata.Annotations
	if ann["prometheus.io/scrape"] != "true" || ann["prometheus.io/port"] != strconv.Itoa(adminPort) || ann["prometheus.io/path"] != "/metrics" {
		t.Errorf("Prometheus annotations %v, want scrape true, port %d, path /metrics", ann, adminPort)
	}
}

// checkConfig runs `recoveryd --check-config` with an overlay's variables
// as its whole environment. Paths under secretsRoot and /data are moved
// into a temporary directory holding files of the right shape, so Validate
// reads real files (callers, TLS identity) as it would in the pod.
func checkConfig(t *testing.T, binary string, vars map[string]string) (code int, output string) {
	t.Helper()
	root := t.TempDir()
	certPEM, keyPEM := selfSigned(t) // one identity: tls.crt and tls.key must match
	env := []string{}
	for name, value := range vars {
		for _, path := range filePaths(value) {
			if strings.HasPrefix(path, secretsRoot) {
				writeSecretFile(t, filepath.Join(root, path), certPEM, keyPEM)
			}
		}
		value = strings.ReplaceAll(value, secretsRoot, filepath.Join(root, secretsRoot)+"/")
		if value == "/data" {
			value = filepath.Join(root, "data")
		}
		env = append(env, name+"="+value)
	}
	cmd := exec.CommandContext(testCtx(t), binary, "--check-config")
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if exit, ok := errors.AsType[*exec.ExitError](err); ok {
		return exit.ExitCode(), string(out)
	}
	if err != nil {
		t.Fatalf("recoveryd --check-config: %v", err)
	}
	return 0, string(out)
}

// writeSecretFile writes a stand-in for the Secret file at path, by its name.
//
// NOTE: as a pod sees them: root:65532, mode 0440 (the Secret volume's
// defaultMode with the fsGroup), which recoveryd must accept.
func writeSecretFile(t *testing.T, path string, certPEM, keyPEM []byte) {
	t.Helper()
	var content []byte
	switch filepath.Base(path) {
	case "callers.json":
		content = []byte(`{"callers":[{"name":"wallet-api","token_sha256":"9a60699d2db5c9f647ec72a5f6d4834939754d211311751b4c9b7b3021a40226","organisations":["org-1"]}]}`)
	case "tls.crt", "ca.crt":
		content = certPEM
	case "tls.key":
		content = keyPEM
	case "pgpass":
		content = []byte("*:*:*:recoveryd:not-a-real-password\n")
	case "key": // the registry HMAC key: 32 random bytes as hex
		content = []byte("0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0\n")
	default:
		content = []byte("stand-in-secret\n")
	}
	mustWrite(t, path, content)
}

func mustWrite(t *testing.T, path string, content []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, content, 0o440); err != nil { //nolint:gosec // G306: group-readable on purpose, as a Secret volume with an fsGroup mounts it
		t.Fatal(err)
	}
	if os.Geteuid() != 0 {
		t.Fatal("this test writes secret files as Kubernetes mounts them (root:65532): run it as root (make test does, in CI)")
	}
	if err := os.Chown(path, 0, 65532); err != nil {
		t.Fatal(err)
	}
}

// selfSigned is a throwaway TLS identity (ECDSA: fast to make).
func selfSigned(t *testing.T) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "recoveryd.recoveryd.svc"},
		DNSNames:     []string{"recoveryd.recoveryd.svc"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
}

// TestCheckConfigCatchesAWeakenedOverlay: the check-config step above can
// fail. Either overlay without its callers file is refused: its pods listen
// on every interface, which needs caller authentication in every
// environment (and production's guard says so too); and the admin port on
// every interface needs RECOVERY_ADMIN_LISTEN_PUBLIC.
func TestCheckConfigCatchesAWeakenedOverlay(t *testing.T) {
	help := buildRecoveryd(t)
	tests := []struct {
		overlay, drop string
		want          []string
	}{
		{"development", "RECOVERY_CALLER_TOKENS_FILE", []string{"--listen 0.0.0.0:50051 is reachable beyond this host but callers need not authenticate"}},
		{"production", "RECOVERY_CALLER_TOKENS_FILE", []string{"--listen 0.0.0.0:50051 is reachable beyond this host", "production needs caller authentication"}},
		{"development", "RECOVERY_ADMIN_LISTEN_PUBLIC", []string{"--admin-listen 0.0.0.0:9464 is reachable beyond this host"}},
	}
	for _, tt := range tests {
		t.Run(tt.overlay+" without "+tt.drop, func(t *testing.T) {
			vars := config(t, render(t, tt.overlay))
			if _, ok := vars[tt.drop]; !ok {
				t.Fatalf("the %s overlay sets no %s", tt.overlay, tt.drop)
			}
			delete(vars, tt.drop)
			code, out := checkConfig(t, help.binary, vars)
			if code != 2 {
				t.Errorf("recoveryd --check-config without %s: exit %d, want 2\n%s", tt.drop, code, out)
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("recoveryd --check-config without %s does not say %q:\n%s", tt.drop, w, out)
				}
			}
		})
	}
}
