// Command funclen lists the functions longer than a limit in the
// packages it is given, and exits non-zero when there is one. The attach
// and create paths are kept readable as short named steps
// (docs/architecture.md); make lint runs it on the packages that hold them.
//
// Usage: go run ./.ci/funclen [-max N] DIR...
package main

import (
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

func main() {
	max := flag.Int("max", 80, "the most lines a function may span, from func to its closing brace")
	flag.Parse()
	var long []string
	for _, dir := range flag.Args() {
		found, err := longFuncs(dir, *max)
		if err != nil {
			fmt.Fprintln(os.Stderr, "funclen:", err)
			os.Exit(2)
		}
		long = append(long, found...)
	}
	sort.Strings(long)
	for _, l := range long {
		fmt.Println(l)
	}
	if len(long) > 0 {
		fmt.Fprintf(os.Stderr, "funclen: %d functions over %d lines; split them into named steps\n", len(long), *max)
		os.Exit(1)
	}
}

// longFuncs returns "file:line: name is N lines" for each function (or
// method) in dir's non-test Go files that spans more than max lines.
func longFuncs(dir string, max int) ([]string, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		return nil, err
	}
	fset := token.NewFileSet()
	var out []string
	for _, path := range files {
		if strings.HasSuffix(path, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return nil, err
		}
		for _, d := range f.Decls {
			fn, ok := d.(*ast.FuncDecl)
			if !ok || fn.Body == nil {
				continue
			}
			start, end := fset.Position(fn.Pos()), fset.Position(fn.End())
			if n := end.Line - start.Line + 1; n > max {
				out = append(out, fmt.Sprintf("%s:%d: %s is %d lines", path, start.Line, name(fn), n))
			}
		}
	}
	return out, nil
}

// name is a function's name as Go writes it: (*T).M for a method.
func name(fn *ast.FuncDecl) string {
	if fn.Recv == nil || len(fn.Recv.List) == 0 {
		return fn.Name.Name
	}
	t := fn.Recv.List[0].Type
	star := ""
	if s, ok := t.(*ast.StarExpr); ok {
		star, t = "*", s.X
	}
	if g, ok := t.(*ast.IndexExpr); ok {
		t = g.X
	}
	if g, ok := t.(*ast.IndexListExpr); ok {
		t = g.X
	}
	if id, ok := t.(*ast.Ident); ok {
		return fmt.Sprintf("(%s%s).%s", star, id.Name, fn.Name.Name)
	}
	return fn.Name.Name
}
