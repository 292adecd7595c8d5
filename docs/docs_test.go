package docs_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/format"
	"go/importer"
	"go/parser"
	"go/scanner"
	"go/token"
	"go/types"
	"io"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/eventstream-go/eventstream"
	"github.com/eventstream-go/eventstream/adapters/memory"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// documents are the Markdown files whose Go snippets must compile.
var documents = []string{"distributed_usage.md"}

// knownPackages maps the package names snippets may use to import paths.
// A snippet is compiled with an import for every one of these names it
// uses as a qualifier, so fragments do not need import lines.
var knownPackages = map[string]string{
	"context":     "context",
	"tls":         "crypto/tls",
	"errors":      "errors",
	"fmt":         "fmt",
	"io":          "io",
	"json":        "encoding/json",
	"log":         "log",
	"os":          "os",
	"slog":        "log/slog",
	"strings":     "strings",
	"sync":        "sync",
	"testing":     "testing",
	"time":        "time",
	"goleak":      "go.uber.org/goleak",
	"eventstream": "github.com/eventstream-go/eventstream",
	"adaptertest": "github.com/eventstream-go/eventstream/adaptertest",
	"kafka":       "github.com/eventstream-go/eventstream/adapters/kafka",
	"memory":      "github.com/eventstream-go/eventstream/adapters/memory",
	"rabbitmq":    "github.com/eventstream-go/eventstream/adapters/rabbitmq",
	"nats":        "github.com/eventstream-go/eventstream/adapters/nats",
	"natstest":    "github.com/eventstream-go/eventstream/adapters/nats/natstest",
	"redis":       "github.com/eventstream-go/eventstream/adapters/redis",
	"inhouse":     "github.com/eventstream-go/eventstream/examples/custom_adapter/inhouse",
}

// helpers are package-level declarations that fragments use without
// declaring them: the reader's own adapter, serializer and payload types, a
// bus, the context and event of a handler, the Kafka adapter of step 1. A snippet that declares one of
// these names itself gets its own declaration instead.
var helpers = []struct{ name, src string }{
	{"myAdapter", "var myAdapter eventstream.MQAdapter"},
	{"kAdapter", "var kAdapter eventstream.MQAdapter"}, // from the step before
	{"rAdapter", "var rAdapter eventstream.MQAdapter"}, // the RabbitMQ adapter of its step 1
	{"nAdapter", "var nAdapter eventstream.MQAdapter"}, // the NATS adapter of its step 1
	{"mySerializer", "var mySerializer eventstream.Serializer"},
	{"payload", "var payload any"},
	{"bus", "var bus eventstream.Bus"},
	{"ctx", "var ctx context.Context"},
	{"e", "var e *eventstream.Event"},
	{"MyStruct", "type MyStruct struct{ ID string }"},
	{"MyPayload", "type MyPayload struct{ ID string }"},
	{"OrderCreated", "type OrderCreated struct {\n\tOrderID string `json:\"order_id\"`\n\tAmount  int    `json:\"amount\"`\n}"},
}

// helpersFile returns the helpers that file f does not declare itself.
func helpersFile(f *ast.File) string {
	declared := map[string]bool{}
	if f != nil {
		for _, d := range f.Decls {
			switch d := d.(type) {
			case *ast.GenDecl:
				for _, sp := range d.Specs {
					switch sp := sp.(type) {
					case *ast.TypeSpec:
						declared[sp.Name.Name] = true
					case *ast.ValueSpec:
						for _, n := range sp.Names {
							declared[n.Name] = true
						}
					}
				}
			case *ast.FuncDecl:
				if d.Recv == nil {
					declared[d.Name.Name] = true
				}
			}
		}
	}
	var b strings.Builder
	b.WriteString("package snippet\n\nimport (\n\t\"context\"\n\n\t\"github.com/eventstream-go/eventstream\"\n)\n\n")
	b.WriteString("var (\n\t_ = context.Background\n\t_ = eventstream.New\n)\n")
	for _, h := range helpers {
		if !declared[h.name] {
			b.WriteString("\n" + h.src + "\n")
		}
	}
	return b.String()
}

// snippet is one ```go block of a document.
type snippet struct {
	doc  string // file name
	line int    // line of the first code line
	code string
}

func (s snippet) String() string { return fmt.Sprintf("%s:%d", s.doc, s.line) }

