package api

import (
	"maps"
	"strings"
	"unicode/utf8"

	"github.com/graph-gophers/graphql-go/ast"
	gqlerrors "github.com/graph-gophers/graphql-go/errors"
)

// This file coerces the variables of a request as the GraphQL spec does
// (CoerceVariableValues, and the variable half of CoerceArgumentValues)
// before graphql-go runs the operation, for POST /graphql and the socket
// alike. graphql-go v1.11.0 leaves two gaps:
//
//   - Exec fills in the default of a declared variable not sent; Subscribe,
//     which also answers queries over the socket, does not.
//   - A variable not sent reaches its argument as null, never as absent
//     (ast.Variable.Deserialize reads a missing map key), so the argument's
//     schema default never applies: an argument with a default is packed as
//     non-null, where null is an error ("got null for non-null") or, for a
//     graphql.NullInt, a null the resolver cannot tell from one sent.
//
// graphql-go's parser is internal, so coerceVariables reads the document
// with a small lexer of its own, and resolves argument and input field
// definitions in the schema's public AST. It changes only the variables:
// graphql-go still parses, validates and runs the document as it came, so
// there is one way to execute a query and graphql-go's errors (syntax,
// validation, the operation to choose) are the ones answered. A document
// this file cannot read is handed over untouched, for graphql-go to reject.

// coerceVariables returns the variables to run query's operation (the one
// operationName chooses) with: vars, plus the default of each variable the
// operation declares with one and vars lacks; plus, for each variable
// declared without a default, nullable and not sent, the schema default of
// the arguments and input fields it is passed to, which is what they take
// when left unset. An explicit null stays null. vars is not changed: a new
// map is returned when something is filled in.
//
// A variable not sent and passed where the schema's defaults differ (or
// where one position has a default and another none) cannot be given one
// value that leaves each unset; that is a GraphQL error naming the
// variable, with code BAD_USER_INPUT.
//
// A query without "$" declares no variable and costs one byte scan.
func coerceVariables(schema *ast.Schema, query, operationName string, vars map[string]any) (map[string]any, *gqlerrors.QueryError) {
	if len(query) > MaxQueryLength || strings.IndexByte(query, '$') < 0 {
		return vars, nil
	}
	// Room for the usual few definitions, so that reading them does not
	// allocate.
	var opsBuf [4]opDef
	var fragsBuf [4]fragDef
	ops, frags, ok := scanDocument(query, opsBuf[:0], fragsBuf[:0])
	if !ok {
		return vars, nil
	}
	d := document{text: query, ops: ops, frags: frags}
	op := d.operation(operationName)
	if op == nil || op.vars < 0 {
		return vars, nil // graphql-go answers "no operation with name" and the like
	}
	var defsBuf [8]varDef
	defs, ok := parseVarDefs(query, op.vars, defsBuf[:0])
	if !ok {
		return vars, nil
	}

	var out map[string]any
	set := func(name string, v any) {
		if out == nil {
			out = make(map[string]any, len(vars)+len(defs))
			maps.Copy(out, vars)
		}
		out[name] = v
	}
	var unsetBuf [8]unsetVar
	unset := unsetBuf[:0]
	for i := range defs {
		v := &defs[i]
		if _, sent := vars[v.name]; sent {
			continue
		}
		switch {
		case v.def >= 0:
			l := lexer{src: query, pos: v.def}
			l.next()
			val, ok := constValue(&l, 0)
			if !ok {
				return vars, nil // graphql-go rejects the literal
			}
			l = lexer{src: query, pos: v.typ}
			l.next()
			// graphql-go validates the variables it is given: a default
			// it would refuse there is left to the check of the literal,
			// which says it better, and once.
			if t, ok := typeRef(&l, schema, 0); ok && accepts(t, val) {
				set(v.name, val)
			}
		case !v.nonNull:
			unset = append(unset, unsetVar{name: v.name, at: v.at})
			// A non-null variable not sent is graphql-go's error to answer.
		}
	}
	if len(unset) > 0 {
		w := walker{schema: schema, doc: &d, unset: unset}
		l := lexer{src: query, pos: op.sel}
		l.next()
		if !w.selectionSet(&l, schema.RootOperationTypes[op.kind]) {
			return vars, nil
		}
		for i := range unset {
			u := &unset[i]
			switch {
			case u.conflict:
				return nil, u.conflictError(query)
			case u.state == withDefault:
				// What graphql-go itself packs for an argument left out.
				set(u.name, u.def.Default.Deserialize(nil))
			}
		}
	}
	if out == nil {
		return vars, nil
	}
	return out, nil
}

