package main

import "testing"

// A "table TEMPLATE" format's header names each action's last field in
// capitals, as docker's does.
func TestTableHeader(t *testing.T) {
	for in, want := range map[string]string{
		"{{.Name}}\t{{.ID}}":                          "NAME\tID",
		"{{json .IPv4}} x {{.Driver | upper}}":        "IPV4 x DRIVER",
		"{{index .Options \"com.example\"}}\t{{.ID}}": "OPTIONS\tID",
		"{{range .Endpoints}}{{.Address}}{{end}}":     "ENDPOINTSADDRESS",
	} {
		if got := tableHeader(in); got != want {
			t.Errorf("tableHeader(%q) = %q, want %q", in, got, want)
		}
	}
}
