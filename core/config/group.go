package config

import (
	"os/user"
	"strconv"

	"github.com/hashicorp/hcl/v2"
)

// socketGroup decodes api { socket_group }: a group name or numeric ID
// that must exist on this host.
func (d *decoder) socketGroup(a *API, attr *hcl.Attribute) {
	var name string
	if !d.decode(attr, &name) {
		return
	}
	g, err := user.LookupGroup(name)
	if err != nil {
		if _, nerr := strconv.Atoi(name); nerr == nil {
			g, err = user.LookupGroupId(name)
		}
	}
	if err != nil {
		d.errorf(attr.Expr.Range(), "Unknown socket group",
			"There is no group %q on this host; create it (groupadd %s) or name an existing one.", name, name)
		return
	}
	gid, err := strconv.Atoi(g.Gid)
	if err != nil {
		d.errorf(attr.Expr.Range(), "Unknown socket group", "Group %q has the non-numeric ID %q.", name, g.Gid)
		return
	}
	a.SocketGroup, a.SocketGID = g.Name, gid
}
