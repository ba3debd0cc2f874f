package yamlnode

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// Error is one problem found in an input file, in the one format both of
// Horizon's YAML inputs (the ClusterSet file and the policy file) report:
//
//	file:line:col: path: message
//
// where path names the value at fault, like
// clusters[east-1].services[demo/echo].endpoints[10.0.0.1].address or
// services[demo/echo].locality.failover[us-east].to[1].
type Error struct {
	File string
	Line int
	Col  int
	Path string
	Msg  string
}

func (e *Error) Error() string {
	s := e.File + ":" + strconv.Itoa(e.Line) + ":" + strconv.Itoa(e.Col) + ": "
	if e.Path != "" {
		s += e.Path + ": "
	}
	return s + e.Msg
}

// Join extends a path with a field name.
func Join(path, field string) string {
	field = segment(field)
	if path == "" {
		return field
	}
	return path + "." + field
}

// Index extends a path with a list index or a key: clusters[east-1], to[1],
// weights[east-1].
func Index(path string, i any) string { return path + "[" + segment(fmt.Sprint(i)) + "]" }

// segment is a name as a path shows it: quoted when it holds a character
// that is not printable (a newline in a name would split an error line in
// two, the second one naming no file).
func segment(s string) string {
	if strings.IndexFunc(s, func(r rune) bool { return !strconv.IsPrint(r) }) >= 0 {
		return strconv.Quote(s)
	}
	return s
}

// Errors collects the problems of one file: a Reader's Report, warnings, and
// the YAML parser's own errors. The zero value with File set is ready.
type Errors struct {
	File     string
	List     []*Error
	Warnings []*Error

	// endLine and endCol are where the input ends (set by
	// Parser.Document; zero: not known). yaml.v3 places an implicit null
	// (a lone "?" key, "key:" at the end) after the text that implies it,
	// which may be a line past the input's last: such a position is
	// reported at the end of the input, never at a line the file lacks.
	endLine, endCol int
}

// at is line:col, moved to the end of the input when it lies beyond it.
func (c *Errors) at(line, col int) (int, int) {
	if c.endLine > 0 && (line > c.endLine || line == c.endLine && col > c.endCol) {
		return c.endLine, c.endCol
	}
	return line, col
}

// newError is an error at line:col of c's file (see at).
func (c *Errors) newError(line, col int, path, msg string) *Error {
	line, col = c.at(line, col)
	return &Error{File: c.File, Line: line, Col: col, Path: path, Msg: msg}
}

// inputEnd is the line and column just past the last character of data, as
// yaml.v3 counts them: lines end at "\r\n", "\r", "\n", NEL, LS and PS;
// columns count runes from 1.
func inputEnd(data []byte) (line, col int) {
	line, col = 1, 1
	s := string(data)
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		i += size
		switch r {
		case '\r':
			if i < len(s) && s[i] == '\n' {
				i++
			}
			fallthrough
		case '\n', '\u0085', '\u2028', '\u2029':
			line, col = line+1, 1
		default:
			col++
		}
	}
	return line, col
}

// Collect turns a Reader's problem into an Error at the path of the value at
// fault: a field extends the path (defaults.retries), a key of a free-form
// mapping indexes it (weights[east-1]), an unknown or repeated field name
// extends it.
func (c *Errors) Collect(pr Problem) {
	path := pr.Where
	if pr.Field != "" {
		path = Join(path, pr.Field)
	}
	if pr.Key != nil {
		if pr.Field == "" {
			path = Join(path, pr.Key.Value)
		} else {
			path = Index(path, pr.Key.Value)
		}
	}
	c.List = append(c.List, c.newError(pr.Line, pr.Col, path, pr.Msg))
}

// Add records an error at n.
func (c *Errors) Add(n *yaml.Node, path, format string, args ...any) {
	c.List = append(c.List, c.newError(n.Line, n.Column, path, fmt.Sprintf(format, args...)))
}

// Warnf records a warning at n: something worth knowing that does not
// reject the file.
func (c *Errors) Warnf(n *yaml.Node, path, format string, args ...any) {
	c.Warnings = append(c.Warnings, c.newError(n.Line, n.Column, path, fmt.Sprintf(format, args...)))
}

// Syntax records an error of the YAML parser, at its line (it gives no
// column).
func (c *Errors) Syntax(data []byte, err error) {
	line, msg := SyntaxError(data, err)
	c.List = append(c.List, c.newError(line, 1, "", msg))
}

