package bench

import (
	"encoding/json"
	"errors"
	"fmt"
	"image/color"
	"os"
	"path/filepath"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// Charts draws PNG charts from the JSON results in dir, for the scenarios
// whose results are there: query latency against the number of users for
// presenced and each peer (peers.json), and ingest rates against the raw
// NATS rates (ingest.json, with the peers' load rates from peers.json).
func Charts(dir string) error {
	var drew int
	var peers struct{ Data PeersData }
	switch err := readJSON(filepath.Join(dir, "peers.json"), &peers); {
	case err == nil:
		for _, class := range []string{"a", "b", "c", "all"} {
			if err := latencyChart(&peers.Data, class, filepath.Join(dir, "peers_latency_"+class+".png")); err != nil {
				return err
			}
			drew++
		}
	case !errors.Is(err, os.ErrNotExist):
		return err
	}
	var ing struct{ Data IngestData }
	switch err := readJSON(filepath.Join(dir, "ingest.json"), &ing); {
	case err == nil:
		if err := ingestChart(&ing.Data, &peers.Data, filepath.Join(dir, "ingest_rates.png")); err != nil {
			return err
		}
		drew++
	case !errors.Is(err, os.ErrNotExist):
		return err
	}
	if drew == 0 {
		return fmt.Errorf("charts: no peers.json or ingest.json in %s", dir)
	}
	return nil
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// latencyChart plots p50 per query against users, log-log, one line per
// system.
func latencyChart(d *PeersData, class, path string) error {
	p := plot.New()
	if class == "all" {
		p.Title.Text = "connectedUsersIndicator, all filter classes: p50 per query"
	} else {
		p.Title.Text = "connectedUsersIndicator, filter class " + class + ": p50 per query"
	}
	p.X.Label.Text = "users"
	p.Y.Label.Text = "µs per query (log)"
	p.X.Scale, p.Y.Scale = plot.LogScale{}, plot.LogScale{}
	p.X.Tick.Marker, p.Y.Tick.Marker = plot.LogTicks{Prec: -1}, plot.LogTicks{Prec: -1}
	p.Legend.Top, p.Legend.Left = true, true
	p.Add(plotter.NewGrid())
	for i, sys := range d.systems() {
		var xys plotter.XYs
		for _, pt := range d.Points {
			if pt.System == sys && pt.Class == class && pt.Latency.P50 > 0 {
				xys = append(xys, plotter.XY{X: float64(pt.Users), Y: pt.Latency.P50})
			}
		}
		if len(xys) == 0 {
			continue
		}
		l, s, err := plotter.NewLinePoints(xys)
		if err != nil {
			return err
		}
		l.Color, s.Color = plotutil.Color(i), plotutil.Color(i)
		l.Width = vg.Points(1.5)
		s.Shape = plotutil.Shape(i)
		p.Add(l, s)
		p.Legend.Add(sys, l, s)
	}
	return p.Save(7*vg.Inch, 4.5*vg.Inch, path)
}

// ingestChart draws the rates as bars: the raw NATS limits beside the
// engine, and the peers' load rates at their middle size.
func ingestChart(d *IngestData, peers *PeersData, path string) error {
	names := []string{"raw ordered\nconsumer", "presenced\ncatch-up", "raw ordered,\nlive events", "presenced\nlive"}
	vals := plotter.Values{Median(d.RawOrdered), Median(d.EngineCatch), Median(d.RawOrdLive), Median(d.EngineLive)}
	colors := []color.Color{plotutil.Color(1), plotutil.Color(0), plotutil.Color(1), plotutil.Color(0)}
	if len(peers.Loads) > 0 {
		sizes := map[int]bool{}
		var order []int
		for _, l := range peers.Loads {
			if !sizes[l.Users] {
				sizes[l.Users] = true
				order = append(order, l.Users)
			}
		}
		mid := order[len(order)/2]
		for _, l := range peers.Loads {
			if l.Users == mid && l.System != SysEngine {
				names = append(names, fmt.Sprintf("%s\nload, %dk users", short(l.System), mid/1000))
				vals = append(vals, l.Rate)
				colors = append(colors, plotutil.Color(2))
			}
		}
	}
	p := plot.New()
	p.Title.Text = fmt.Sprintf("Ingest: events/s (%d events from the stream; %d live)", d.Events, d.LiveEvents)
	p.Y.Label.Text = "events/s"
	p.Add(plotter.NewGrid())
	w := vg.Points(28)
	for i, v := range vals {
		one := make(plotter.Values, len(vals))
		one[i] = v
		b, err := plotter.NewBarChart(one, w)
		if err != nil {
			return err
		}
		b.Color = colors[i]
		b.LineStyle.Width = 0
		p.Add(b)
	}
	p.NominalX(names...)
	p.X.Tick.Label.Font.Size = vg.Points(8)
	return p.Save(9*vg.Inch, 4.5*vg.Inch, path)
}

func short(sys string) string {
	switch sys {
	case SysHTTP:
		return "presenced via NATS"
	case "Redis (Lua)":
		return "Redis"
	}
	return sys
}
