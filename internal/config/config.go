// Package config lets every command-line flag also come from an environment
// variable (OTAS_SNIFF_<FLAG>) and from a YAML file, with the precedence
// command line > environment > file > default, and reports where each
// effective setting came from.
package config

import (
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"
)

// EnvPrefix starts the environment variable of every flag.
const EnvPrefix = "OTAS_SNIFF_"

// FileFlag is the flag naming the configuration file; it cannot itself be set
// from the file.
const FileFlag = "config"

// Sources of a setting, from strongest to weakest.
const (
	SourceFlag    = "flag"
	SourceEnv     = "env"
	SourceFile    = "file"
	SourceDefault = "default"
)

// sourceAnnotation records on a flag where Apply took its value from: the
// source and its place (variable name, file:line). Kept on the FlagSet itself
// so that the package holds no state.
const sourceAnnotation = "otas-sniff/config-source"

// Masked replaces a secret's value in Effective.
const Masked = "********"

// EnvName is the environment variable for a flag: OTAS_SNIFF_ and the name in
// upper case with - as _ (max-body → OTAS_SNIFF_MAX_BODY).
func EnvName(flag string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// File returns the configuration file to read: the --config flag when given on
// the command line, else $OTAS_SNIFF_CONFIG, else "" (none).
func File(fs *pflag.FlagSet, getenv func(string) string) string {
	if f := fs.Lookup(FileFlag); f != nil && f.Changed {
		return f.Value.String()
	}
	return getenv(EnvName(FileFlag))
}

// skipped reports flags that take no value from the environment or a file.
func skipped(name string) bool {
	return name == "help" || name == FileFlag
}

// Apply sets every flag not given on the command line from its environment
// variable (read with getenv; empty means unset), else from the YAML file
// (skipped when file is ""). List flags (StringArray, StringSlice, ...) take a
// YAML list or a comma-separated variable. Flags set here count as Changed.
//
// The file is a mapping of flag names to values; an unknown name or a value of
// the wrong type is an error naming the file, line and key.
func Apply(fs *pflag.FlagSet, file string, getenv func(string) string) error {
	return ApplyShared(fs, file, getenv, nil)
}

// ApplyShared is Apply for a config file shared by several commands: a key
// that is not a flag of fs but for which otherCommand reports true belongs to
// another command and is skipped instead of rejected.
func ApplyShared(fs *pflag.FlagSet, file string, getenv func(string) string, otherCommand func(name string) bool) error {
	// Flags already changed were given on the command line (or by an earlier
	// Apply), and win over everything here.
	isSet := func(name string) bool { return fs.Lookup(name).Changed }

	var errs []error
	fs.VisitAll(func(f *pflag.Flag) {
		if skipped(f.Name) || isSet(f.Name) {
			return
		}
		env := EnvName(f.Name)
		raw := getenv(env)
		if raw == "" {
			return
		}
		var err error
		if _, ok := f.Value.(pflag.SliceValue); ok {
			err = setList(f, splitList(raw))
		} else {
			err = fs.Set(f.Name, raw)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("environment variable %s: %w", env, err))
			return
		}
		annotate(fs, f.Name, SourceEnv, env)
	})
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if file == "" {
		return nil
	}
	return applyFile(fs, file, otherCommand)
}

// splitList splits a comma-separated variable, trimming spaces around items
// and dropping empty ones.
func splitList(raw string) []string {
	var out []string
	for _, item := range strings.Split(raw, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

// setList replaces a list flag's values. SliceValue.Replace does not mark the
// flag changed, so that is done here.
func setList(f *pflag.Flag, items []string) error {
	if err := f.Value.(pflag.SliceValue).Replace(items); err != nil {
		return fmt.Errorf("invalid value %q for --%s: %w", strings.Join(items, ","), f.Name, err)
	}
	f.Changed = true
	return nil
}

func annotate(fs *pflag.FlagSet, name, source, where string) {
	_ = fs.SetAnnotation(name, sourceAnnotation, []string{source, where})
}

// FileError is a problem in the configuration file, at a line when known.
type FileError struct {
	File string
	Line int // 0 when the problem is not at a line
	Msg  string
	Err  error // the underlying error, if any
}

func (e *FileError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.File, e.Msg)
}

func (e *FileError) Unwrap() error { return e.Err }

// yamlLine finds the line in yaml.v3's messages ("yaml: line 3: ...").
var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

func applyFile(fs *pflag.FlagSet, file string, otherCommand func(string) bool) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("read config file: %w", err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		msg := strings.TrimPrefix(err.Error(), "yaml: ")
		line := 0
		if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
			line, _ = strconv.Atoi(m[1])
			msg = m[2]
		}
		return &FileError{File: file, Line: line, Msg: "not valid YAML: " + msg, Err: err}
	}
	if len(doc.Content) == 0 {
		return nil // an empty file sets nothing
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return &FileError{File: file, Line: root.Line, Msg: "expected a mapping of flag names to values, like max-body: 65536"}
	}
	var errs []error
	seen := map[string]int{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		keyNode, valNode := root.Content[i], root.Content[i+1]
		key := keyNode.Value
		name := strings.ReplaceAll(key, "_", "-")
		fail := func(line int, format string, args ...any) {
			errs = append(errs, &FileError{File: file, Line: line, Msg: fmt.Sprintf(format, args...)})
		}
		f := fs.Lookup(name)
		switch {
		case keyNode.Kind != yaml.ScalarNode:
			fail(keyNode.Line, "a key must be a flag name")
			continue
		case name == FileFlag:
			fail(keyNode.Line, "%q cannot be set in the config file itself", key)
			continue
		case (f == nil || skipped(name)) && otherCommand != nil && otherCommand(name):
			continue
		case f == nil || skipped(name):
			fail(keyNode.Line, "unknown setting %q; %s", key, suggest(fs, name))
			continue
		}
		if prev, dup := seen[name]; dup {
			fail(keyNode.Line, "%q is set again (first set at line %d)", key, prev)
			continue
		}
		seen[name] = keyNode.Line
		if f.Changed {
			continue // the command line or the environment wins
		}
		if err := setFromNode(fs, f, valNode); err != nil {
			errs = append(errs, &FileError{File: file, Line: valNode.Line, Msg: fmt.Sprintf("%s: %v", key, err), Err: err})
			continue
		}
		annotate(fs, f.Name, SourceFile, fmt.Sprintf("%s:%d", file, keyNode.Line))
	}
	return errors.Join(errs...)
}

