package apiserver

import (
	"os/user"
	"slices"
	"strconv"

	vssv1 "github.com/linuxvss/vss/api/vss/v1"
	"github.com/linuxvss/vss/internal/config"
	"github.com/linuxvss/vss/internal/service"
)

// Right is what a call needs (VSS's VssAccessControl, in Linux terms).
type Right string

// The rights. Root has all of them; RightNone calls are open to anyone who
// can reach the socket.
const (
	RightNone    Right = ""
	RightList    Right = "list"
	RightCreate  Right = "create"
	RightDelete  Right = "delete"
	RightWriters Right = "writers"
	// RightRoot is for calls no access list grants.
	RightRoot Right = "root"
)

// rights maps every method to the right it needs. A method missing here is
// root-only.
var rights = map[string]Right{
	vssv1.Admin_Info_FullMethodName:                RightNone,
	vssv1.Admin_CreateShadowSet_FullMethodName:     RightCreate,
	vssv1.Admin_ListShadows_FullMethodName:         RightList,
	vssv1.Admin_Select_FullMethodName:              RightList,
	vssv1.Admin_DeleteShadows_FullMethodName:       RightDelete,
	vssv1.Admin_RevertShadow_FullMethodName:        RightDelete,
	vssv1.Admin_QueryReverts_FullMethodName:        RightList,
	vssv1.Admin_ListVolumes_FullMethodName:         RightList,
	vssv1.Admin_ListProviders_FullMethodName:       RightList,
	vssv1.Admin_ListWriters_FullMethodName:         RightList,
	vssv1.Admin_AddShadowStorage_FullMethodName:    RightDelete,
	vssv1.Admin_ResizeShadowStorage_FullMethodName: RightDelete,
	vssv1.Admin_ListShadowStorage_FullMethodName:   RightList,
	vssv1.Admin_StorageShadows_FullMethodName:      RightList,
	vssv1.Admin_DeleteShadowStorage_FullMethodName: RightDelete,
	vssv1.Admin_Expose_FullMethodName:              RightCreate,
	vssv1.Admin_Unexpose_FullMethodName:            RightCreate,
	vssv1.Admin_BreakSet_FullMethodName:            RightDelete,

	vssv1.Requester_InitializeForBackup_FullMethodName:  RightCreate,
	vssv1.Requester_InitializeForRestore_FullMethodName: RightDelete,
	vssv1.Requester_GatherWriterMetadata_FullMethodName: RightCreate,
	vssv1.Requester_SetContext_FullMethodName:           RightCreate,
	vssv1.Requester_SetBackupState_FullMethodName:       RightCreate,
	vssv1.Requester_ExcludeWriters_FullMethodName:       RightCreate,
	vssv1.Requester_AddComponent_FullMethodName:         RightCreate,
	vssv1.Requester_StartSnapshotSet_FullMethodName:     RightCreate,
	vssv1.Requester_AddToSnapshotSet_FullMethodName:     RightCreate,
	vssv1.Requester_PrepareForBackup_FullMethodName:     RightCreate,
	vssv1.Requester_DoSnapshotSet_FullMethodName:        RightCreate,
	vssv1.Requester_GatherWriterStatus_FullMethodName:   RightCreate,
	vssv1.Requester_SetBackupSucceeded_FullMethodName:   RightCreate,
	vssv1.Requester_BackupComplete_FullMethodName:       RightCreate,
	vssv1.Requester_AbortBackup_FullMethodName:          RightCreate,
	vssv1.Requester_SaveAsXML_FullMethodName:            RightCreate,
	vssv1.Requester_SelectForRestore_FullMethodName:     RightDelete,
	vssv1.Requester_PreRestore_FullMethodName:           RightDelete,
	vssv1.Requester_PostRestore_FullMethodName:          RightDelete,
	vssv1.Requester_EndSession_FullMethodName:           RightCreate,

	vssv1.Writers_Connect_FullMethodName: RightWriters,
}

// RightOf returns the right a method needs.
func RightOf(method string) Right {
	if r, ok := rights[method]; ok {
		return r
	}
	return RightRoot
}

// ACL decides who may call what, from the [access] configuration.
type ACL struct {
	grants map[Right][]string
	// groups returns the groups (names) of a user; os/user by default.
	groups func(uid, gid uint32) (user string, groups []string)
}

// NewACL builds the access lists of a configuration.
func NewACL(a config.Access) *ACL {
	return &ACL{
		grants: map[Right][]string{RightList: a.List, RightCreate: a.Create, RightDelete: a.Delete, RightWriters: a.Writers},
		groups: lookupGroups,
	}
}

// lookupGroups returns the user name of uid and the names of its groups
// (its primary group gid, and the supplementary groups of the account).
func lookupGroups(uid, gid uint32) (string, []string) {
	var name string
	var groups []string
	if g, err := user.LookupGroupId(strconv.Itoa(int(gid))); err == nil {
		groups = append(groups, g.Name)
	}
	u, err := user.LookupId(strconv.Itoa(int(uid)))
	if err != nil {
		return "", groups
	}
	name = u.Username
	ids, err := u.GroupIds()
	if err != nil {
		return name, groups
	}
	for _, id := range ids {
		if g, err := user.LookupGroupId(id); err == nil && !slices.Contains(groups, g.Name) {
			groups = append(groups, g.Name)
		}
	}
	return name, groups
}

// Allowed says whether c may make a call that needs right r. A list may
// name users ("alice", or a numeric uid "1001") and groups ("@backup").
// Having the delete right implies list; create implies list.
func (a *ACL) Allowed(r Right, c service.Caller) bool {
	if c.Uid == 0 || r == RightNone {
		return true
	}
	if r == RightRoot {
		return false
	}
	need := []Right{r}
	if r == RightList {
		need = []Right{RightList, RightCreate, RightDelete}
	}
	var name string
	var groups []string
	looked := false
	for _, right := range need {
		for _, p := range a.grants[right] {
			if p == strconv.Itoa(int(c.Uid)) {
				return true
			}
			if !looked {
				name, groups = a.groups(c.Uid, c.Gid)
				looked = true
			}
			if p == name && name != "" {
				return true
			}
			if len(p) > 1 && p[0] == '@' && slices.Contains(groups, p[1:]) {
				return true
			}
		}
	}
	return false
}