// extract returns the fenced blocks of md whose info string is lang.
func extract(doc, md, lang string) []snippet {
	var out []snippet
	lines := strings.Split(md, "\n")
	for i := 0; i < len(lines); i++ {
		open := strings.TrimSpace(lines[i])
		if !strings.HasPrefix(open, "```") {
			continue
		}
		indent := lines[i][:strings.Index(lines[i], "```")]
		info := strings.TrimSpace(strings.TrimPrefix(open, "```"))
		var body []string
		j := i + 1
		for ; j < len(lines) && strings.TrimSpace(lines[j]) != "```"; j++ {
			body = append(body, strings.TrimPrefix(lines[j], indent))
		}
		if info == lang {
			out = append(out, snippet{doc: doc, line: i + 2, code: strings.Join(body, "\n") + "\n"})
		}
		i = j
	}
	return out
}

func readDoc(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// kind tells how a snippet is compiled.
type kind int

const (
	fullFile kind = iota // has a package clause: compiled alone, as is
	topLevel             // declarations: compiled with the helpers
	fragment             // statements: the body of a function, with the helpers
)

func classify(code string) kind {
	fset := token.NewFileSet()
	if f, err := parser.ParseFile(fset, "", code, parser.PackageClauseOnly); err == nil && f.Name != nil {
		return fullFile
	}
	if _, err := parser.ParseFile(fset, "", "package p\n"+code, parser.SkipObjectResolution); err == nil {
		return topLevel
	}
	return fragment
}

// qualifiers returns the import paths of the known package names that src
// uses as qualifiers.
func qualifiers(t *testing.T, s snippet, src string) []string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), s.String(), src, parser.SkipObjectResolution)
	if err != nil {
		t.Fatalf("%s: %v", s, err)
	}
	seen := map[string]bool{}
	ast.Inspect(f, func(n ast.Node) bool {
		if sel, ok := n.(*ast.SelectorExpr); ok {
			if id, ok := sel.X.(*ast.Ident); ok && knownPackages[id.Name] != "" {
				seen[knownPackages[id.Name]] = true
			}
		}
		return true
	})
	var paths []string
	for p := range seen {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	return paths
}

// generate returns the Go file a snippet is compiled as. Line directives map
// positions back to the document, so errors name the Markdown line.
func generate(t *testing.T, s snippet) (src string, k kind) {
	t.Helper()
	directive := fmt.Sprintf("//line %s:%d\n", s.doc, s.line)
	k = classify(s.code)
	if k == fullFile {
		return directive + s.code, k
	}
	body := s.code
	if k == fragment {
		body = "func _() error {\n" + directive + s.code + "\treturn nil\n}\n"
		directive = ""
	}
	var b strings.Builder
	b.WriteString("package snippet\n\n")
	for _, p := range qualifiers(t, s, "package p\n"+body) {
		fmt.Fprintf(&b, "import %q\n", p)
	}
	b.WriteString("\n" + directive + body)
	return b.String(), k
}

// exportData builds the packages that paths need and returns an importer
// that reads their compiled export data, the way the compiler does. It uses
// the go command of the test, the module of the repository and the build
// cache; nothing is written into the source tree.
func exportData(t *testing.T, fset *token.FileSet, paths []string) types.Importer {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{"list", "-export", "-deps", "-json=ImportPath,Export,Error"}, paths...)
	cmd := exec.Command("go", args...)
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	exports := map[string]string{}
	for dec := json.NewDecoder(bytes.NewReader(out)); dec.More(); {
		var p struct {
			ImportPath, Export string
			Error              *struct{ Err string }
		}
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		if p.Error != nil {
			t.Fatalf("package %s: %s", p.ImportPath, p.Error.Err)
		}
		exports[p.ImportPath] = p.Export
	}
	return importer.ForCompiler(fset, "gc", func(path string) (io.ReadCloser, error) {
		file := exports[path]
		if file == "" {
			return nil, fmt.Errorf("no export data for %q (not in the go list output)", path)
		}
		return os.Open(file)
	})
}

