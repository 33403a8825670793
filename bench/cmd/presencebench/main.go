package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"

	"github.com/presenced/presenced/bench"
)

func main() {
	bench.MaybeServe() // the query scenario's server process, when re-executed as one
	scenario := flag.String("scenario", "all", "ingest, query, freshness, peers, charts or all (comma-separated list allowed)")
	short := flag.Bool("short", false, "smoke-sized run, seconds long")
	out := flag.String("out", "", "directory for the JSON results and the charts (empty: none)")
	repeat := flag.Int("repeat", 0, "repetitions of each measured pass, median reported (0: 3, or 1 with -short)")
	scale := flag.Float64("scale", 1, "multiply the full run's sizes (users, events)")
	inprocess := flag.Bool("inprocess", false, "query scenario: serve GraphQL from the load generator's own process, not a child process")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the run to this file")
	liveprofile := flag.String("liveprofile", "", "ingest scenario: write a CPU profile of each of the engine's live runs, and of nothing else, to FILE.<repetition>")
	flag.Parse()
	if *cpuprofile != "" && *liveprofile != "" {
		fail(fmt.Errorf("-cpuprofile and -liveprofile: one CPU profile at a time"))
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			fail(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fail(err)
		}
		defer pprof.StopCPUProfile()
	}
	o := bench.Options{Short: *short, Out: *out, Repeat: *repeat, Scale: *scale, Log: os.Stdout, InProcessServer: *inprocess,
		LiveCPUProfile: *liveprofile}
	if *cpuprofile != "" {
		o.ServerCPUProfile = *cpuprofile + ".server" // the query scenario's server process: FILE.server.<users>
	}
	names := strings.Split(*scenario, ",")
	if *scenario == "all" {
		names = []string{"ingest", "query", "freshness", "peers", "charts"}
	}
	for _, name := range names {
		var err error
		switch name {
		case "charts":
			if o.Out == "" {
				err = fmt.Errorf("charts need -out")
				break
			}
			err = bench.Charts(o.Out)
		default:
			run, ok := bench.Scenarios[name]
			if !ok {
				err = fmt.Errorf("unknown scenario %q", name)
				break
			}
			_, err = run(ctx, o)
		}
		if err != nil {
			pprof.StopCPUProfile()
			fail(fmt.Errorf("%s: %w", name, err))
		}
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "presencebench:", err)
	os.Exit(1)
}