// setFromNode sets f from a YAML value: a scalar for a plain flag; a list, or a
// single scalar, for a list flag. null leaves the flag alone.
func setFromNode(fs *pflag.FlagSet, f *pflag.Flag, n *yaml.Node) error {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil
	}
	_, isList := f.Value.(pflag.SliceValue)
	switch {
	case isList && n.Kind == yaml.SequenceNode:
		items := make([]string, 0, len(n.Content))
		for _, item := range n.Content {
			if item.Kind != yaml.ScalarNode {
				return fmt.Errorf("list items must be single values, not a %s (line %d)", kindName(item), item.Line)
			}
			items = append(items, item.Value)
		}
		return setList(f, items)
	case isList && n.Kind == yaml.ScalarNode:
		return setList(f, []string{n.Value})
	case n.Kind == yaml.ScalarNode:
		if err := fs.Set(f.Name, n.Value); err != nil {
			return fmt.Errorf("want %s, got %q: %w", typeName(f), n.Value, errors.Unwrap(err))
		}
		return nil
	default:
		return fmt.Errorf("want %s, got a %s", typeName(f), kindName(n))
	}
}

func typeName(f *pflag.Flag) string {
	t := f.Value.Type()
	switch t {
	case "int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64":
		return "an integer"
	case "bool":
		return "true or false"
	case "duration":
		return "a duration like 30s or 2m"
	case "string":
		return "a string"
	}
	if strings.HasSuffix(t, "Slice") || strings.HasSuffix(t, "Array") {
		return "a list"
	}
	return "a " + t
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "list"
	}
	return "value"
}

// suggest names the settings closest to an unknown one, or all of them.
func suggest(fs *pflag.FlagSet, name string) string {
	type candidate struct {
		name string
		dist int
	}
	var all []string
	var close []candidate
	fs.VisitAll(func(f *pflag.Flag) {
		if skipped(f.Name) {
			return
		}
		all = append(all, f.Name)
		d := editDistance(name, f.Name)
		if d <= max(2, len(name)/3) || strings.Contains(f.Name, name) || strings.Contains(name, f.Name) {
			close = append(close, candidate{f.Name, d})
		}
	})
	if len(close) == 0 {
		return "valid settings: " + strings.Join(all, ", ")
	}
	sort.SliceStable(close, func(i, j int) bool { return close[i].dist < close[j].dist })
	var names []string
	for _, c := range close[:min(3, len(close))] {
		names = append(names, c.name)
	}
	return "did you mean " + strings.Join(names, " or ") + "?"
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// Setting is one flag's effective value and where it came from.
type Setting struct {
	Name  string
	Value string
	// Source is SourceFlag, SourceEnv, SourceFile or SourceDefault.
	Source string
	// Where is the variable name for env, file:line for file, else "".
	Where string
	// Secret is true when Value is masked.
	Secret bool
}

// Effective lists every flag (but help and config) by name with its value and
// source; values of flags for which secret returns true are masked, unless
// empty. secret may be nil.
func Effective(fs *pflag.FlagSet, secret func(name string) bool) []Setting {
	var out []Setting
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Name == "help" {
			return
		}
		s := Setting{Name: f.Name, Value: flagValue(f), Source: SourceDefault}
		switch a := f.Annotations[sourceAnnotation]; {
		case len(a) == 2:
			s.Source, s.Where = a[0], a[1]
		case f.Changed:
			s.Source = SourceFlag
		}
		if secret != nil && secret(f.Name) && s.Value != "" {
			s.Value, s.Secret = Masked, true
		}
		out = append(out, s)
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func flagValue(f *pflag.Flag) string {
	if sv, ok := f.Value.(pflag.SliceValue); ok {
		return strings.Join(sv.GetSlice(), ",")
	}
	return f.Value.String()
}

// SecretName reports names that hold credentials by convention: containing
// key, token, secret or password. It fits Effective's secret argument.
func SecretName(name string) bool {
	n := strings.ToLower(name)
	for _, word := range []string{"key", "token", "secret", "password"} {
		if strings.Contains(n, word) {
			return true
		}
	}
	return false
}

// WriteTable writes settings as an aligned table: NAME, VALUE, SOURCE and,
// for env and file, where.
func WriteTable(w io.Writer, settings []Setting) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tVALUE\tSOURCE")
	for _, s := range settings {
		source := s.Source
		if s.Where != "" {
			source += " (" + s.Where + ")"
		}
		value := s.Value
		if value == "" {
			value = `""`
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", s.Name, value, source)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write settings: %w", err)
	}
	return nil
}