// maxNesting bounds the nesting of selection sets, lists and objects read,
// so that a hostile document cannot exhaust the stack; graphql-go's own
// parser stops at 1000 too.
const maxNesting = 1000

// document is where the definitions of a query document start.
type document struct {
	text  string
	ops   []opDef
	frags []fragDef
}

// opDef is an operation: its root type ("query", "mutation",
// "subscription"), its name, and the offsets of its variable definitions
// ('(', or -1 when it has none) and of its selection set ('{').
type opDef struct {
	kind, name string
	vars, sel  int
}

// fragDef is a fragment definition: its name, its type condition and the
// offset of its selection set.
type fragDef struct {
	name, on string
	sel      int
}

// scanDocument appends the definitions of src to ops and frags, skipping
// their contents. It returns false for a document it cannot read.
func scanDocument(src string, ops []opDef, frags []fragDef) ([]opDef, []fragDef, bool) {
	l := lexer{src: src}
	l.next()
	for l.kind != tokEOF {
		if l.kind == tokString || l.kind == tokBlockString {
			l.next() // a description
		}
		switch {
		case l.is('{'):
			ops = append(ops, opDef{kind: "query", vars: -1, sel: l.start})
			if !l.skipBalanced() {
				return nil, nil, false
			}
		case l.kind != tokName:
			return nil, nil, false
		case l.text() == "fragment":
			l.next()
			if l.kind != tokName {
				return nil, nil, false
			}
			f := fragDef{name: l.text()}
			if l.next(); l.kind != tokName || l.text() != "on" {
				return nil, nil, false
			}
			if l.next(); l.kind != tokName {
				return nil, nil, false
			}
			f.on = l.text()
			l.next()
			if !l.skipDirectives() || !l.is('{') {
				return nil, nil, false
			}
			f.sel = l.start
			if !l.skipBalanced() {
				return nil, nil, false
			}
			frags = append(frags, f)
		default:
			op := opDef{kind: l.text(), vars: -1}
			if op.kind != "query" && op.kind != "mutation" && op.kind != "subscription" {
				return nil, nil, false
			}
			if l.next(); l.kind == tokName {
				op.name = l.text()
				l.next()
			}
			if l.is('(') {
				op.vars = l.start
				if !l.skipBalanced() {
					return nil, nil, false
				}
			}
			if !l.skipDirectives() || !l.is('{') {
				return nil, nil, false
			}
			op.sel = l.start
			if !l.skipBalanced() {
				return nil, nil, false
			}
			ops = append(ops, op)
		}
	}
	return ops, frags, true
}

// operation returns the operation that name chooses, as graphql-go's
// getOperation does, or nil where graphql-go answers an error.
func (d *document) operation(name string) *opDef {
	if name == "" {
		if len(d.ops) != 1 {
			return nil
		}
		return &d.ops[0]
	}
	for i := range d.ops {
		if d.ops[i].name == name {
			return &d.ops[i]
		}
	}
	return nil
}

// operationKind returns the kind of the operation that operationName
// chooses in query ("query", "mutation" or "subscription"), or "" when the
// document cannot be read or names no such operation (graphql-go then says
// why).
func operationKind(query, operationName string) string {
	var opsBuf [4]opDef
	var fragsBuf [4]fragDef
	ops, frags, ok := scanDocument(query, opsBuf[:0], fragsBuf[:0])
	if !ok {
		return ""
	}
	d := document{text: query, ops: ops, frags: frags}
	if op := d.operation(operationName); op != nil {
		return op.kind
	}
	return ""
}

