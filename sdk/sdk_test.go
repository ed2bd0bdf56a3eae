package sdk

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/zclconf/go-cty/cty"
	ctyjson "github.com/zclconf/go-cty/cty/json"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/emptypb"
)

func TestErrorsRoundTrip(t *testing.T) {
	for _, sentinel := range []error{ErrNotFound, ErrExists, ErrInvalid, ErrConflict, ErrForbidden, ErrUnavailable, ErrNotSupported, ErrTimeout, context.Canceled} {
		t.Run(sentinel.Error(), func(t *testing.T) {
			orig := fmt.Errorf("network %q: %w", "red", sentinel)
			back := FromStatus(ToStatus(orig))
			if !errors.Is(back, sentinel) {
				t.Fatalf("errors.Is(%v, %v) = false after the wire", back, sentinel)
			}
			if back.Error() != orig.Error() {
				t.Fatalf("message %q, want %q", back.Error(), orig.Error())
			}
		})
	}
	plain := FromStatus(ToStatus(errors.New("boom")))
	for _, s := range []error{ErrNotFound, ErrInvalid, ErrConflict} {
		if errors.Is(plain, s) {
			t.Fatalf("a plain error came back as %v", s)
		}
	}
	if FromStatus(ToStatus(nil)) != nil {
		t.Fatal("nil did not stay nil")
	}
}

type testConfig struct {
	Path    string            `hcl:"path" doc:"where"`
	Retries int               `hcl:"retries,optional"`
	Tags    []string          `hcl:"tags,optional"`
	Labels  map[string]string `hcl:"labels,optional"`
	Debug   bool              `hcl:"debug,optional"`
	ignored string
}

func TestSchemaAndDecode(t *testing.T) {
	s, err := SchemaFor(testConfig{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, a := range s.GetAttributes() {
		got[a.GetName()] = a.GetRequired()
	}
	want := map[string]bool{"path": true, "retries": false, "tags": false, "labels": false, "debug": false}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("schema = %v, want %v", got, want)
	}
	ty, err := SchemaType(s)
	if err != nil {
		t.Fatal(err)
	}
	val := cty.ObjectVal(map[string]cty.Value{
		"path":    cty.StringVal("/x"),
		"retries": cty.NullVal(cty.Number),
		"tags":    cty.ListVal([]cty.Value{cty.StringVal("a")}),
		"labels":  cty.NullVal(cty.Map(cty.String)),
		"debug":   cty.True,
	})
	raw, err := ctyjson.Marshal(val, ty)
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig{Retries: 3}
	if err := DecodeConfig(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Path != "/x" || cfg.Retries != 3 || len(cfg.Tags) != 1 || !cfg.Debug {
		t.Fatalf("decoded %+v: want path /x, the default retries 3 kept, tags [a], debug", cfg)
	}
	if err := DecodeConfig([]byte(`{"path": ["a list"]}`), &cfg); !errors.Is(err, ErrInvalid) {
		t.Fatalf("wrong type: err = %v, want ErrInvalid", err)
	}
	if _, err := SchemaFor(42); !errors.Is(err, ErrInvalid) {
		t.Fatalf("SchemaFor(int) = %v, want ErrInvalid", err)
	}
}

// TestClosedConnectionIsUnavailable: a call cut off because the host
// closed its connection to a plugin that died is the plugin being
// unavailable (a 503 at the API), not the caller canceling.
func TestClosedConnectionIsUnavailable(t *testing.T) {
	conn, err := grpc.NewClient("passthrough:///plugin", grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
	err = FromStatus(conn.Invoke(context.Background(), "/sandnet.v1.Driver/Leave", &emptypb.Empty{}, &emptypb.Empty{}))
	if !errors.Is(err, ErrUnavailable) || errors.Is(err, context.Canceled) {
		t.Fatalf("a call on a closed connection gave %v; want it to match ErrUnavailable only", err)
	}
}
