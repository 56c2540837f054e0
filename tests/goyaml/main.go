// Command goyaml reads YAML the way Argo CD reads a plugin's output, and the way yaml.v3 does,
// for tagpin's differential tests (tests/support/goyaml.py builds and drives it).
//
//	goyaml read       stdin: one JSON string (a YAML stream) per line;
//	                  stdout: one JSON object per line, {"argo": [...], "v3": [...]} plus
//	                  "argo_error" / "v3_error" when a reader refuses the stream.
//	goyaml cases FILE the `data` strings of go-yaml's unmarshalTests table in FILE
//	                  (decode_test.go), as one JSON list.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"time"

	yamlv3 "gopkg.in/yaml.v3"
	"sigs.k8s.io/yaml"
)

type result struct {
	Argo      []json.RawMessage `json:"argo"`
	ArgoError string            `json:"argo_error,omitempty"`
	V3        []interface{}     `json:"v3"`
	V3Error   string            `json:"v3_error,omitempty"`
}

func main() {
	if len(os.Args) == 3 && os.Args[1] == "cases" {
		cases(os.Args[2])
		return
	}
	if len(os.Args) != 2 || os.Args[1] != "read" {
		fmt.Fprintln(os.Stderr, "usage: goyaml read | goyaml cases decode_test.go")
		os.Exit(2)
	}
	in := bufio.NewReader(os.Stdin)
	out := bufio.NewWriter(os.Stdout)
	for {
		line, err := in.ReadBytes('\n')
		if len(bytes.TrimSpace(line)) > 0 {
			var text string
			if jerr := json.Unmarshal(line, &text); jerr != nil {
				fmt.Fprintln(os.Stderr, "goyaml: input line is not a JSON string:", jerr)
				os.Exit(2)
			}
			encoded, merr := json.Marshal(read(text))
			if merr != nil {
				panic(merr)
			}
			out.Write(append(encoded, '\n'))
			out.Flush()
		}
		if err == io.EOF {
			return
		}
		if err != nil {
			panic(err)
		}
	}
}

func read(text string) (r result) {
	r.Argo, r.ArgoError = readLikeArgo(text)
	r.V3, r.V3Error = readV3(text)
	if r.Argo == nil {
		r.Argo = []json.RawMessage{}
	}
	if r.V3 == nil {
		r.V3 = []interface{}{}
	}
	return r
}

// readLikeArgo follows gitops-engine's kube.SplitYAML: k8s.io/apimachinery's YAMLReader splits
// the stream, sigs.k8s.io/yaml turns each document into JSON, empty and null documents are
// skipped. A panic in a reader counts as an error, as it would fail Argo CD's render.
func readLikeArgo(text string) (docs []json.RawMessage, problem string) {
	defer func() {
		if p := recover(); p != nil {
			docs, problem = nil, fmt.Sprint("panic: ", p)
		}
	}()
	reader := bufio.NewReader(strings.NewReader(text))
	for {
		chunk, err := nextDocument(reader)
		if err == io.EOF {
			return docs, ""
		}
		if err != nil {
			return nil, err.Error()
		}
		converted, err := yaml.YAMLToJSON(chunk)
		if err != nil {
			return nil, err.Error()
		}
		converted = bytes.TrimSpace(converted)
		if len(converted) == 0 || bytes.Equal(converted, []byte("null")) {
			continue
		}
		docs = append(docs, json.RawMessage(converted))
	}
}

// nextDocument is k8s.io/apimachinery/pkg/util/yaml's YAMLReader.Read over its LineReader
// (which drops "\r\n" and ends every line, the last one too, with "\n").
func nextDocument(reader *bufio.Reader) ([]byte, error) {
	const separator = "---"
	var buffer bytes.Buffer
	for {
		line, err := readLine(reader)
		if err != nil && err != io.EOF {
			return nil, err
		}
		if i := bytes.Index(line, []byte(separator)); i == 0 {
			trimmed := strings.TrimSpace(string(line[len(separator):]))
			if len(trimmed) > 0 && trimmed[0] != '#' {
				return nil, fmt.Errorf("invalid Yaml document separator: %s", trimmed)
			}
			if buffer.Len() != 0 {
				return buffer.Bytes(), nil
			}
			if err == io.EOF {
				return nil, err
			}
		}
		if err == io.EOF {
			if buffer.Len() != 0 {
				return buffer.Bytes(), nil
			}
			return nil, err
		}
		buffer.Write(line)
	}
}

