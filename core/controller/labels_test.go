package controller

import (
	"errors"
	"strings"
	"testing"

	"github.com/sandnet/sandnet/sdk"
)

func TestCheckLabels(t *testing.T) {
	many := map[string]string{}
	for i := range maxLabels + 1 {
		many[strings.Repeat("k", i+1)] = ""
	}
	for _, tc := range []struct {
		labels map[string]string
		err    string // "" when accepted
	}{
		{map[string]string{"com.example.project": "web", "empty": "", "ünï": "cödé ok"}, ""},
		{map[string]string{"": "x"}, "labels: a key of 0 bytes"},
		{map[string]string{"a=b": "x"}, `labels: key "a=b" has "="`},
		{map[string]string{"a b": "x"}, `labels: key "a b" has`},
		{map[string]string{"k": "line\nbreak"}, `labels.k: the value "line\nbreak" has a control character`},
		{map[string]string{"k": strings.Repeat("v", maxLabelValueLen+1)}, "labels.k: a value of 4097 bytes"},
		{many, "labels: 129 entries; at most 128"},
	} {
		err := checkLabels(tc.labels)
		if tc.err == "" && err != nil || tc.err != "" && (!errors.Is(err, sdk.ErrInvalid) || !strings.HasPrefix(err.Error(), tc.err)) {
			t.Errorf("checkLabels(%.60v) = %v, want %q", tc.labels, err, tc.err)
		}
	}
}

func TestNetworkFilter(t *testing.T) {
	n := &Network{ID: "abcdef0123", Name: "front-web", Driver: "bridge", Scope: "local", Labels: map[string]string{"project": "shop", "tier": ""}}
	for _, tc := range []struct {
		f    NetworkFilter
		want bool
	}{
		{NetworkFilter{}, true},
		{NetworkFilter{Names: []string{"web"}}, true},
		{NetworkFilter{Names: []string{"back", "front"}}, true},
		{NetworkFilter{Names: []string{"back"}}, false},
		{NetworkFilter{IDs: []string{"abc"}}, true},
		{NetworkFilter{IDs: []string{"bcd"}}, false},
		{NetworkFilter{Drivers: []string{"overlay"}}, false},
		{NetworkFilter{Scopes: []string{"local"}, Drivers: []string{"bridge"}}, true},
		{NetworkFilter{Labels: []string{"project"}}, true},
		{NetworkFilter{Labels: []string{"project=shop"}}, true},
		{NetworkFilter{Labels: []string{"project=blog"}}, false},
		{NetworkFilter{Labels: []string{"tier="}}, true},
		{NetworkFilter{Labels: []string{"owner"}}, false},
		{NetworkFilter{Labels: []string{"project=shop"}, Drivers: []string{"overlay"}}, false},
	} {
		if got := tc.f.Match(n); got != tc.want {
			t.Errorf("%+v matches %v, want %v", tc.f, got, tc.want)
		}
	}
}