// MaxErrors is how many errors Err lists: a file wrong throughout (the
// wrong file, a generator gone astray) would otherwise make an error, and a
// log line, as large as itself.
const MaxErrors = 100

// Err returns the errors found, sorted by position, joined with errors.Join
// (errors.As finds the first), or nil. Past MaxErrors, one last error, at
// the first one left out, says how many more there are.
func (c *Errors) Err() error {
	var errs []error
	sorted := Sorted(c.List)
	for i, e := range sorted {
		if i == MaxErrors {
			errs = append(errs, &Error{File: e.File, Line: e.Line, Col: e.Col,
				Msg: fmt.Sprintf("%d more errors from here on, not listed", len(sorted)-MaxErrors)})
			break
		}
		errs = append(errs, e)
	}
	return errors.Join(errs...)
}

// Sorted sorts errors by position (then in the order found) and drops
// repeats: a YAML alias used twice, or a contradiction inherited by several
// rules.
func Sorted(errs []*Error) []*Error {
	slices.SortStableFunc(errs, func(a, b *Error) int { return cmp.Or(cmp.Compare(a.Line, b.Line), cmp.Compare(a.Col, b.Col)) })
	seen := map[Error]bool{}
	out := errs[:0]
	for _, e := range errs {
		if !seen[*e] {
			seen[*e] = true
			out = append(out, e)
		}
	}
	return out
}

// TooLarge is the error of a file of more than max bytes, a what file (a
// ClusterSet, a policy): "file:1:1: size > max bytes: ...". It is reported
// at the start of the file, as nothing of it was parsed.
func TooLarge(file, what string, max int) *Error {
	limit := strconv.Itoa(max) + " bytes"
	if max%(1<<20) == 0 {
		limit = strconv.Itoa(max>>20) + " MiB"
	}
	return &Error{File: file, Line: 1, Col: 1,
		Msg: fmt.Sprintf("size > %d bytes: a %s file holds at most %s", max, what, limit)}
}

// ReadFile reads the file at path, a what file of at most max bytes. It
// reads no more than max+1 bytes, whatever the file's size (a file that
// grows while it is read, /dev/zero): a larger file is TooLarge.
func ReadFile(path, what string, max int) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readAtMost(f, path, what, max)
}

func readAtMost(r io.Reader, file, what string, max int) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, int64(max)+1))
	if err != nil {
		return nil, err
	}
	if len(data) > max {
		return nil, TooLarge(file, what, max)
	}
	return data, nil
}

// Parser is a Reader whose problems are collected as the Errors of one
// file: what the parser of each input format embeds. Init it in place.
type Parser struct {
	Reader
	Errors
	maxSize int
}

// Init readies p for the named file of at most maxSize bytes (Document),
// whose walk visits at most maxSize/2 + 10,000 nodes (Reader.Root);
// listKnown is Reader.ListKnown.
func (p *Parser) Init(file string, listKnown bool, maxSize int) {
	p.File, p.ListKnown, p.maxSize = file, listKnown, maxSize
	p.maxBudget = maxSize / 2
	p.Report = p.Collect
}

// Document reads data as one YAML document holding one what (a ClusterSet,
// a policy) and returns its root, or nil after reporting why it cannot: data
// larger than Init's maxSize (TooLarge, before any parsing), an empty file
// or document ("empty file: want "+want), a syntax error, or a second
// document (an empty one after a trailing "---" is fine).
func (p *Parser) Document(data []byte, what, want string) *yaml.Node {
	if len(data) > p.maxSize {
		p.List = append(p.List, TooLarge(p.File, what, p.maxSize))
		return nil
	}
	p.endLine, p.endCol = inputEnd(data)
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			p.List = append(p.List, &Error{File: p.File, Line: 1, Col: 1, Msg: "empty file: want " + want})
		} else {
			p.Syntax(data, err)
		}
		return nil
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case errors.Is(err, io.EOF):
	case err != nil:
		p.Syntax(data, err)
		return nil
	case len(next.Content) == 1 && IsNull(next.Content[0]) && next.Content[0].Value == "":
		// An empty document after a trailing "---".
	default:
		p.Errorf(&next, "", "a second YAML document: the file holds one %s", what)
	}
	root := p.Root(&doc)
	if IsNull(root) {
		at := root
		if root.Value == "" {
			// An implicit null ("---" alone) is placed after the marker,
			// which may be past the end of the input: name the document's start.
			at = &doc
		}
		p.Errorf(at, "", "empty document: want %s", want)
		return nil
	}
	return root
}