func readLine(reader *bufio.Reader) ([]byte, error) {
	var buffer bytes.Buffer
	isPrefix := true
	var err error
	var line []byte
	for isPrefix && err == nil {
		line, isPrefix, err = reader.ReadLine()
		buffer.Write(line)
	}
	buffer.WriteByte('\n')
	return buffer.Bytes(), err
}

// readV3 decodes every document with yaml.v3 into interface{} and writes what JSON cannot say
// (timestamps, non-finite floats, non-string keys, binary) as {"!tag": text} markers, so a
// value yaml.v3 reads differently never compares equal to a plain string or number.
func readV3(text string) (docs []interface{}, problem string) {
	defer func() {
		if p := recover(); p != nil {
			docs, problem = nil, fmt.Sprint("panic: ", p)
		}
	}()
	decoder := yamlv3.NewDecoder(strings.NewReader(text))
	for {
		var doc interface{}
		err := decoder.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return docs, ""
		}
		if err != nil {
			return nil, err.Error()
		}
		docs = append(docs, marked(doc))
	}
}

func marked(value interface{}) interface{} {
	switch v := value.(type) {
	case map[string]interface{}:
		out := make(map[string]interface{}, len(v))
		for key, item := range v {
			out[key] = marked(item)
		}
		return out
	case map[interface{}]interface{}:
		pairs := []interface{}{}
		for key, item := range v {
			pairs = append(pairs, []interface{}{marked(key), marked(item)})
		}
		return map[string]interface{}{"!map": pairs}
	case []interface{}:
		out := make([]interface{}, len(v))
		for i, item := range v {
			out[i] = marked(item)
		}
		return out
	case time.Time:
		return map[string]interface{}{"!timestamp": v.Format(time.RFC3339Nano)}
	case float64:
		if math.IsInf(v, 0) || math.IsNaN(v) {
			return map[string]interface{}{"!float": strconv.FormatFloat(v, 'g', -1, 64)}
		}
		return v
	case []byte:
		return map[string]interface{}{"!binary": string(v)}
	default:
		return v
	}
}

// cases prints the first field (the YAML text) of every entry of `var unmarshalTests`.
func cases(path string) {
	file, err := parser.ParseFile(token.NewFileSet(), path, nil, 0)
	if err != nil {
		panic(err)
	}
	texts := []string{}
	ast.Inspect(file, func(node ast.Node) bool {
		spec, ok := node.(*ast.ValueSpec)
		if !ok || len(spec.Names) != 1 || spec.Names[0].Name != "unmarshalTests" {
			return true
		}
		table := spec.Values[0].(*ast.CompositeLit)
		for _, element := range table.Elts {
			entry, ok := element.(*ast.CompositeLit)
			if !ok || len(entry.Elts) == 0 {
				continue
			}
			if text, ok := stringValue(entry.Elts[0]); ok {
				texts = append(texts, text)
			}
		}
		return false
	})
	encoded, err := json.Marshal(texts)
	if err != nil {
		panic(err)
	}
	os.Stdout.Write(append(encoded, '\n'))
}

// stringValue evaluates a string literal or a `+` concatenation of them.
func stringValue(expr ast.Expr) (string, bool) {
	switch e := expr.(type) {
	case *ast.BasicLit:
		if e.Kind != token.STRING {
			return "", false
		}
		text, err := strconv.Unquote(e.Value)
		return text, err == nil
	case *ast.BinaryExpr:
		if e.Op != token.ADD {
			return "", false
		}
		left, ok1 := stringValue(e.X)
		right, ok2 := stringValue(e.Y)
		return left + right, ok1 && ok2
	case *ast.ParenExpr:
		return stringValue(e.X)
	}
	return "", false
}