// varDef is one variable definition: its name, whether its type is
// non-null, and where its parts are.
type varDef struct {
	name         string
	nonNull      bool
	at, typ, def int // offsets of '$', of the type and of the default (-1: none)
}

// parseVarDefs reads the variable definitions at src[at] ('(') into out.
func parseVarDefs(src string, at int, out []varDef) ([]varDef, bool) {
	l := lexer{src: src, pos: at}
	l.next()
	l.next()
	for !l.is(')') {
		if l.kind == tokString || l.kind == tokBlockString {
			l.next() // a description
		}
		v := varDef{at: l.start, def: -1}
		if !l.is('$') {
			return nil, false
		}
		if l.next(); l.kind != tokName {
			return nil, false
		}
		v.name = l.text()
		if l.next(); !l.is(':') {
			return nil, false
		}
		l.next()
		v.typ = l.start
		nonNull, ok := l.skipType(0)
		if !ok {
			return nil, false
		}
		v.nonNull = nonNull
		if l.is('=') {
			l.next()
			v.def = l.start
			if !l.skipValue() {
				return nil, false
			}
		}
		if !l.skipDirectives() {
			return nil, false
		}
		out = append(out, v)
	}
	return out, true
}

// unsetVar is a variable declared without a default, nullable and not sent:
// what the positions it is passed to take when left unset.
type unsetVar struct {
	name string
	at   int // offset of its definition, for the error's location

	state    uint8                     // unseen, withoutDefault or withDefault
	def      *ast.InputValueDefinition // the first position's definition
	other    string                    // a position that disagrees with def
	conflict bool
}

// States of an unsetVar.
const (
	unseen uint8 = iota
	withoutDefault
	withDefault
)

// listItem is the position of a list item: a variable not sent is null
// there.
var listItem = &ast.InputValueDefinition{Name: ast.Ident{Name: "a list item"}}

// use records that u is passed where d is defined: an argument, an input
// field or a listItem; nil is what the schema does not define, which
// graphql-go rejects, and is not counted.
func (u *unsetVar) use(d *ast.InputValueDefinition) {
	if d == nil {
		return
	}
	state := withoutDefault
	if d != nil && d.Default != nil {
		state = withDefault
	}
	switch {
	case u.state == unseen:
		u.state, u.def = state, d
	case u.conflict:
	case u.state != state || state == withDefault && u.def != d && u.def.Default.String() != d.Default.String():
		u.conflict, u.other = true, positionName(d)
	}
}

func positionName(d *ast.InputValueDefinition) string {
	if d == listItem {
		return d.Name.Name
	}
	if d.Default == nil {
		return d.Name.Name + " (no default)"
	}
	return d.Name.Name + " (default " + d.Default.String() + ")"
}

// conflictError is the error of a variable that no single value leaves
// unset, in the words of graphql-go's validation.
func (u *unsetVar) conflictError(src string) *gqlerrors.QueryError {
	return &gqlerrors.QueryError{
		Message: "Variable \"$" + u.name + "\" is not provided and is passed to positions whose defaults differ: " +
			positionName(u.def) + " and " + u.other + ". Provide it, or declare it with a default.",
		Locations:  []gqlerrors.Location{location(src, u.at)},
		Rule:       "VariablesOfCorrectType",
		Extensions: map[string]any{"code": "BAD_USER_INPUT", "variable": u.name},
	}
}

// location turns an offset of src into graphql-go's line and column (in
// characters, from 1).
func location(src string, off int) gqlerrors.Location {
	line := 1 + strings.Count(src[:off], "\n")
	col := 1 + utf8.RuneCountInString(src[strings.LastIndexByte(src[:off], '\n')+1:off])
	return gqlerrors.Location{Line: line, Column: col}
}

