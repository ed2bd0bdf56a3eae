package agent

import (
	"errors"
	"strings"
	"testing"

	"github.com/sandnet/sandnet/core/config"
	"github.com/sandnet/sandnet/sdk"
)

// TestStoreChangedSaysWhat: a reload refused for switching stores names
// what switched them, also when the file has no store block (the store is
// then data_dir's, so a new data_dir is a new store).
func TestStoreChangedSaysWhat(t *testing.T) {
	parse := func(src string) *config.Config {
		t.Helper()
		c, diags := config.Parse([]byte(src), "/etc/sandnet/agent.hcl")
		if diags.HasErrors() {
			t.Fatal(diags)
		}
		return c
	}
	implicitA := parse("data_dir = \"/var/lib/a\"\n")
	implicitB := parse("data_dir = \"/var/lib/b\"\n")
	explicit := parse("data_dir = \"/var/lib/a\"\n\nstore \"bolt\" {\n  config {\n    path = \"/srv/s.db\"\n  }\n}\n")
	for _, tc := range []struct {
		name       string
		old, next  *config.Config
		want, lack string
	}{
		{"data_dir", implicitA, implicitB, "data_dir changed from /var/lib/a to /var/lib/b", "store block changed"},
		{"block added", implicitA, explicit, "now has a store block (/etc/sandnet/agent.hcl:3:1), where the running agent uses the bolt store in data_dir (/var/lib/a/store.db)", "store block changed"},
		{"block removed", explicit, implicitB, "no longer has a store block, so the store would be the bolt store at /var/lib/b/store.db", "store block changed"},
		{"block edited", explicit, explicit, "the store block changed (/etc/sandnet/agent.hcl:3:1)", "data_dir"},
	} {
		err := storeChanged(tc.old, tc.next)
		if !errors.Is(err, sdk.ErrConflict) || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), tc.lack) || !strings.Contains(err.Error(), "sandnet store migrate") {
			t.Errorf("%s: %v; want a conflict saying %q", tc.name, err, tc.want)
		}
	}
}
