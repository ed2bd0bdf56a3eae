package main

import (
	"testing"

	"github.com/sandnet/sandnet/sdk"
	"github.com/sandnet/sandnet/sdk/plugintest"
)

// TestREADME decodes the README's examples against the schema the plugin
// declares, as the host does, and configures the driver with the result.
func TestREADME(t *testing.T) {
	for i, raw := range plugintest.ReadmeConfigs(t, "README.md", "driver", "none", sdk.MustSchemaFor(Config{})) {
		if err := (&none{}).Configure(t.Context(), raw); err != nil {
			t.Fatalf("example %d: Configure(%s): %v", i+1, raw, err)
		}
	}
}
