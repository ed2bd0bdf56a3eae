package config

import (
	"time"

	"github.com/hashicorp/hcl/v2"
)

// Sandbox configures sandboxes (network namespaces).
type Sandbox struct {
	// NetnsDir is where sandbox namespaces are bind-mounted, one file per
	// sandbox: the sandbox's key.
	NetnsDir string
	// StubGracePeriod is how long, after an agent restart, a sandbox read
	// back from the store waits to be claimed by its container before it
	// is deleted with its endpoints.
	StubGracePeriod time.Duration
}

// Defaults of the sandbox block.
const (
	DefaultNetnsDir        = "/run/sandnet/netns"
	DefaultStubGracePeriod = time.Minute
)

var sandboxSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "netns_dir"}, {Name: "stub_grace_period"}},
}

func (d *decoder) sandbox(s *Sandbox, body hcl.Body) {
	content, diags := body.Content(sandboxSchema)
	d.add(diags)
	if a := content.Attributes["netns_dir"]; a != nil {
		d.path(a, &s.NetnsDir)
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
