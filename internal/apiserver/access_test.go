package apiserver

import (
	"testing"

	"google.golang.org/grpc"

	vssv1 "github.com/linuxvss/vss/api/vss/v1"
	"github.com/linuxvss/vss/internal/config"
	"github.com/linuxvss/vss/internal/service"
)

func TestAllowed(t *testing.T) {
	acl := NewACL(config.Access{List: []string{"lister"}, Create: []string{"@backup"}, Delete: []string{"1003"}, Writers: []string{"pg"}})
	acl.groups = func(uid, gid uint32) (string, []string) {
		return map[uint32]string{1000: "nobody-special", 1001: "lister", 1002: "bob", 1003: "admin", 1004: "pg"}[uid],
			map[uint32][]string{1002: {"users", "backup"}}[uid]
	}
	root := service.Caller{Uid: 0}
	plain := service.Caller{Uid: 1000, Gid: 100}
	lister := service.Caller{Uid: 1001, Gid: 100}
	backup := service.Caller{Uid: 1002, Gid: 100}
	deleter := service.Caller{Uid: 1003, Gid: 100}
	pg := service.Caller{Uid: 1004, Gid: 100}
	for _, tc := range []struct {
		method string
		caller service.Caller
		want   bool
	}{
		{vssv1.Admin_Info_FullMethodName, plain, true},
		{vssv1.Admin_ListShadows_FullMethodName, plain, false},
		{vssv1.Admin_CreateShadowSet_FullMethodName, plain, false},
		{vssv1.Writers_Connect_FullMethodName, plain, false},
		{vssv1.Admin_ListShadows_FullMethodName, lister, true},
		{vssv1.Admin_ListWriters_FullMethodName, lister, true},
		{vssv1.Admin_CreateShadowSet_FullMethodName, lister, false},
		{vssv1.Admin_DeleteShadows_FullMethodName, lister, false},
		{vssv1.Admin_CreateShadowSet_FullMethodName, backup, true},
		{vssv1.Requester_DoSnapshotSet_FullMethodName, backup, true},
		{vssv1.Admin_ListShadows_FullMethodName, backup, true},
		{vssv1.Admin_DeleteShadows_FullMethodName, backup, false},
		{vssv1.Requester_PreRestore_FullMethodName, backup, false},
		{vssv1.Admin_DeleteShadows_FullMethodName, deleter, true},
		{vssv1.Admin_RevertShadow_FullMethodName, deleter, true},
		{vssv1.Admin_CreateShadowSet_FullMethodName, deleter, false},
		{vssv1.Writers_Connect_FullMethodName, pg, true},
		{vssv1.Admin_ListShadows_FullMethodName, pg, false},
		{"/vss.v1.Admin/Unknown", deleter, false},
		{"/vss.v1.Admin/Unknown", root, true},
		{vssv1.Admin_DeleteShadows_FullMethodName, root, true},
		{vssv1.Writers_Connect_FullMethodName, root, true},
	} {
		if got := acl.Allowed(RightOf(tc.method), tc.caller); got != tc.want {
			t.Errorf("Allowed(%s, uid %d) = %v, want %v", tc.method, tc.caller.Uid, got, tc.want)
		}
	}
}

// TestEveryMethodHasARight makes sure no method of the API is left to the
// root-only default by mistake.
func TestEveryMethodHasARight(t *testing.T) {
	for _, sd := range []struct {
		name    string
		methods []string
	}{
		{vssv1.Admin_ServiceDesc.ServiceName, methodNames(vssv1.Admin_ServiceDesc.Methods)},
		{vssv1.Requester_ServiceDesc.ServiceName, methodNames(vssv1.Requester_ServiceDesc.Methods)},
	} {
		for _, m := range sd.methods {
			full := "/" + sd.name + "/" + m
			if _, ok := rights[full]; !ok {
				t.Errorf("%s has no right", full)
			}
		}
	}
}

func methodNames(ms []grpc.MethodDesc) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.MethodName)
	}
	return out
}
