package nstest

import (
	"errors"
	"strings"
	"testing"
)

func TestParseNSID(t *testing.T) {
	tests := []struct {
		in      string
		want    nsID
		wantErr bool
	}{
		{in: "4:4026531840", want: nsID{dev: 4, ino: 4026531840}},
		{in: "0:1", want: nsID{dev: 0, ino: 1}},
		{in: "", wantErr: true},
		{in: "1", wantErr: true},
		{in: "x:1", wantErr: true},
		{in: "1:y", wantErr: true},
		{in: "1:0", wantErr: true},
		{in: "1:2:3", wantErr: true},
	}
	for _, tt := range tests {
		got, err := parseNSID(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("parseNSID(%q) error = %v, want error %v", tt.in, err, tt.wantErr)
			continue
		}
		if err == nil && got != tt.want {
			t.Errorf("parseNSID(%q) = %v, want %v", tt.in, got, tt.want)
		}
		if err == nil && got.String() != tt.in {
			t.Errorf("parseNSID(%q).String() = %q, does not round-trip", tt.in, got.String())
		}
	}
}

func TestSkipReason(t *testing.T) {
	host := nsID{dev: 4, ino: 4026531840}
	child := nsID{dev: 4, ino: 4026532999}
	in := func(id nsID) func() (nsID, error) { return func() (nsID, error) { return id, nil } }
	broken := func() (nsID, error) { return nsID{}, errors.New("no /proc") }

	tests := []struct {
		name     string
		euid     int
		marker   string
		current  func() (nsID, error)
		wantSkip string // substring of the reason; "" means the test runs
	}{
		{name: "not root", euid: 1000, marker: host.String(), current: in(child), wantSkip: "needs root"},
		{name: "root, no marker", euid: 0, marker: "", current: in(host), wantSkip: "not isolated"},
		{name: "root, marker set by hand in the same namespace", euid: 0, marker: host.String(), current: in(host), wantSkip: "not isolated"},
		{name: "root, garbage marker", euid: 0, marker: "1", current: in(child), wantSkip: "not isolated"},
		{name: "root, namespace unreadable", euid: 0, marker: host.String(), current: broken, wantSkip: "not isolated"},
		{name: "root, isolated", euid: 0, marker: host.String(), current: in(child), wantSkip: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := skipReason(tt.euid, tt.marker, tt.current)
			if tt.wantSkip == "" {
				if got != "" {
					t.Fatalf("skipReason = %q, want the test to run", got)
				}
				return
			}
			if !strings.Contains(got, tt.wantSkip) {
				t.Fatalf("skipReason = %q, want it to mention %q", got, tt.wantSkip)
			}
		})
	}
}
