package config

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/hashicorp/hcl/v2"
)

// FormatDiagnostics writes each diagnostic on one line as
//
//	file:line:col: error: summary; detail
//
// (`warning` for warnings; `file:` alone when the problem has no line, as
// for an unreadable file), the shape compilers use so that editors can
// jump to it. When files holds the diagnostic's file (Config.Files), the
// source line follows, indented, with carets under the subject. It
// returns the first write error.
func FormatDiagnostics(w io.Writer, files map[string]*hcl.File, diags hcl.Diagnostics) error {
	bw := bufio.NewWriter(w)
	for _, diag := range diags {
		sev := "error"
		if diag.Severity == hcl.DiagWarning {
			sev = "warning"
		}
		msg := diag.Summary
		if diag.Detail != "" {
			msg += "; " + diag.Detail
		}
		msg = strings.ReplaceAll(msg, "\n", " ")
		s := diag.Subject
		switch {
		case s == nil || s.Filename == "" && s.Start.Line == 0:
			fmt.Fprintf(bw, "%s: %s\n", sev, msg)
		case s.Start.Line == 0:
			fmt.Fprintf(bw, "%s: %s: %s\n", s.Filename, sev, msg)
		default:
			fmt.Fprintf(bw, "%s: %s: %s\n", pos(*s), sev, msg)
			if f := files[s.Filename]; f != nil {
				writeSnippet(bw, f.Bytes, *s)
			}
		}
	}
	return bw.Flush()
}

// writeSnippet writes the source line where r starts and carets under r
// (to the end of that line when r spans several).
func writeSnippet(w io.Writer, src []byte, r hcl.Range) {
	if r.Start.Byte > len(src) {
		return
	}
	lineStart := bytes.LastIndexByte(src[:r.Start.Byte], '\n') + 1
	lineEnd := len(src)
	if i := bytes.IndexByte(src[lineStart:], '\n'); i >= 0 {
		lineEnd = lineStart + i
	}
	line := strings.TrimRight(string(src[lineStart:lineEnd]), "\r")
	if strings.TrimSpace(line) == "" {
		return
	}
	end := min(max(r.End.Byte, r.Start.Byte+1), lineStart+len(line))
	// Keep tabs so the carets line up with the source however wide a tab is.
	var pad strings.Builder
	for _, c := range line[:min(r.Start.Byte-lineStart, len(line))] {
		if c == '\t' {
			pad.WriteByte('\t')
		} else {
			pad.WriteByte(' ')
		}
	}
	n := max(1, utf8.RuneCount(src[r.Start.Byte:max(end, r.Start.Byte)]))
	fmt.Fprintf(w, "    %s\n    %s%s\n", line, pad.String(), strings.Repeat("^", n))
}

// DiagnosticsError is an error made of diagnostics, for a caller that can
// report them at their positions (FormatDiagnostics with the config's
// files) rather than as one line.
type DiagnosticsError struct {
	Diags hcl.Diagnostics
}

func (e *DiagnosticsError) Error() string {
	var b strings.Builder
	_ = FormatDiagnostics(&b, nil, e.Diags)
	return strings.TrimSpace(b.String())
}
