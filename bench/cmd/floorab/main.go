// Command floorab times the peers scenario's HTTP floor (bench.FloorEnv)
// beside the query scenario's GraphQL server (bench.ServeEnv: the api over
// an engine holding the population) of one or more presencebench binaries
// (NAME=PATH arguments; the first also serves the floor), each in a process
// of its own, interleaving their queries so that a shared machine's load
// drifts alike for all. Per round: each class's filters asked one at a
// time, in turn on every server (p50 per class), then a closed loop of
// -conc clients on each in turn (queries/s); the server's CPU per query
// (from /proc/PID/task/*/schedstat) for both. It prints medians over
// the rounds, and of the per-round ratios to the floor.
//
//	go build -o /tmp/presencebench ./cmd/presencebench
//	go run ./cmd/floorab -users 100000 -rounds 7 new=/tmp/presencebench old=/tmp/presencebench.old
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/presenced/presenced/bench"
)

type target struct {
	name string
	url  string
	hc   *http.Client
	cmd  *exec.Cmd
	in   io.WriteCloser
}

func start(name, bin string, env string) *target {
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), env)
	cmd.Stderr = os.Stderr
	in, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		panic(err)
	}
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if a, ok := strings.CutPrefix(sc.Text(), "addr "); ok {
			addr := strings.Fields(a)[0]
			tr := &http.Transport{MaxIdleConns: 8, MaxIdleConnsPerHost: 8, IdleConnTimeout: time.Minute, DisableCompression: true}
			go io.Copy(io.Discard, out)
			return &target{name: name, url: "http://" + addr + "/graphql", hc: &http.Client{Transport: tr}, cmd: cmd, in: in}
		}
	}
	panic("no addr from " + bin)
}

