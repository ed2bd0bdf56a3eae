package controller

import (
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/sandnet/sandnet/sdk"
)

// Bounds of a network's labels: Docker sets none, but a label is
// metadata, and the record of every network is read on every listing.
const (
	maxLabels        = 128
	maxLabelKeyLen   = 256
	maxLabelValueLen = 4096
)

// checkLabels checks a network's labels: at most maxLabels, each key 1
// to maxLabelKeyLen bytes without "=", space or control character (a
// filter writes key=value), each value at most maxLabelValueLen bytes
// without control characters. Errors name the label (labels.KEY).
func checkLabels(labels map[string]string) error {
	return checkKeyValues("labels", labels, maxLabels)
}

// checkKeyValues checks the key=value pairs of field (labels, driver
// options): at most max, each key 1 to maxLabelKeyLen bytes of UTF-8
// with no "=", space or control character, each value at most
// maxLabelValueLen bytes of UTF-8 with no control character.
func checkKeyValues(field string, m map[string]string, max int) error {
	if len(m) > max {
		return errorf(sdk.ErrInvalid, "%s: %d entries; at most %d", field, len(m), max)
	}
	for k, v := range m {
		switch {
		case k == "" || len(k) > maxLabelKeyLen:
			return errorf(sdk.ErrInvalid, "%s: a key of %d bytes; a key is 1 to %d", field, len(k), maxLabelKeyLen)
		case !utf8.ValidString(k) || strings.ContainsFunc(k, func(r rune) bool { return r == '=' || unicode.IsSpace(r) || unicode.IsControl(r) }):
			return errorf(sdk.ErrInvalid, "%s: key %q has \"=\", a space or a control character", field, clip(k))
		case len(v) > maxLabelValueLen:
			return errorf(sdk.ErrInvalid, "%s.%s: a value of %d bytes; at most %d", field, k, len(v), maxLabelValueLen)
		case !utf8.ValidString(v) || strings.ContainsFunc(v, unicode.IsControl):
			return errorf(sdk.ErrInvalid, "%s.%s: the value %q has a control character", field, k, clip(v))
		}
	}
	return nil
}

// NetworkFilter selects networks, as docker network ls --filter does: a
// network passes when, for every field set, it matches one of the
// values. Names match as substrings, IDs as prefixes; a label is "key"
// (the network has it) or "key=value".
type NetworkFilter struct {
	Names   []string
	IDs     []string
	Drivers []string
	Scopes  []string
	Labels  []string
}

// Match reports whether n passes f.
func (f NetworkFilter) Match(n *Network) bool {
	oneOf := func(vals []string, ok func(string) bool) bool {
		return len(vals) == 0 || slices.ContainsFunc(vals, ok)
	}
	return oneOf(f.Names, func(v string) bool { return strings.Contains(n.Name, v) }) &&
		oneOf(f.IDs, func(v string) bool { return strings.HasPrefix(n.ID, v) }) &&
		oneOf(f.Drivers, func(v string) bool { return n.Driver == v }) &&
		oneOf(f.Scopes, func(v string) bool { return n.Scope == v }) &&
		oneOf(f.Labels, func(v string) bool {
			k, want, hasValue := strings.Cut(v, "=")
			got, ok := n.Labels[k]
			return ok && (!hasValue || got == want)
		})
}
