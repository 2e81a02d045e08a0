package service

import (
	recoveryv1 "github.com/walletprovider/recoveryservice/gen/recovery/v1"
)

// Admin implements recoveryv1.RecoveryAdminServiceServer, the operators'
// service. It shares the Server's dependencies and flows (an operator's
// re-probe is the reconciler's), and checks no role itself: recoveryd's
// operator interceptor (auth.OperatorUnaryInterceptor) refuses every call
// of the service from a non-operator before it gets here.
type Admin struct {
	recoveryv1.UnimplementedRecoveryAdminServiceServer

	s *Server
}

var _ recoveryv1.RecoveryAdminServiceServer = (*Admin)(nil)

// NewAdmin returns the operators' service over s's dependencies.
func NewAdmin(s *Server) *Admin {
	return &Admin{s: s}
}
