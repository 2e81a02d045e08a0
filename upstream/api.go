package upstream

// NOTE: this file fixes the adapter's exported API so that service/ and
// cmd/recoveryd can be written against it in parallel with the adapter. The
// upstream work fills the bodies in (and may split this file by concept).

import (
	"context"
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/walletprovider/recoveryservice/keycrypto"
)

// Upstream hosts named by the contract.
const (
	SandboxBaseURL    = "https://service.uat-keys.coincover.com"
	ProductionBaseURL = "https://service.keys.coincover.com"
	SandboxJWKSURL    = "https://policies.uat-keys.coincover.com/.well-known/jwks.json"
	ProductionJWKSURL = "https://policies.keys.coincover.com/.well-known/jwks.json"
)

// Config configures a Client.
type Config struct {
	// BaseURL of the Partner Key Service, e.g. ProductionBaseURL.
	BaseURL string
	// Token is the bearer token (read from a file by the caller; never logged).
	Token string
	// Transport for requests; nil means a default transport. The client wraps
	// it with otelhttp.
	Transport http.RoundTripper
	// CallTimeout bounds each JSON call (AssignKey, SecureData); 0 = 30s.
	CallTimeout time.Duration
	// FileTimeout bounds a SecureFile upload; 0 = 10m.
	FileTimeout time.Duration
	// AllowHTTP permits http:// base URLs (development only).
	AllowHTTP bool
}

// Client speaks the Partner Key Service REST contract.
type Client struct{}

// NewClient validates cfg and builds a Client.
func NewClient(cfg Config) (*Client, error) { panic("unimplemented") }

// LoadToken reads a bearer token file (trimmed; empty or multi-line is an error).
func LoadToken(path string) (string, error) { panic("unimplemented") }

// Metadata is a backup's descriptive metadata.
type Metadata struct {
	Description      string
	ContentType      string
	OriginalFilename string
}

// AssignKeyRequest is POST /v1/partner/keys.
type AssignKeyRequest struct {
	UserIdentifier string
	KeyType        string // "rsa4096"
	KeyEnvironment string // "HOT" | "COLD"
	CustomerID     string
	CustomerName   string
	PackageID      string
	PackageName    string
	SignWith       []string
}

// AssignKeyResponse is the 200 body of POST /v1/partner/keys.
type AssignKeyResponse struct {
	KeyID         string
	PublicKey     string // hex, exactly as received
	Signature     string
	SignedPayload string // exact bytes as received
	SignedFields  []string
	CustomerID    string
	PackageID     string
	CustomerName  string
	PackageName   string
}

// SignedAssignment returns the parts keycrypto verifies.
func (r *AssignKeyResponse) SignedAssignment() keycrypto.SignedAssignment {
	return keycrypto.SignedAssignment{
		PublicKeyHex:  r.PublicKey,
		Signature:     r.Signature,
		SignedPayload: r.SignedPayload,
		SignedFields:  r.SignedFields,
	}
}

// AssignKey calls POST /v1/partner/keys. It never retries once the request
// may have reached the upstream (a lost response is an unknown outcome).
func (c *Client) AssignKey(ctx context.Context, req AssignKeyRequest) (*AssignKeyResponse, error) {
	panic("unimplemented")
}

// SecureDataRequest is POST /v1/partner/secure/data.
type SecureDataRequest struct {
	PublicKey  string // hex
	Ciphertext []byte // sent as standard base64 `data`
	Checksum   string // hex SHA-256 of the plaintext
	Metadata   Metadata
}

// SecureDataResponse is the 200 body of POST /v1/partner/secure/data.
type SecureDataResponse struct {
	BackupID   string
	Checksum   string
	DataSize   int64
	BackupType string // "data"
	Metadata   Metadata
	StoredAt   time.Time
}

// SecureData calls POST /v1/partner/secure/data.
func (c *Client) SecureData(ctx context.Context, req SecureDataRequest) (*SecureDataResponse, error) {
	panic("unimplemented")
}

