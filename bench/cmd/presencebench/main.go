package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"slices"
	"strings"

	"github.com/presenced/presenced/bench"
)

func main() {
	bench.MaybeServe() // the query scenario's server process, when re-executed as one
	scenario := flag.String("scenario", "all", "ingest, query, freshness, peers, soak, recovery, cluster, forwarding (the cluster scenario's first part alone), charts or all (comma-separated list allowed; all: all but soak, recovery, cluster and forwarding)")
	short := flag.Bool("short", false, "smoke-sized run, seconds long")
	out := flag.String("out", "", "directory for the JSON results and the charts (empty: none)")
	repeat := flag.Int("repeat", 0, "repetitions of each measured pass, median reported (0: 3, or 1 with -short)")
	scale := flag.Float64("scale", 1, "multiply the full run's sizes (users, events)")
	inprocess := flag.Bool("inprocess", false, "query scenario: serve GraphQL from the load generator's own process, not a child process")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the run to this file (recovery: of its restarts from the snapshot alone)")
	liveprofile := flag.String("liveprofile", "", "ingest scenario: write a CPU profile of each of the engine's live runs, and of nothing else, to FILE.<repetition>")
	timeout := flag.Duration("timeout", 0, "soak and recovery: fail past this long, exit a minute later (0: soak -duration + -settle + 5m, recovery 10m)")
	users := flag.Int("users", 0, "soak: users logged in before the clock starts, spread over the tenants (0: 200,000); recovery: users tracked (0: 1,000,000)")
	var rec bench.RecoveryOptions
	flag.IntVar(&rec.Runs, "runs", 0, "recovery: restarts per mode, the median reported (0: -repeat's)")
	flag.StringVar(&rec.Tenant, "tenant", bench.Tenant, "recovery: the tenant of every user")
	flag.StringVar(&rec.Dir, "dir", "", "recovery: data dir to use (kept); empty uses a temporary one, removed at the end")
	soak := bench.DefaultSoak()
	flag.DurationVar(&soak.Duration, "duration", soak.Duration, "soak: how long the load runs")
	flag.IntVar(&soak.Events, "events", soak.Events, "soak: events published per second")
	flag.IntVar(&soak.Queries, "queries", soak.Queries, "soak: GraphQL queries sent per second")
	flag.IntVar(&soak.Tenants, "tenants", soak.Tenants, "soak: tenants")
	flag.Float64Var(&soak.NewUsers, "new-users", soak.NewUsers, "soak: share of the churn events that log in a user never seen before")
	flag.IntVar(&soak.Workers, "workers", soak.Workers, "soak: concurrent HTTP requests at most")
	flag.DurationVar(&soak.Settle, "settle", soak.Settle, "soak: idle time before the last heap measurement")
	flag.DurationVar(&soak.SnapshotInterval, "snapshot-interval", soak.SnapshotInterval, "soak: presenced's -snapshot-interval; 0 only at shutdown")
	flag.Usage = func() {
		fmt.Fprintln(flag.CommandLine.Output(), "usage: presencebench [-scenario NAME[,NAME...]] [flags]; see go doc github.com/presenced/presenced/bench/cmd/presencebench")
		flag.PrintDefaults()
	}
	flag.Parse()
	if *cpuprofile != "" && *liveprofile != "" {
		fail(fmt.Errorf("-cpuprofile and -liveprofile: one CPU profile at a time"))
	}
	names := strings.Split(*scenario, ",")
	if *scenario == "all" {
		names = []string{"ingest", "query", "freshness", "peers", "charts"}
	}
	soak.Users, rec.Users = *users, *users
	if slices.Contains(names, "recovery") && *cpuprofile != "" {
		// As bench/recovery did: the restarts, not the load before them.
		if len(names) > 1 {
			fail(fmt.Errorf("-cpuprofile with -scenario recovery profiles its restarts: run recovery alone"))
		}
		rec.CPUProfile, *cpuprofile = *cpuprofile, ""
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
		LiveCPUProfile: *liveprofile, Timeout: *timeout, Soak: soak, Recovery: rec}
	if *cpuprofile != "" {
		o.ServerCPUProfile = *cpuprofile + ".server" // the query scenario's server process: FILE.server.<users>
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
