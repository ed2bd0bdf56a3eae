package sdk

import (
	"fmt"
	"reflect"
	"strings"

	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/gocty"
	ctyjson "github.com/zclconf/go-cty/cty/json"

	pb "github.com/sandnet/sandnet/sdk/proto"
)

// SchemaFor derives the schema of a plugin's `config` block from a struct
// whose fields carry gohcl-style tags: `hcl:"name"` for a required
// attribute, `hcl:"name,optional"` for an optional one. A `doc:"…"` tag
// becomes the attribute's description. Field types are those gocty
// understands: strings, numbers, bools, slices and maps of them.
//
//	type Config struct {
//		Path    string `hcl:"path,optional" doc:"database file"`
//		Timeout int    `hcl:"timeout_ms,optional"`
//	}
func SchemaFor(v any) (*pb.Schema, error) {
	t := reflect.TypeOf(v)
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil || t.Kind() != reflect.Struct {
		return nil, fmt.Errorf("config schema: %T is not a struct: %w", v, ErrInvalid)
	}
	s := &pb.Schema{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, optional, ok := hclTag(f)
		if !ok {
			continue
		}
		ty, err := gocty.ImpliedType(reflect.Zero(f.Type).Interface())
		if err != nil {
			return nil, fmt.Errorf("config schema: field %s: %w", f.Name, err)
		}
		tj, err := ctyjson.MarshalType(ty)
		if err != nil {
			return nil, fmt.Errorf("config schema: field %s: %w", f.Name, err)
		}
		s.Attributes = append(s.Attributes, &pb.Attribute{
			Name:        name,
			Type:        tj,
			Required:    !optional,
			Description: f.Tag.Get("doc"),
		})
	}
	return s, nil
}

// MustSchemaFor is SchemaFor for package-level plugin declarations; it
// panics on a struct it cannot describe, which is a programming error.
func MustSchemaFor(v any) *pb.Schema {
	s, err := SchemaFor(v)
	if err != nil {
		panic(err)
	}
	return s
}

// SchemaType returns the cty object type a schema describes.
func SchemaType(s *pb.Schema) (cty.Type, error) {
	attrs := make(map[string]cty.Type, len(s.GetAttributes()))
	for _, a := range s.GetAttributes() {
		ty, err := ctyjson.UnmarshalType(a.GetType())
		if err != nil {
			return cty.NilType, fmt.Errorf("schema attribute %q: bad type: %w", a.GetName(), err)
		}
		attrs[a.GetName()] = ty
	}
	return cty.Object(attrs), nil
}

// DecodeConfig fills the tagged fields of the struct that dst points to
// from the configuration the host sent. Attributes the operator left out
// are null and leave their field untouched, so defaults set in dst
// before the call survive.
func DecodeConfig(raw []byte, dst any) error {
	rv := reflect.ValueOf(dst)
	if rv.Kind() != reflect.Pointer || rv.Elem().Kind() != reflect.Struct {
		return fmt.Errorf("decoding config: %T is not a pointer to a struct: %w", dst, ErrInvalid)
	}
	if len(raw) == 0 {
		return nil
	}
	schema, err := SchemaFor(dst)
	if err != nil {
		return err
	}
	ty, err := SchemaType(schema)
	if err != nil {
		return err
	}
	val, err := ctyjson.Unmarshal(raw, ty)
	if err != nil {
		return fmt.Errorf("decoding config: %v: %w", err, ErrInvalid)
	}
	rv = rv.Elem()
	for i := 0; i < rv.NumField(); i++ {
		name, _, ok := hclTag(rv.Type().Field(i))
		if !ok {
			continue
		}
		av := val.GetAttr(name)
		if av.IsNull() {
			continue
		}
		if err := gocty.FromCtyValue(av, rv.Field(i).Addr().Interface()); err != nil {
			return fmt.Errorf("decoding config attribute %q: %v: %w", name, err, ErrInvalid)
		}
	}
	return nil
}

func hclTag(f reflect.StructField) (name string, optional, ok bool) {
	tag, ok := f.Tag.Lookup("hcl")
	if !ok || !f.IsExported() {
		return "", false, false
	}
	name, rest, _ := strings.Cut(tag, ",")
	return name, rest == "optional", name != ""
}
