package config

import (
	"path/filepath"
	"time"

	"github.com/hashicorp/hcl/v2"
)

// Sandbox configures sandboxes (network namespaces).
type Sandbox struct {
	// NetnsDir is where sandbox namespaces are bind-mounted, one file per
	// sandbox: the sandbox's key.
	NetnsDir string
	// FilesDir holds each sandbox's resolv.conf and hosts, under <id>/.
	// Like the namespaces, they do not outlive a reboot, so a runtime
	// directory (a tmpfs) will do; by default, "sandboxes" next to
	// NetnsDir.
	FilesDir string
	// StubGracePeriod is how long, after an agent restart, a sandbox read
	// back from the store waits to be claimed by its container before it
	// is deleted with its endpoints.
	StubGracePeriod time.Duration
	// SpareNamespaces is how many namespaces the agent keeps made ahead
	// of time, so that a sandbox create takes one instead of waiting for
	// the kernel to make it; 0 makes each on demand.
	SpareNamespaces int
}

// Defaults of the sandbox block.
const (
	DefaultNetnsDir        = "/run/sandnet/netns"
	DefaultFilesDir        = "/run/sandnet/sandboxes"
	DefaultStubGracePeriod = time.Minute
	DefaultSpareNamespaces = 2
	// MaxSpareNamespaces bounds spare_namespaces.
	MaxSpareNamespaces = 64
)

var sandboxSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "netns_dir"}, {Name: "files_dir"}, {Name: "stub_grace_period"}, {Name: "spare_namespaces"}},
}

func (d *decoder) sandbox(s *Sandbox, body hcl.Body) {
	content, diags := body.Content(sandboxSchema)
	d.add(diags)
	if a := content.Attributes["netns_dir"]; a != nil {
		d.path(a, &s.NetnsDir)
		s.FilesDir = filepath.Join(filepath.Dir(s.NetnsDir), "sandboxes")
	}
	if a := content.Attributes["files_dir"]; a != nil {
		d.path(a, &s.FilesDir)
	}
	d.distinctDirs(s, content.Attributes)
	if a := content.Attributes["spare_namespaces"]; a != nil {
		var n int
		if d.decode(a, &n) {
			if n < 0 || n > MaxSpareNamespaces {
				d.errorf(a.Expr.Range(), "Invalid spare_namespaces",
					"spare_namespaces must be between 0 and %d; got %d.", MaxSpareNamespaces, n)
			} else {
				s.SpareNamespaces = n
			}
		}
	}
	if a := content.Attributes["stub_grace_period"]; a != nil {
		var str string
		if d.decode(a, &str) {
			t, err := time.ParseDuration(str)
			switch {
			case err != nil:
				d.errorf(a.Expr.Range(), "Invalid duration",
					"%q is not a duration; write a number with a unit, such as \"30s\" or \"2m\".", str)
			case t < 0:
				d.errorf(a.Expr.Range(), "Invalid stub_grace_period",
					"stub_grace_period must not be negative; got %s.", t)
			default:
				s.StubGracePeriod = t
			}
		}
	}
}

// distinctDirs refuses one directory for the namespaces and the files: a
// sandbox's key, netns_dir/<id>, would be the path of its files'
// directory, files_dir/<id>, and every create would fail. A netns_dir
// named "sandboxes" with no files_dir is the same clash, through the
// default.
func (d *decoder) distinctDirs(s *Sandbox, attrs hcl.Attributes) {
	if s.FilesDir != s.NetnsDir {
		return
	}
	if a := attrs["files_dir"]; a != nil {
		d.errorf(a.Expr.Range(), "Invalid files_dir",
			"files_dir is netns_dir (%s): a sandbox's namespace file and the directory of its resolv.conf and hosts would have one path. Give each a directory of its own.", s.FilesDir)
	} else if a := attrs["netns_dir"]; a != nil {
		d.errorf(a.Expr.Range(), "Invalid netns_dir",
			"files_dir defaults to \"sandboxes\" next to netns_dir, which is netns_dir itself (%s): a sandbox's namespace file and the directory of its resolv.conf and hosts would have one path. Set files_dir, or name netns_dir otherwise.", s.NetnsDir)
	}
}
