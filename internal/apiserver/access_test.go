package apiserver

import (
	"testing"

	vssv1 "github.com/linuxvss/vss/api/vss/v1"
	"github.com/linuxvss/vss/internal/service"
)

func TestAllowed(t *testing.T) {
	root, user := service.Caller{Uid: 0}, service.Caller{Uid: 1000, Gid: 0}
	for _, tc := range []struct {
		method string
		caller service.Caller
		want   bool
	}{
		{vssv1.Admin_Info_FullMethodName, user, true},
		{vssv1.Admin_Info_FullMethodName, root, true},
		{vssv1.Admin_ListShadows_FullMethodName, user, false},
		{vssv1.Admin_ListProviders_FullMethodName, user, false},
		{vssv1.Admin_CreateShadowSet_FullMethodName, user, false},
		{vssv1.Admin_DeleteShadows_FullMethodName, user, false},
		{vssv1.Admin_CreateShadowSet_FullMethodName, root, true},
		{vssv1.Admin_DeleteShadows_FullMethodName, root, true},
		{vssv1.Admin_RevertShadow_FullMethodName, root, true},
	} {
		if got := allowed(tc.method, tc.caller); got != tc.want {
			t.Errorf("allowed(%s, uid %d) = %v, want %v", tc.method, tc.caller.Uid, got, tc.want)
		}
	}
}
