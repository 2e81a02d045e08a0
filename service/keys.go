package service

import (
	"context"
	"errors"

	"go.opentelemetry.io/otel/attribute"

	recoveryv1 "github.com/walletprovider/recoveryservice/gen/recovery/v1"
	"github.com/walletprovider/recoveryservice/service/registry"
)

// defaultPageSize is the page size when a listing asks for 0.
const defaultPageSize = 50

// GetKey returns one recorded key assignment, for support tooling, to a
// caller allowed to act for the key's organisation; to any other caller the
// key does not exist (KEY_NOT_FOUND).
func (s *Server) GetKey(ctx context.Context, req *recoveryv1.GetKeyRequest) (*recoveryv1.GetKeyResponse, error) {
	annotate(ctx, attribute.String("key_id", req.GetKeyId()))
	notFound := map[string]string{"key_id": req.GetKeyId()}
	key, err := s.recorded.GetKey(ctx, req.GetKeyId())
	if err != nil {
		if errors.Is(err, registry.ErrNotFound) {
			err = keyNotFound(err, notFound)
		}
		return nil, s.statusFromError(ctx, "GetKey", registryFailure(err))
	}
	if err := s.authorizeKey(ctx, key, notFound); err != nil {
		return nil, s.statusFromError(ctx, "GetKey", err)
	}
	verified, err := s.checkKeyReceipt(ctx, key)
	if err != nil {
		return nil, s.statusFromError(ctx, "GetKey", err)
	}
	return &recoveryv1.GetKeyResponse{Key: keyToProtoPEM(key, verified.pem)}, nil
}

// ListKeys pages through recorded key assignments, newest first, of the
// organisations the caller may act for. The page token is the registry's,
// passed through opaquely.
func (s *Server) ListKeys(ctx context.Context, req *recoveryv1.ListKeysRequest) (*recoveryv1.ListKeysResponse, error) {
	orgs, err := s.listingScope(ctx, req.GetCustomerId())
	if err != nil {
		return nil, s.statusFromError(ctx, "ListKeys", err)
	}
	keys, next, err := s.listings.ListKeys(ctx,
		registry.KeyFilter{CustomerID: req.GetCustomerId(), UserIdentifier: req.GetUserIdentifier(), Organisations: orgs},
		page(req.GetPageSize(), req.GetPageToken()))
	if err != nil {
		return nil, s.statusFromError(ctx, "ListKeys", registryFailure(err))
	}
	out := &recoveryv1.ListKeysResponse{Keys: make([]*recoveryv1.RecoveryKey, 0, len(keys)), NextPageToken: next}
	for i := range keys {
		k, err := keyToProto(&keys[i])
		if err != nil {
			return nil, s.statusFromError(ctx, "ListKeys", err)
		}
		out.Keys = append(out.Keys, k)
	}
	return out, nil
}

// page turns a request's paging fields into the registry's, applying the
// contract's default size.
func page(size int32, token string) registry.Page {
	if size <= 0 {
		size = defaultPageSize
	}
	return registry.Page{Size: int(size), Token: token}
}