// walker reads an operation's selection sets with the schema's types, to
// find where its unset variables are passed.
type walker struct {
	schema *ast.Schema
	doc    *document
	unset  []unsetVar
	walked []bool // the fragments read: each is read once, whatever its spreads
	depth  int
}

// selectionSet reads the selection set at l ('{') of type t (nil: unknown).
func (w *walker) selectionSet(l *lexer, t ast.NamedType) bool {
	if !l.is('{') || !w.descend() {
		return false
	}
	defer w.ascend()
	l.next()
	for !l.is('}') {
		switch {
		case l.is('.'):
			for range 3 {
				if !l.is('.') {
					return false
				}
				l.next()
			}
			if l.kind == tokName && l.text() != "on" {
				name := l.text()
				l.next()
				if !w.directives(l) || !w.fragment(name) {
					return false
				}
				continue
			}
			inner := t
			if l.kind == tokName { // on
				if l.next(); l.kind != tokName {
					return false
				}
				inner = w.schema.Types[l.text()]
				l.next()
			}
			if !w.directives(l) || !w.selectionSet(l, inner) {
				return false
			}
		case l.kind == tokName:
			name := l.text()
			if l.next(); l.is(':') { // an alias
				if l.next(); l.kind != tokName {
					return false
				}
				name = l.text()
				l.next()
			}
			var args ast.ArgumentsDefinition
			var ft ast.NamedType
			if f := fieldOf(t, name); f != nil {
				args, ft = f.Arguments, namedOf(f.Type)
			}
			if l.is('(') && !w.arguments(l, args) {
				return false
			}
			if !w.directives(l) {
				return false
			}
			if l.is('{') && !w.selectionSet(l, ft) {
				return false
			}
		default:
			return false
		}
	}
	l.next()
	return true
}

func (w *walker) descend() bool {
	w.depth++
	return w.depth <= maxNesting
}

func (w *walker) ascend() { w.depth-- }

// fragment reads the fragment name spreads, the first time only: its type
// condition, not where it is spread, gives the types inside it.
func (w *walker) fragment(name string) bool {
	for i := range w.doc.frags {
		f := &w.doc.frags[i]
		if f.name != name {
			continue
		}
		if w.walked == nil {
			w.walked = make([]bool, len(w.doc.frags))
		}
		if w.walked[i] {
			return true
		}
		w.walked[i] = true
		l := lexer{src: w.doc.text, pos: f.sel}
		l.next()
		return w.selectionSet(&l, w.schema.Types[f.on])
	}
	return true // an unknown fragment: graphql-go's error
}

// arguments reads the arguments at l ('('), defined by defs.
func (w *walker) arguments(l *lexer, defs ast.ArgumentsDefinition) bool {
	l.next()
	for !l.is(')') {
		if l.kind != tokName {
			return false
		}
		d := defs.Get(l.text())
		if l.next(); !l.is(':') {
			return false
		}
		l.next()
		var t ast.Type
		if d != nil {
			t = d.Type
		}
		if !w.value(l, t, d) || !w.directives(l) {
			return false
		}
	}
	l.next()
	return true
}

// directives reads the directives at l, if any.
func (w *walker) directives(l *lexer) bool {
	for l.is('@') {
		if l.next(); l.kind != tokName {
			return false
		}
		var defs ast.ArgumentsDefinition
		if dd := w.schema.Directives[l.text()]; dd != nil {
			defs = dd.Arguments
		}
		if l.next(); l.is('(') && !w.arguments(l, defs) {
			return false
		}
	}
	return true
}

