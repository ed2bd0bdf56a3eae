package sdk

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestVersion keeps Version, the changelog and the README's require line
// in step, and checks that a plugin reports the version and protocol it
// was built with.
func TestVersion(t *testing.T) {
	changelog, err := os.ReadFile("CHANGELOG.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^## v(\d+\.\d+\.\d+)\b`).FindSubmatch(changelog)
	if m == nil || string(m[1]) != Version {
		t.Errorf("CHANGELOG.md's newest version heading is %q; sdk.Version is %q", m, Version)
	}
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	if want := "require github.com/sandnet/sandnet/sdk v" + Version + "\n"; !strings.Contains(string(readme), want) {
		t.Errorf("README.md does not say %q", want)
	}
	pi, err := Info{Name: "x"}.Proto(KindDriver)
	if err != nil {
		t.Fatal(err)
	}
	if pi.GetSdkVersion() != Version || !slices.Equal(pi.GetProtocolVersions(), []int32{ProtocolVersion}) {
		t.Errorf("PluginInfo reports sdk %q, protocols %v; want %q, [%d]", pi.GetSdkVersion(), pi.GetProtocolVersions(), Version, ProtocolVersion)
	}
}