// check type-checks snippets against the real packages and returns one
// message per compile error, with Markdown positions.
//
// A snippet made of declarations may also restate declarations of package
// eventstream (the MQAdapter section shows the interfaces): a type it
// declares with the name of an eventstream type must be the same type, so
// the restatement cannot drift either. (Complete files, with a package
// clause, are exempt: an adapter has its own Message type.)
func check(t *testing.T, snippets []snippet) []string {
	t.Helper()
	type unit struct {
		s     snippet
		k     kind
		files map[string]string // name -> source
	}
	var units []unit
	need := map[string]bool{"context": true, knownPackages["eventstream"]: true}
	for _, s := range snippets {
		src, k := generate(t, s)
		u := unit{s: s, k: k, files: map[string]string{"snippet.go": src}}
		f, err := parser.ParseFile(token.NewFileSet(), "", src, parser.SkipObjectResolution)
		if k != fullFile {
			u.files["helpers.go"] = helpersFile(f)
		}
		units = append(units, u)
		if err != nil {
			continue // reported below
		}
		for _, imp := range f.Imports {
			need[strings.Trim(imp.Path.Value, `"`)] = true
		}
	}
	fset := token.NewFileSet()
	imp := exportData(t, fset, slices.Sorted(maps.Keys(need)))
	es, err := imp.Import(knownPackages["eventstream"])
	if err != nil {
		t.Fatal(err)
	}

	var problems []string
	for _, u := range units {
		var files []*ast.File
		for _, name := range slices.Sorted(maps.Keys(u.files)) {
			f, err := parser.ParseFile(fset, name, u.files[name], parser.ParseComments)
			if err != nil {
				problems = append(problems, fmt.Sprintf("%s: does not parse: %v", u.s, err))
				files = nil
				break
			}
			files = append(files, f)
		}
		if files == nil {
			continue
		}
		conf := types.Config{
			Importer:  imp,
			GoVersion: "go1.26",
			Error: func(err error) {
				te, ok := err.(types.Error)
				// A fragment may declare things it does not use (a snippet
				// shows how to get a value, not what to do with it).
				if ok && te.Soft && u.k == fragment && strings.Contains(te.Msg, "declared and not used") {
					return
				}
				problems = append(problems, fmt.Sprintf("%s (snippet at %s)", err, u.s))
			},
		}
		pkg, _ := conf.Check("snippet", fset, files, nil)
		if pkg == nil || u.k != topLevel {
			continue
		}
		for _, name := range pkg.Scope().Names() {
			mine, ok := pkg.Scope().Lookup(name).(*types.TypeName)
			if !ok || fset.Position(mine.Pos()).Filename != u.s.doc {
				continue // a helper
			}
			theirs, ok := es.Scope().Lookup(name).(*types.TypeName)
			if !ok {
				continue
			}
			// Compare the spelled-out types, with both packages' own names
			// unqualified.
			qual := func(p *types.Package) string {
				if p == pkg || p == es {
					return ""
				}
				return p.Name()
			}
			a := types.TypeString(mine.Type().Underlying(), qual)
			b := types.TypeString(theirs.Type().Underlying(), qual)
			if a != b {
				problems = append(problems, fmt.Sprintf("%s: type %s differs from eventstream.%s:\n  doc:  %s\n  code: %s",
					fset.Position(mine.Pos()), name, name, a, b))
			}
		}
	}
	return problems
}

// TestGoSnippetsCompile type-checks every ```go block of the documents
// against the packages of this module: a snippet that no longer compiles
// fails the test with the Markdown line of the error.
func TestGoSnippetsCompile(t *testing.T) {
	var all []snippet
	for _, doc := range documents {
		s := extract(doc, readDoc(t, doc), "go")
		if len(s) == 0 {
			t.Errorf("%s has no go snippets", doc)
		}
		all = append(all, s...)
	}
	for _, p := range check(t, all) {
		t.Error(p)
	}
}

// TestCheckCatchesErrors makes sure the checker is not vacuous: a snippet
// calling a method that does not exist, or with a type error, must fail.
func TestCheckCatchesErrors(t *testing.T) {
	bad := []snippet{
		{doc: "bad.md", line: 10, code: "cfg := eventstream.DefaultDistributedConfig()\ncfg.Distributed.Adapter = myAdapter\n"},
		{doc: "bad.md", line: 20, code: "sub, err := bus.On(\"t\", func(ctx context.Context, e *eventstream.Event) {})\n_ = sub\nreturn err\n"},
		{doc: "bad.md", line: 30, code: "package main\n\nfunc main() { undefinedThing() }\n"},
		{doc: "bad.md", line: 40, code: "type A struct{}\n\nfunc (A) Publish(ctx context.Context, topic string, message []byte) error { return nil }\n\nvar _ eventstream.MQAdapter = A{}\n"},
	}
	problems := check(t, bad)
	for _, want := range []string{"bad.md:11:", "bad.md:20:", "bad.md:32:", "bad.md:44:"} {
		found := false
		for _, p := range problems {
			found = found || strings.HasPrefix(p, want)
		}
		if !found {
			t.Errorf("no error reported at %s; got %q", want, problems)
		}
	}
	good := []snippet{{doc: "good.md", line: 1, code: "cfg := eventstream.DefaultDistributedConfig()\nunused := 1\n"}}
	if p := check(t, good); len(p) > 0 {
		t.Errorf("a fragment with an unused variable must compile; got %q", p)
	}
}

