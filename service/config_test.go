package service_test

import (
	"flag"
	"io"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/presenced/presenced/service"
)

// docFlags reads the flags of a Markdown table in path: each row whose
// first cell names flags (`-name`, several allowed) gives, per flag, its
// other cells with the backticks removed.
func docFlags(t *testing.T, path string) map[string][]string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	name := regexp.MustCompile("`-([a-z-]+)`")
	out := map[string][]string{}
	for _, line := range strings.Split(string(data), "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 4 || !strings.HasPrefix(strings.TrimSpace(cells[1]), "`-") {
			continue
		}
		var rest []string
		for _, c := range cells[2 : len(cells)-1] {
			rest = append(rest, strings.Trim(strings.TrimSpace(c), "`"))
		}
		for _, m := range name.FindAllStringSubmatch(cells[1], -1) {
			out[m[1]] = rest
		}
	}
	if len(out) == 0 {
		t.Fatalf("no flag table in %s", path)
	}
	return out
}

// parse runs service.ParseFlags from the defaults with args and env.
func parse(t *testing.T, args []string, env map[string]string) (service.Config, *flag.FlagSet) {
	t.Helper()
	cfg := service.Defaults()
	fs := flag.NewFlagSet("presenced", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	if err := service.ParseFlags(&cfg, fs, args, func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	return cfg, fs
}

// sameValue reports whether doc, a default as the docs write it ("empty",
// "24h", "false"), is the value f holds.
func sameValue(t *testing.T, f *flag.Flag, doc string) bool {
	t.Helper()
	if doc == "empty" {
		doc = ""
	}
	fresh := flag.NewFlagSet("doc", flag.ContinueOnError)
	switch f.Value.(flag.Getter).Get().(type) {
	case string:
		fresh.String(f.Name, "", "")
	case bool:
		fresh.Bool(f.Name, false, "")
	case int:
		fresh.Int(f.Name, 0, "")
	case float64:
		fresh.Float64(f.Name, 0, "")
	case time.Duration:
		fresh.Duration(f.Name, 0, "")
	default:
		t.Fatalf("-%s: a flag of type %T", f.Name, f.Value.(flag.Getter).Get())
	}
	if err := fresh.Set(f.Name, doc); err != nil {
		t.Errorf("-%s: the documented default %q is not a value of the flag: %v", f.Name, doc, err)
		return false
	}
	return fresh.Lookup(f.Name).Value.String() == f.Value.String()
}

// other returns a valid value of f's type other than its default, as the
// command line or the environment writes it.
func other(f *flag.Flag) string {
	switch v := f.Value.(flag.Getter).Get().(type) {
	case bool:
		if v {
			return "false"
		}
		return "true"
	case int, float64:
		return "7"
	case time.Duration:
		return "7s"
	}
	switch f.Name {
	case "log-level":
		return "debug"
	}
	return "other-" + f.Name
}

// TestFlags checks every flag against the README's table and the contract's
// (docs/contract.md, section 5): each flag is in the README with its
// default; each of the contract's flags exists with the environment
// variable and the default it gives; the variable sets the flag, and the
// command line wins over it.
func TestFlags(t *testing.T) {
	readme := docFlags(t, "../README.md")
	contract := docFlags(t, "../docs/contract.md")
	_, fs := parse(t, nil, nil)

	fs.VisitAll(func(f *flag.Flag) {
		t.Run(f.Name, func(t *testing.T) {
			doc, ok := readme[f.Name]
			if !ok {
				t.Fatalf("-%s is not in the README's flag table", f.Name)
			}
			if !sameValue(t, f, doc[0]) {
				t.Errorf("-%s: the README says the default is %q, the program's is %q", f.Name, doc[0], f.DefValue)
			}
			env := service.EnvName(f.Name)
			if want := "PRESENCE_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_")); env != want {
				t.Errorf("-%s: environment variable %s, want %s", f.Name, env, want)
			}
			if c, ok := contract[f.Name]; ok {
				if c[0] != env {
					t.Errorf("-%s: the contract names %s, the program reads %s", f.Name, c[0], env)
				}
				if !sameValue(t, f, c[1]) {
					t.Errorf("-%s: the contract says the default is %q, the program's is %q", f.Name, c[1], f.DefValue)
				}
			}

			value := other(f)
			_, byEnv := parse(t, nil, map[string]string{env: value})
			if got := byEnv.Lookup(f.Name).Value.String(); got == f.DefValue {
				t.Errorf("%s=%s left -%s at its default %q", env, value, f.Name, got)
			}
			args := []string{"-" + f.Name + "=" + f.DefValue}
			_, both := parse(t, args, map[string]string{env: value})
			if got := both.Lookup(f.Name).Value.String(); got != f.DefValue {
				t.Errorf("-%s=%s on the command line and %s=%s: got %q, want the command line's", f.Name, f.DefValue, env, value, got)
			}
		})
	})
	for name := range contract {
		if fs.Lookup(name) == nil {
			t.Errorf("the contract's flag -%s does not exist", name)
		}
	}
	for name := range readme {
		if fs.Lookup(name) == nil {
			t.Errorf("the README's flag -%s does not exist", name)
		}
	}
}
