package api

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"

	"github.com/sandnet/sandnet/sdk"
)

// request is a body shaped like the API's: an embedded struct, a list of
// objects, addresses that parse from strings, a map.
type request struct {
	ID string `json:"id"`
	inner
	Items   []item            `json:"items,omitempty"`
	Options map[string]string `json:"options,omitempty"`
}

type inner struct {
	DNS []netip.Addr `json:"dns,omitempty"`
}

type item struct {
	Name     string `json:"name"`
	Priority int    `json:"priority,omitempty"`
}

func TestDecodeNamesTheField(t *testing.T) {
	var ok request
	if err := DecodeBytes([]byte(`{"id":"a","dns":["192.0.2.1"],"items":[{"name":"x","priority":2}],"options":{"k":"v"}}`), &ok); err != nil {
		t.Fatal(err)
	}
	if ok.ID != "a" || len(ok.DNS) != 1 || ok.Items[0].Priority != 2 || ok.Options["k"] != "v" {
		t.Fatalf("decoded %+v", ok)
	}
	tests := []struct{ body, want string }{
		{`{"items":[{"name":"x"},{"name":"y","priority":"high"}]}`, "items[1].priority: "},
		{`{"dns":["192.0.2.1","not-an-ip"]}`, `dns[1]: "not-an-ip" is not an IP address: invalid argument`},
		{`{"dns":[5]}`, "dns[0]: expected a JSON string (an IP address), got JSON number"},
		{`{"items":[{"name":"x","zz":1}]}`, "items[0].zz: unknown field"},
		{`{"idd":"a"}`, "idd: unknown field"},
		{`{"items":[{"a b\nc":1}]}`, `items[0]["a b\nc"]: unknown field`},
		{`{"options":{"k":1}}`, "options.k: "},
		{`[1,2]`, "request body: expected a JSON object, got JSON array"},
		{`"a"`, "request body: expected a JSON object"},
		{`{"id":"a"} {"id":"b"}`, "request body: invalid JSON"},
		{`{"id":"a","id":"b"}`, "id: invalid JSON"},
		{`{"id":"a`, "id: invalid JSON"},
		{`{"id":"\ud800"}`, "id: invalid JSON"},
		{"{\"id\":\"\xff\"}", "id: invalid JSON"},
		{``, "request body: empty"},
		{`{"id":1}`, "id: expected a JSON string, got JSON number"},
	}
	for _, tt := range tests {
		t.Run(tt.body, func(t *testing.T) {
			var v request
			err := DecodeBytes([]byte(tt.body), &v)
			if !errors.Is(err, sdk.ErrInvalid) || !strings.HasPrefix(err.Error(), tt.want) {
				t.Fatalf("DecodeBytes(%s) = %v, want an invalid-argument error starting %q", tt.body, err, tt.want)
			}
		})
	}
}

// A body nested past the decoder's depth is refused with a message of a
// few hundred bytes, not its whole path (20 KB on one line).
func TestDeeplyNestedBodyClipped(t *testing.T) {
	body := `{"options":` + strings.Repeat(`{"a":`, 12000) + `1` + strings.Repeat(`}`, 12001)
	var v map[string]any
	err := DecodeBytes([]byte(body), &v)
	if !errors.Is(err, sdk.ErrInvalid) || !strings.HasPrefix(err.Error(), "options.") || len(err.Error()) > 512 {
		t.Fatalf("DecodeBytes of a body nested 12000 deep = %d bytes: %.300v", len(fmt.Sprint(err)), err)
	}
}

// TestOversizedBody: a body over the limit gets 413 naming the limit, also
// when the client writes all of it before reading the answer.
func TestOversizedBody(t *testing.T) {
	c, sock := serve(t)
	big := append([]byte(`{"name":"`), bytes.Repeat([]byte("a"), 50<<20)...)
	big = append(big, `"}`...)
	err := c.Do(t.Context(), "POST", "/v1/things", json.RawMessage(big), nil)
	var ae *Error
	if !errors.As(err, &ae) || ae.Status != http.StatusRequestEntityTooLarge || !strings.Contains(ae.Message, "1 MiB") {
		t.Fatalf("50 MB body through the client: %v, want 413 naming the limit", err)
	}
	conn, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := fmt.Fprintf(conn, "POST /v1/things HTTP/1.1\r\nHost: sandnet\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", len(big)); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write(big); err != nil {
		t.Fatalf("writing the whole body before reading: %v", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(string(b), "1 MiB") {
		t.Fatalf("write-first client got %d %s, want 413 naming the limit", resp.StatusCode, b)
	}
}
