package service

import (
	"context"

	recoveryv1 "github.com/walletprovider/recoveryservice/gen/recovery/v1"
	"github.com/walletprovider/recoveryservice/service/registry"
)

// ListBackups pages through recorded backups, newest first, for support
// tooling and audit, of the organisations the caller may act for (a key_id
// of another organisation's key lists nothing). The page token is the
// registry's, passed through.
func (s *Server) ListBackups(ctx context.Context, req *recoveryv1.ListBackupsRequest) (*recoveryv1.ListBackupsResponse, error) {
	orgs, err := s.listingScope(ctx, req.GetCustomerId())
	if err != nil {
		return nil, s.statusFromError(ctx, "ListBackups", err)
	}
	backups, next, err := s.listings.ListBackups(ctx,
		registry.BackupFilter{KeyID: req.GetKeyId(), CustomerID: req.GetCustomerId(), Organisations: orgs},
		page(req.GetPageSize(), req.GetPageToken()))
	if err != nil {
		return nil, s.statusFromError(ctx, "ListBackups", registryFailure(err))
	}
	out := &recoveryv1.ListBackupsResponse{Backups: make([]*recoveryv1.Backup, 0, len(backups)), NextPageToken: next}
	for i := range backups {
		out.Backups = append(out.Backups, backupToProto(&backups[i]))
	}
	return out, nil
}
