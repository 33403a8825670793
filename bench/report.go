package bench

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// Options are what every scenario is told.
type Options struct {
	// Short runs a smoke-sized version that finishes in seconds.
	Short bool
	// Out is the directory of the JSON results and charts; empty writes
	// none.
	Out string
	// Repeat is how many times a measured pass is repeated (the median is
	// reported). Zero means 3, or 1 when Short.
	Repeat int
	// Log receives progress lines and the tables. Nil discards them.
	Log io.Writer
	// Scale multiplies the sizes of the full run (events, users); zero means
	// 1. Tests and quick looks use less.
	Scale float64
	// InProcessServer makes the query scenario serve GraphQL from its own
	// process instead of a child process (see ServeEnv): the load generator
	// and the engine's heap then share one garbage collector.
	InProcessServer bool
	// ServerCPUProfile, if not empty, makes the query scenario's server
	// process write its CPU profile to ServerCPUProfile.<users>.
	ServerCPUProfile string
	// LiveCPUProfile, if not empty, makes the ingest scenario write a CPU
	// profile of each of the engine's live runs, and of nothing else, to
	// LiveCPUProfile.<repetition>. No other CPU profile may be running.
	LiveCPUProfile string
	// Timeout bounds the scenarios that run presenced in this process: past
	// it they fail, and a minute later the program exits. Zero means the
	// scenario's own bound (soak: its duration and settle time plus 5
	// minutes; recovery: 10 minutes).
	Timeout time.Duration
	// Soak is the soak scenario's settings.
	Soak SoakOptions
	// Recovery is the recovery scenario's settings.
	Recovery RecoveryOptions
}

func (o *Options) defaults() {
	if o.Repeat == 0 {
		o.Repeat = 3
		if o.Short {
			o.Repeat = 1
		}
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	if o.Scale == 0 {
		o.Scale = 1
	}
}

func (o *Options) logf(format string, args ...any) {
	fmt.Fprintf(o.Log, "# "+format+"\n", args...)
}

// timeout is o.Timeout, or def if zero.
func (o *Options) timeout(def time.Duration) time.Duration {
	if o.Timeout > 0 {
		return o.Timeout
	}
	return def
}

// scaled returns full scaled by o.Scale, or short in short mode.
func (o *Options) scaled(full, short int) int {
	if o.Short {
		return short
	}
	return max(1, int(float64(full)*o.Scale))
}

// Machine describes where a result was measured.
type Machine struct {
	CPU       string `json:"cpu"`
	Cores     int    `json:"cores"`
	GoVersion string `json:"go_version"`
	OS        string `json:"os"`
	// LoadAvg is /proc/loadavg when the scenario started: the machine is
	// shared, and a high load explains noisy numbers.
	LoadAvg string `json:"loadavg"`
}

// ThisMachine reads the machine's description.
func ThisMachine() Machine {
	m := Machine{Cores: runtime.NumCPU(), GoVersion: runtime.Version(), OS: runtime.GOOS + "/" + runtime.GOARCH}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		m.LoadAvg = strings.TrimSpace(string(b))
	}
	return m
}

// Table is one printed table.
type Table struct {
	Title  string     `json:"title"`
	Header []string   `json:"header"`
	Rows   [][]string `json:"rows"`
}

// Add appends a row of values printed with %v, floats with 3 significant
// digits.
func (t *Table) Add(vals ...any) {
	row := make([]string, len(vals))
	for i, v := range vals {
		switch x := v.(type) {
		case float64:
			row[i] = fmtFloat(x)
		default:
			row[i] = fmt.Sprint(v)
		}
	}
	t.Rows = append(t.Rows, row)
}

func fmtFloat(x float64) string {
	switch {
	case x == 0:
		return "0"
	case x >= 100:
		return fmt.Sprintf("%.0f", x)
	case x >= 10:
		return fmt.Sprintf("%.1f", x)
	case x >= 1:
		return fmt.Sprintf("%.2f", x)
	default:
		return fmt.Sprintf("%.3g", x)
	}
}

// Markdown writes t as a Markdown table.
func (t *Table) Markdown(w io.Writer) {
	fmt.Fprintf(w, "\n**%s**\n\n", t.Title)
	fmt.Fprintf(w, "| %s |\n", strings.Join(t.Header, " | "))
	fmt.Fprintf(w, "|%s\n", strings.Repeat(" --- |", len(t.Header)))
	for _, r := range t.Rows {
		fmt.Fprintf(w, "| %s |\n", strings.Join(r, " | "))
	}
}

// Target is one goal of the issue and how the run fared.
type Target struct {
	Name string `json:"name"`
	Want string `json:"want"`
	Got  string `json:"got"`
	Met  bool   `json:"met"`
}

// Result is what a scenario reports; it is written as <scenario>.json.
type Result struct {
	Scenario string        `json:"scenario"`
	Started  time.Time     `json:"started"`
	Elapsed  time.Duration `json:"elapsed_ns"`
	Short    bool          `json:"short"`
	Repeat   int           `json:"repeat"`
	Machine  Machine       `json:"machine"`
	Tables   []*Table      `json:"tables"`
	Targets  []Target      `json:"targets,omitempty"`
	Notes    []string      `json:"notes,omitempty"`
	// Data holds the scenario's numbers in a form for programs and charts.
	Data any `json:"data"`
}

// newResult starts the result of scenario name, after filling o's zero
// fields.
func newResult(name string, o *Options) *Result {
	o.defaults()
	return &Result{Scenario: name, Started: time.Now(), Short: o.Short, Repeat: o.Repeat, Machine: ThisMachine()}
}

func (r *Result) table(title string, header ...string) *Table {
	t := &Table{Title: title, Header: header}
	r.Tables = append(r.Tables, t)
	return t
}

func (r *Result) target(name, want, got string, met bool) {
	r.Targets = append(r.Targets, Target{name, want, got, met})
}

func (r *Result) note(format string, args ...any) {
	r.Notes = append(r.Notes, fmt.Sprintf(format, args...))
}

// Print writes the tables, targets and notes as Markdown.
func (r *Result) Print(w io.Writer) {
	fmt.Fprintf(w, "\n### %s (%s, %d cores, %s, load %s)\n", r.Scenario, r.Machine.CPU, r.Machine.Cores,
		r.Machine.GoVersion, r.Machine.LoadAvg)
	for _, t := range r.Tables {
		t.Markdown(w)
	}
	if len(r.Targets) > 0 {
		t := Table{Title: "Targets", Header: []string{"target", "want", "got", "met"}}
		for _, x := range r.Targets {
			met := "yes"
			if !x.Met {
				met = "**no**"
			}
			t.Add(x.Name, x.Want, x.Got, met)
		}
		t.Markdown(w)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "\n- %s", n)
	}
	fmt.Fprintln(w)
}

// write stores r as <dir>/<scenario>.json.
func (r *Result) write(dir string) error {
	if dir == "" {
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, r.Scenario+".json"), append(b, '\n'), 0o644)
}

// finish stamps, prints and writes r.
func (r *Result) finish(o *Options) (*Result, error) {
	r.Elapsed = time.Since(r.Started)
	r.Print(o.Log)
	return r, r.write(o.Out)
}