// TestGoSnippetsFormatted requires every Go snippet to be gofmt-formatted,
// so readers can paste them as they are.
func TestGoSnippetsFormatted(t *testing.T) {
	for _, doc := range documents {
		for _, s := range extract(doc, readDoc(t, doc), "go") {
			got, err := format.Source([]byte(s.code))
			if err != nil {
				t.Errorf("%s: %v", s, err)
				continue
			}
			if !bytes.Equal(got, []byte(s.code)) {
				t.Errorf("%s is not gofmt-formatted; want:\n%s", s, got)
			}
		}
	}
}

// TestDocumentedCalls keeps the calls the guide promises to its readers
// spelled exactly so (the snippets compile, so the calls are real).
func TestDocumentedCalls(t *testing.T) {
	md := readDoc(t, "distributed_usage.md")
	var code strings.Builder
	for _, s := range extract("distributed_usage.md", md, "go") {
		code.WriteString(s.code)
	}
	for _, want := range []string{
		"cfg := eventstream.DefaultDistributedConfig()",
		"cfg.Distributed.MQAdapter = myAdapter",
		"cfg.Distributed.Serializer = mySerializer",
		"bus, err := eventstream.New(cfg)",
		`bus.On(`,
		`"topic.name",`,
		"func(ctx context.Context, e *eventstream.Event) error {",
		`eventstream.WithConsumerGroup("group-1"),`,
		"eventstream.WithConcurrency(4),",
		"eventstream.WithRetryPolicy(&eventstream.RetryPolicy{",
		"BackoffStrategy: eventstream.BackoffExponential,",
		"InitialDelay:    100 * time.Millisecond,",
		"MaxDelay:        2 * time.Second,",
		"Multiplier:      2.0,",
		"defer bus.Off(sub)",
		`bus.Emit(context.Background(), "topic.name", payload)`,
		`kafka.NewAdapter(kafka.Config{Brokers: []string{"localhost:9092"}})`,
		"e.Unmarshal(&",
		"adaptertest.Run(",
	} {
		if !strings.Contains(code.String(), want) {
			t.Errorf("the go snippets of distributed_usage.md lack %q", want)
		}
	}
}

