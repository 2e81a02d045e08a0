package service

import "context"

// listingScope is the registry's Organisations filter for a listing by the
// call in ctx. A listing that names one organisation (customerID) is
// authorized for it, so a caller asking for an organisation it may not act
// for is told PermissionDenied rather than shown an empty page; otherwise
// the listing is narrowed to the caller's organisations (nil: every one).
func (s *Server) listingScope(ctx context.Context, customerID string) ([]string, error) {
	if customerID != "" {
		if err := s.authz.Authorize(ctx, customerID); err != nil {
			return nil, err
		}
		return nil, nil
	}
	return s.authz.Scope(ctx)
}
