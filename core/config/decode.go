package config

import (
	"fmt"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
	"github.com/zclconf/go-cty/cty/gocty"
)

// decodeAttr evaluates attr without variables or functions and stores the
// result in dst, whose Go type decides the HCL type required. A null value
// counts as absent: dst is left alone and set is false.
func decodeAttr(attr *hcl.Attribute, dst any) (set bool, diags hcl.Diagnostics) {
	v, diags := attr.Expr.Value(nil)
	// An unknown value comes from an expression the parser already
	// reported as broken.
	if diags.HasErrors() || v.IsNull() || !v.IsWhollyKnown() {
		return false, diags
	}
	ty, err := gocty.ImpliedType(dst)
	if err != nil {
		panic(fmt.Sprintf("config: unsuitable decode target %T: %v", dst, err))
	}
	return decodeValue(attr.Name, attr.Expr.Range(), v, ty, dst)
}

// decodeValue converts v to ty and stores it in dst, reporting failure as
// a wrong value for the argument name at subject.
func decodeValue(name string, subject hcl.Range, v cty.Value, ty cty.Type, dst any) (bool, hcl.Diagnostics) {
	v, err := convert.Convert(v, ty)
	if err == nil {
		err = gocty.FromCtyValue(v, dst)
	}
	if err != nil {
		return false, hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "Incorrect attribute value type",
			Detail:   fmt.Sprintf("Inappropriate value for argument %q: %s.", name, err),
			Subject:  subject.Ptr(),
		}}
	}
	return true, nil
}

// didYouMean returns ` Did you mean "x"?` for the candidate closest to
// given, or "" when none is close. Close means an edit distance under 3,
// the threshold HCL itself uses, or a prefix ("warning" for "warn").
func didYouMean(given string, candidates []string) string {
	best, bestDist := "", 3
	for _, c := range candidates {
		d := editDistance(given, c)
		if strings.HasPrefix(given, c) || strings.HasPrefix(c, given) {
			d = min(d, 2)
		}
		if d < bestDist {
			best, bestDist = c, d
		}
	}
	if best == "" || given == "" {
		return ""
	}
	return fmt.Sprintf(" Did you mean %q?", best)
}

// editDistance is the Levenshtein distance between a and b, in runes.
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}

// staticBody is an hcl.Body of literal attributes that no file spells out
// (the config of the default store). Every range it reports is rng.
type staticBody struct {
	attrs map[string]cty.Value
	rng   hcl.Range
}

func (b staticBody) Content(s *hcl.BodySchema) (*hcl.BodyContent, hcl.Diagnostics) {
	c, _, diags := b.content(s, true)
	return c, diags
}

func (b staticBody) content(s *hcl.BodySchema, strict bool) (*hcl.BodyContent, hcl.Body, hcl.Diagnostics) {
	c := &hcl.BodyContent{Attributes: hcl.Attributes{}, MissingItemRange: b.rng}
	rest := staticBody{attrs: map[string]cty.Value{}, rng: b.rng}
	for k, v := range b.attrs {
		rest.attrs[k] = v
	}
	var diags hcl.Diagnostics
	var names []string
	for _, as := range s.Attributes {
		names = append(names, as.Name)
		v, ok := b.attrs[as.Name]
		if !ok {
			if as.Required {
				diags = append(diags, &hcl.Diagnostic{
					Severity: hcl.DiagError,
					Summary:  "Missing required argument",
					Detail:   fmt.Sprintf("The argument %q is required, but no definition was found.", as.Name),
					Subject:  b.rng.Ptr(),
				})
			}
			continue
		}
		c.Attributes[as.Name] = &hcl.Attribute{Name: as.Name, Expr: hcl.StaticExpr(v, b.rng), Range: b.rng, NameRange: b.rng}
		delete(rest.attrs, as.Name)
	}
	if strict {
		for k := range rest.attrs {
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Unsupported argument",
				Detail:   fmt.Sprintf("An argument named %q is not expected here.%s", k, didYouMean(k, names)),
				Subject:  b.rng.Ptr(),
			})
		}
	}
	return c, rest, diags
}

func (b staticBody) PartialContent(s *hcl.BodySchema) (*hcl.BodyContent, hcl.Body, hcl.Diagnostics) {
	return b.content(s, false)
}

func (b staticBody) JustAttributes() (hcl.Attributes, hcl.Diagnostics) {
	attrs := hcl.Attributes{}
	for k, v := range b.attrs {
		attrs[k] = &hcl.Attribute{Name: k, Expr: hcl.StaticExpr(v, b.rng), Range: b.rng, NameRange: b.rng}
	}
	return attrs, nil
}

func (b staticBody) MissingItemRange() hcl.Range { return b.rng }