// TestEnvelopeExample checks that the CloudEvent shown in the guide is what
// the bus reads: it is published as raw bytes and must reach a handler
// with the attributes and payload the guide shows.
func TestEnvelopeExample(t *testing.T) {
	var envelope string
	for _, s := range extract("distributed_usage.md", readDoc(t, "distributed_usage.md"), "json") {
		if strings.Contains(s.code, `"specversion"`) && !strings.Contains(s.code, `"eventstream.deadletter"`) {
			envelope = s.code
			break
		}
	}
	if envelope == "" {
		t.Fatal("distributed_usage.md shows no CloudEvent envelope in a json block")
	}
	var attrs map[string]any
	if err := json.Unmarshal([]byte(envelope), &attrs); err != nil {
		t.Fatalf("the envelope example is not JSON: %v", err)
	}

	ad, err := memory.New(memory.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer ad.Close()
	cfg := eventstream.DefaultDistributedConfig()
	cfg.Distributed.MQAdapter = ad
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	failed := make(chan error, 1)
	cfg.OnFailure = func(_ context.Context, f *eventstream.Failure) { failed <- f.Err }
	bus, err := eventstream.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer bus.Close()
	got := make(chan *eventstream.Event, 1)
	if _, err := bus.On("docs.envelope", func(_ context.Context, e *eventstream.Event) error {
		got <- e
		return nil
	}, eventstream.WithConsumerGroup("docs")); err != nil {
		t.Fatal(err)
	}
	if err := ad.Publish(context.Background(), "docs.envelope", []byte(envelope)); err != nil {
		t.Fatal(err)
	}
	select {
	case e := <-got:
		if e.ID != attrs["id"] || e.Source != attrs["source"] || e.Type != attrs["type"] || e.ContentType != attrs["datacontenttype"] {
			t.Errorf("decoded %+v, which does not match the envelope's attributes %v", e, attrs)
		}
		if k, ok := attrs["partitionkey"]; ok && e.Key != k {
			t.Errorf("Key %q, want partitionkey %q", e.Key, k)
		}
		var data, want any
		if err := e.Unmarshal(&data); err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(attrs["data"])
		_ = json.Unmarshal(b, &want)
		if fmt.Sprint(data) != fmt.Sprint(want) {
			t.Errorf("payload %v, want %v", data, want)
		}
	case err := <-failed:
		t.Fatalf("the bus could not read the envelope example: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("the envelope example was not delivered within 10s")
	}
}

// TestCustomAdapterSnippet keeps the adapter shown in the guide identical,
// token for token (comments aside, since the guide's are in Chinese), to
// examples/custom_adapter/inhouse, whose own test runs adaptertest.Run on
// it. So the guide's adapter is not only compiling but contract-checked.
func TestCustomAdapterSnippet(t *testing.T) {
	const file = "../examples/custom_adapter/inhouse/inhouse.go"
	var shown *snippet
	for _, s := range extract("distributed_usage.md", readDoc(t, "distributed_usage.md"), "go") {
		f, err := parser.ParseFile(token.NewFileSet(), "", s.code, parser.PackageClauseOnly)
		if err == nil && f.Name.Name == "inhouse" {
			shown = &s
			break
		}
	}
	if shown == nil {
		t.Fatal("distributed_usage.md does not show package inhouse")
	}
	src, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	doc, code := tokens(t, shown.code), tokens(t, string(src))
	for i := range max(len(doc), len(code)) {
		switch {
		case i >= len(doc):
			t.Fatalf("%s ends before %s:%d (%q)", shown, file, code[i].line, code[i].text)
		case i >= len(code):
			t.Fatalf("%s:%d: %q is not in %s, which ends before", shown.doc, shown.line+doc[i].line-1, doc[i].text, file)
		case doc[i].text != code[i].text:
			t.Fatalf("%s:%d: %q differs from %s:%d: %q", shown.doc, shown.line+doc[i].line-1, doc[i].text, file, code[i].line, code[i].text)
		}
	}
}

type tok struct {
	line int
	text string
}

// tokens returns the Go tokens of src without comments; automatic and
// explicit semicolons are the same token.
func tokens(t *testing.T, src string) []tok {
	t.Helper()
	fset := token.NewFileSet()
	f := fset.AddFile("", -1, len(src))
	var sc scanner.Scanner
	var errs []string
	sc.Init(f, []byte(src), func(pos token.Position, msg string) { errs = append(errs, fmt.Sprint(pos, msg)) }, 0)
	var out []tok
	for {
		pos, tk, lit := sc.Scan()
		if tk == token.EOF {
			break
		}
		text := tk.String()
		if lit != "" && tk != token.SEMICOLON {
			text = lit
		}
		out = append(out, tok{line: fset.Position(pos).Line, text: text})
	}
	if len(errs) > 0 {
		t.Fatalf("scanning: %v", errs)
	}
	return out
}

// TestReferencedExamplesExist checks that every "go run ./examples/NAME"
// of the guide names a directory with a main package.
func TestReferencedExamplesExist(t *testing.T) {
	md := readDoc(t, "distributed_usage.md")
	seen := 0
	for rest := md; ; {
		i := strings.Index(rest, "go run ./examples/")
		if i < 0 {
			break
		}
		rest = rest[i+len("go run ./examples/"):]
		name := rest[:strings.IndexFunc(rest, func(r rune) bool {
			return !(r == '_' || r == '-' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9')
		})]
		seen++
		dir := filepath.Join("..", "examples", name)
		f, err := parser.ParseFile(token.NewFileSet(), filepath.Join(dir, "main.go"), nil, parser.PackageClauseOnly)
		if err != nil || f.Name.Name != "main" {
			t.Errorf("the guide runs ./examples/%s, but %s has no main package (%v)", name, dir, err)
		}
	}
	if seen == 0 {
		t.Error("the guide references no example")
	}
}
