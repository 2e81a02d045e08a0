package service

import (
	"context"

	"google.golang.org/protobuf/types/known/timestamppb"

	recoveryv1 "github.com/walletprovider/recoveryservice/gen/recovery/v1"
	"github.com/walletprovider/recoveryservice/service/registry"
)

// ListAuditEvents pages through the audit trail, newest first, every
// organisation's: the operator role admits to all of them.
func (a *Admin) ListAuditEvents(ctx context.Context, req *recoveryv1.ListAuditEventsRequest) (*recoveryv1.ListAuditEventsResponse, error) {
	s := a.s
	f := registry.AuditFilter{Organisation: req.GetCustomerId(), Caller: req.GetCaller()}
	if req.GetStartTime() != nil {
		f.From = req.GetStartTime().AsTime()
	}
	if req.GetEndTime() != nil {
		f.To = req.GetEndTime().AsTime()
	}
	events, next, err := s.audit.ListAuditEvents(ctx, f, page(req.GetPageSize(), req.GetPageToken()))
	if err != nil {
		return nil, s.statusFromError(ctx, "ListAuditEvents", registryFailure(err))
	}
	out := &recoveryv1.ListAuditEventsResponse{Events: make([]*recoveryv1.AuditEvent, 0, len(events)), NextPageToken: next}
	for i := range events {
		e := &events[i]
		out.Events = append(out.Events, &recoveryv1.AuditEvent{
			WriterId: e.WriterID, Seq: e.Seq, Time: timestamppb.New(e.At), Caller: e.Caller, Method: e.Method,
			Organisations: e.Organisations, KeyId: e.KeyID, BackupId: e.BackupID, PackageId: e.PackageID,
			Code: e.Code, Reason: e.Reason, TraceId: e.TraceID, Peer: e.Peer, PrevHash: e.PrevHash, Hash: e.Hash,
		})
	}
	return out, nil
}

// VerifyAuditChain verifies every audit chain and reports the first broken
// link.
func (a *Admin) VerifyAuditChain(ctx context.Context, _ *recoveryv1.VerifyAuditChainRequest) (*recoveryv1.VerifyAuditChainResponse, error) {
	s := a.s
	rep, err := s.audit.VerifyAudit(ctx)
	if err != nil {
		return nil, s.statusFromError(ctx, "VerifyAuditChain", registryFailure(err))
	}
	out := &recoveryv1.VerifyAuditChainResponse{
		Ok: rep.Broken == nil, Records: rep.Records, Chains: int64(rep.Chains), Checkpoints: rep.Checkpoints,
	}
	if b := rep.Broken; b != nil {
		out.Broken = &recoveryv1.AuditChainBreak{WriterId: b.WriterID, Seq: b.Seq, Problem: b.Problem}
	}
	return out, nil
}