func (t *target) post(body []byte, buf *bytes.Buffer) {
	req, _ := http.NewRequest(http.MethodPost, t.url, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Tenant-Id", bench.Tenant)
	resp, err := t.hc.Do(req)
	if err != nil {
		panic(err)
	}
	buf.Reset()
	io.Copy(buf, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.HasPrefix(buf.Bytes(), []byte(`{"data"`)) || bytes.Contains(buf.Bytes(), []byte(`"errors"`)) {
		panic(fmt.Sprintf("%s: %d %s", t.name, resp.StatusCode, buf.Bytes()))
	}
}

// cpu is the CPU time the process's threads have used so far, in µs, from
// /proc/PID/task/*/schedstat (nanoseconds, where /proc/PID/stat counts
// ticks of 10 ms).
func (t *target) cpu() float64 {
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", t.cmd.Process.Pid))
	if err != nil {
		panic(err)
	}
	var ns float64
	for _, p := range tasks {
		b, err := os.ReadFile(p)
		if err != nil {
			continue // a thread that ended
		}
		var v float64
		fmt.Sscan(string(b), &v)
		ns += v
	}
	return ns / 1e3
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	sort.Float64s(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}

func main() {
	users := flag.Int("users", 10000, "users")
	rounds := flag.Int("rounds", 5, "rounds")
	n := flag.Int("n", 200, "queries per class per round per target")
	closed := flag.Duration("closed", 2*time.Second, "closed loop per target per round (0: none)")
	conc := flag.Int("conc", 8, "closed-loop clients")
	flag.Parse()
	var ts []*target
	bins := flag.Args() // name=path ...
	if len(bins) == 0 {
		fmt.Fprintln(os.Stderr, "usage: floorab [flags] NAME=PRESENCEBENCH-BINARY...")
		os.Exit(2)
	}
	first := strings.SplitN(bins[0], "=", 2)[1]
	ts = append(ts, start("floor", first, bench.FloorEnv+"=1"))
	for _, b := range bins {
		nv := strings.SplitN(b, "=", 2)
		ts = append(ts, start(nv[0], nv[1], fmt.Sprintf("%s=%d", bench.ServeEnv, *users)))
	}
	defer func() {
		for _, t := range ts {
			t.in.Close()
			t.cmd.Wait()
		}
	}()
	pop := bench.NewPopulation(*users, 7)
	bodies := map[bench.Class][][]byte{}
	var all [][]byte
	for _, c := range bench.Classes {
		for _, f := range pop.Filters(c, 64) {
			b := bench.GraphQLBody(f)
			bodies[c] = append(bodies[c], b)
			all = append(all, b)
		}
	}
	var buf bytes.Buffer
	for _, t := range ts { // warm up
		for _, b := range all {
			t.post(b, &buf)
		}
	}
	// p50[class][target] per round; ratio to floor per round.
	p50 := map[bench.Class]map[string][]float64{}
	qps := map[string][]float64{}
	cpuSerial := map[string][]float64{} // server CPU µs per query, one at a time, per round
	cpuClosed := map[string][]float64{}
	for r := 0; r < *rounds; r++ {
		c0 := map[string]float64{}
		for _, t := range ts {
			c0[t.name] = t.cpu()
		}
		for _, c := range bench.Classes {
			lats := map[string][]float64{}
			for i := 0; i < *n; i++ {
				b := bodies[c][i%len(bodies[c])]
				for k := range ts {
					// Rotated, and reversed every other turn, so that each
					// server follows each other one as often: on 2 cores the
					// server that answered last still runs for a while (its
					// idle threads spin), at the next one's expense.
					if (i/len(ts))%2 == 1 {
						k = len(ts) - 1 - k
					}
					t := ts[(i+k)%len(ts)]
					t0 := time.Now()
					t.post(b, &buf)
					lats[t.name] = append(lats[t.name], float64(time.Since(t0).Nanoseconds())/1e3)
				}
			}
			if p50[c] == nil {
				p50[c] = map[string][]float64{}
			}
			for name, l := range lats {
				p50[c][name] = append(p50[c][name], median(l))
			}
		}
		for _, t := range ts {
			cpuSerial[t.name] = append(cpuSerial[t.name], (t.cpu()-c0[t.name])/float64(*n*len(bench.Classes)))
		}
		if *closed > 0 {
			for k := range ts {
				t := ts[(r+k)%len(ts)]
				var wg sync.WaitGroup
				var mu sync.Mutex
				done := 0
				end := time.Now().Add(*closed)
				t0 := time.Now()
				cpu0 := t.cpu()
				for w := 0; w < *conc; w++ {
					wg.Add(1)
					go func(w int) {
						defer wg.Done()
						var buf bytes.Buffer
						m := 0
						for i := w; time.Now().Before(end); i += *conc {
							t.post(all[i%len(all)], &buf)
							m++
						}
						mu.Lock()
						done += m
						mu.Unlock()
					}(w)
				}
				wg.Wait()
				qps[t.name] = append(qps[t.name], float64(done)/time.Since(t0).Seconds())
				cpuClosed[t.name] = append(cpuClosed[t.name], (t.cpu()-cpu0)/float64(done))
			}
		}
	}
	names := []string{}
	for _, t := range ts {
		names = append(names, t.name)
	}
	fmt.Printf("users %d, rounds %d, %d queries per class per round per target; medians over rounds\n", *users, *rounds, *n)
	for _, c := range bench.Classes {
		fmt.Printf("class %s p50 µs:", c)
		for _, nm := range names {
			fmt.Printf("  %s %.1f", nm, median(p50[c][nm]))
		}
		fmt.Printf("   | ratio to floor (median of per-round ratios):")
		for _, nm := range names[1:] {
			var rs []float64
			for i := range p50[c][nm] {
				rs = append(rs, p50[c][nm][i]/p50[c]["floor"][i])
			}
			fmt.Printf("  %s %.2f", nm, median(rs))
		}
		fmt.Println()
	}
	fmt.Printf("server CPU µs per query, one at a time:")
	for _, nm := range names {
		fmt.Printf("  %s %.1f", nm, median(cpuSerial[nm]))
	}
	fmt.Println()
	if *closed > 0 {
		fmt.Printf("server CPU µs per query, closed loop:")
		for _, nm := range names {
			fmt.Printf("  %s %.1f", nm, median(cpuClosed[nm]))
		}
		fmt.Println()
		fmt.Printf("closed loop %d clients q/s:", *conc)
		for _, nm := range names {
			fmt.Printf("  %s %.0f", nm, median(qps[nm]))
		}
		fmt.Printf("   | share of floor:")
		for _, nm := range names[1:] {
			var rs []float64
			for i := range qps[nm] {
				rs = append(rs, qps[nm][i]/qps["floor"][i])
			}
			fmt.Printf("  %s %.2f", nm, median(rs))
		}
		fmt.Println()
	}
}