// SecureFileRequest is POST /v1/partner/secure/file. File is streamed into
// the multipart body as it is read; if File.Read returns an error other than
// io.EOF (e.g. io.PipeWriter.CloseWithError) or ctx ends, the request is
// aborted mid-body so the upstream stores nothing.
type SecureFileRequest struct {
	PublicKey string
	Metadata  Metadata
	File      io.Reader
}

// SecureFileResponse is the 200 body of POST /v1/partner/secure/file.
type SecureFileResponse struct {
	BackupID   string
	BackupType string // "file"
	Metadata   Metadata
	StoredAt   time.Time
}

// SecureFile calls POST /v1/partner/secure/file, streaming req.File.
func (c *Client) SecureFile(ctx context.Context, req SecureFileRequest) (*SecureFileResponse, error) {
	panic("unimplemented")
}

// Kind classifies an upstream failure.
type Kind int

// Kinds of upstream failure.
const (
	KindUnknown          Kind = iota
	KindInvalid               // 400
	KindUnauthenticated       // 401: our token is bad (configuration fault)
	KindForbidden             // 403: token lacks the partner scope (configuration fault)
	KindNotFound              // 404
	KindAlreadyAssigned       // 409
	KindTooLarge              // 413
	KindUnsupportedMedia      // 415
	KindRateLimited           // 429 (RetryAfter set)
	KindUnavailable           // 5xx, connection failure, timeout
	KindProtocol              // a 2xx whose body breaks the contract
)

// Error is every failure the Client returns; match with errors.As or
// errors.Is(err, ErrNotFound) etc. Message is truncated upstream text for
// logs only: never put it in a status returned to callers.
type Error struct {
	Kind       Kind
	Endpoint   string // e.g. "POST /v1/partner/keys"
	Status     int    // 0 when no response
	Type       string // ErrorResponse.error
	Message    string // ErrorResponse.message, truncated
	Fields     map[string]string
	RetryAfter time.Duration
	// Sent is false only when the request certainly never reached the upstream.
	Sent bool
	Err  error
}

func (e *Error) Error() string { panic("unimplemented") }
func (e *Error) Unwrap() error { return e.Err }

// Sentinels for errors.Is, one per Kind.
var (
	ErrInvalid          = errors.New("upstream rejected the request as invalid")
	ErrUnauthenticated  = errors.New("upstream rejected our credentials")
	ErrForbidden        = errors.New("upstream token lacks the partner-endpoint scope")
	ErrNotFound         = errors.New("upstream does not know the key")
	ErrAlreadyAssigned  = errors.New("upstream already assigned a key for this user and organisation")
	ErrTooLarge         = errors.New("upstream rejected the file as too large")
	ErrUnsupportedMedia = errors.New("upstream rejected the media type")
	ErrRateLimited      = errors.New("upstream rate limit reached")
	ErrUnavailable      = errors.New("upstream unavailable")
	ErrProtocol         = errors.New("upstream response breaks the contract")
)

// KeySource supplies enclave verification keys.
type KeySource interface {
	// Keys returns the cached keys (fetching if none are cached/fresh).
	Keys(ctx context.Context) ([]keycrypto.VerificationKey, error)
	// Refresh forces one re-fetch (used once when no cached key verifies).
	Refresh(ctx context.Context) ([]keycrypto.VerificationKey, error)
}

// JWKSConfig configures a JWKS fetcher.
type JWKSConfig struct {
	URL       string
	Transport http.RoundTripper // nil: default; wrapped with otelhttp
	AllowHTTP bool              // development only
	Now       func() time.Time  // nil: time.Now
}

// NewJWKSFetcher fetches the JWKS over HTTPS without following redirects,
// caching it for its Cache-Control max-age (default 600s).
func NewJWKSFetcher(cfg JWKSConfig) (KeySource, error) { panic("unimplemented") }

// NewStaticKeySource serves a fixed key set (JWKS file or PEM keys).
func NewStaticKeySource(set *keycrypto.KeySet) KeySource { panic("unimplemented") }

// LoadKeySourceFile reads a JWKS JSON file or a PEM file of P-256 keys.
func LoadKeySourceFile(path string) (KeySource, error) { panic("unimplemented") }