// value reads the value at l, of type t, in the position d defines (nil:
// unknown to the schema).
func (w *walker) value(l *lexer, t ast.Type, d *ast.InputValueDefinition) bool {
	switch {
	case l.is('$'):
		if l.next(); l.kind != tokName {
			return false
		}
		for i := range w.unset {
			if w.unset[i].name == l.text() {
				w.unset[i].use(d)
			}
		}
		l.next()
		return true
	case l.is('['):
		if !w.descend() {
			return false
		}
		defer w.ascend()
		elem := t
		if nn, ok := elem.(*ast.NonNull); ok {
			elem = nn.OfType
		}
		if list, ok := elem.(*ast.List); ok {
			elem = list.OfType
		}
		item := listItem
		if t == nil {
			item = nil
		}
		l.next()
		for !l.is(']') {
			if !w.value(l, elem, item) {
				return false
			}
		}
		l.next()
		return true
	case l.is('{'):
		if !w.descend() {
			return false
		}
		defer w.ascend()
		io, _ := namedOf(t).(*ast.InputObject)
		l.next()
		for !l.is('}') {
			if l.kind != tokName {
				return false
			}
			var fd *ast.InputValueDefinition
			var ft ast.Type
			if io != nil {
				if fd = io.Values.Get(l.text()); fd != nil {
					ft = fd.Type
				}
			}
			if l.next(); !l.is(':') {
				return false
			}
			l.next()
			if !w.value(l, ft, fd) {
				return false
			}
		}
		l.next()
		return true
	default:
		return l.skipValue()
	}
}

// fieldOf returns the definition of field name of t, or nil.
func fieldOf(t ast.NamedType, name string) *ast.FieldDefinition {
	switch t := t.(type) {
	case *ast.ObjectTypeDefinition:
		return t.Fields.Get(name)
	case *ast.InterfaceTypeDefinition:
		return t.Fields.Get(name)
	}
	return nil
}

// namedOf unwraps the lists and non-nulls of t.
func namedOf(t ast.Type) ast.NamedType {
	for {
		switch tt := t.(type) {
		case *ast.NonNull:
			t = tt.OfType
		case *ast.List:
			t = tt.OfType
		case ast.NamedType:
			return tt
		default:
			return nil
		}
	}
}

// typeRef reads the type reference at l, resolved in schema.
func typeRef(l *lexer, schema *ast.Schema, depth int) (ast.Type, bool) {
	var t ast.Type
	switch {
	case depth > maxNesting:
		return nil, false
	case l.is('['):
		l.next()
		elem, ok := typeRef(l, schema, depth+1)
		if !ok || !l.is(']') {
			return nil, false
		}
		t = &ast.List{OfType: elem}
	case l.kind == tokName:
		if t = schema.Types[l.text()]; t == nil {
			return nil, false
		}
	default:
		return nil, false
	}
	if l.next(); l.is('!') {
		l.next()
		t = &ast.NonNull{OfType: t}
	}
	return t, true
}

// accepts reports whether graphql-go's validation of a variable's value
// (validateValue in its internal/validation) passes v for type t. Like it,
// it checks enums, input objects and nulls, not scalars.
func accepts(t ast.Type, v any) bool {
	switch t := t.(type) {
	case *ast.NonNull:
		return v != nil && accepts(t.OfType, v)
	case *ast.List:
		list, ok := v.([]any)
		if !ok {
			return v == nil || accepts(t.OfType, v)
		}
		for _, e := range list {
			if !accepts(t.OfType, e) {
				return false
			}
		}
		return true
	case *ast.EnumTypeDefinition:
		if v == nil {
			return true
		}
		name, ok := v.(string)
		if !ok {
			return false
		}
		for _, e := range t.EnumValuesDefinition {
			if e.EnumValue == name {
				return true
			}
		}
		return false
	case *ast.InputObject:
		if v == nil {
			return true
		}
		obj, ok := v.(map[string]any)
		if !ok {
			return false
		}
		for name := range obj {
			if t.Values.Get(name) == nil {
				return false
			}
		}
		if t.Directives.Get("oneOf") != nil {
			if len(obj) != 1 {
				return false
			}
			for _, fv := range obj {
				if fv == nil {
					return false
				}
			}
		}
		for _, f := range t.Values {
			if !accepts(f.Type, obj[f.Name.Name]) {
				return false
			}
		}
		return true
	}
	return true
}
