package service_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/presenced/presenced/engine"
	"github.com/presenced/presenced/internal/oracle"
	"github.com/presenced/presenced/internal/testenv"
	"github.com/presenced/presenced/presence"
)

// chromiumPath is where Debian's chromium package puts the browser.
const chromiumPath = "/usr/bin/chromium"

// browser starts a headless Chromium for the test, with a new empty profile,
// and returns a chromedp context of one tab.
func browser(t *testing.T) context.Context {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		// CI installs it (.ci/run): there, a missing browser is a failure,
		// not a test gone quietly.
		if os.Getenv("CI") == "true" {
			t.Fatalf("no browser at %s under CI=true: apt-get install -y chromium", chromiumPath)
		}
		t.Skipf("no browser at %s (apt-get install -y chromium): the pages are not tested in a browser", chromiumPath)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox, // as root, in CI
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1440, 1000),
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	// Start the browser on this context, which has no deadline: the
	// browser lives as long as the context of the first call.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting %s: %v", chromiumPath, err)
	}
	return ctx
}

// pageNumbers is what the dashboard shows of the indicator, read from the
// data-value attributes that its script sets next to the formatted text.
const pageNumbers = `(() => {
  const v = id => document.getElementById(id).getAttribute('data-value');
  return {connected: v('connected'), available: v('available'), busy: v('busy'), toggleOff: v('toggleOff'),
    maxAvg: v('maxAvg'), currentAvg: v('currentAvg'), occupancyRate: v('occupancyRate')};
})()`

// shown turns pageNumbers into the API's shape; false while the page shows
// no value yet.
func shown(t *testing.T, raw map[string]*string) (oracle.Indicator, bool) {
	t.Helper()
	for _, v := range raw {
		if v == nil {
			return oracle.Indicator{}, false
		}
	}
	f := func(k string) float64 {
		v, err := strconv.ParseFloat(*raw[k], 64)
		if err != nil {
			t.Fatalf("%s: %v", k, err)
		}
		return v
	}
	var j oracle.Indicator
	j.ConnectedUsersCount = int64(f("connected"))
	j.CountByChatAvailabilityStatus.Available = int64(f("available"))
	j.CountByChatAvailabilityStatus.Busy = int64(f("busy"))
	j.CountByChatAvailabilityStatus.ToggleOff = int64(f("toggleOff"))
	j.UsersInProductionChatOccupancy.MaximumSimultaneousConversationAverage = f("maxAvg")
	j.UsersInProductionChatOccupancy.SimultaneousConversationAverage = f("currentAvg")
	j.UsersInProductionChatOccupancy.OccupancyRate = f("occupancyRate")
	return j, true
}

// TestDashboardInBrowser opens the dashboard of a running service (token
// mode, with events) in headless Chromium, gives it the token it asks for,
// and checks what it shows against the API: the indicator, the breakdown
// table, a filter, a live change, the chart's data. It saves a screenshot
// in the test's temporary directory, and at $PRESENCED_DASHBOARD_PNG when
// set (docs/dashboard.png).
func TestDashboardInBrowser(t *testing.T) {
	ctx := browser(t)
	dir := t.TempDir()
	tokensFile, tokens := writeTokens(t, dir, "acme")
	cfg := testConfig(dir)
	cfg.Tokens = tokensFile
	svc := start(t, cfg)
	addr, token := svc.HTTPAddr(), tokens["acme"]

	r := rand.New(rand.NewPCG(61, 62))
	events := oracle.Events(r, []string{"acme"}, 120, 6, 0)
	nc := natsConnect(t, svc.NATSURL())
	publishEvents(t, nc, events)
	testenv.WaitFor(t, "the events", func() bool { return eventsCounted(t, addr) == len(events) })

	var mu sync.Mutex
	var problems []string
	go func() {
		for m, err := range chromedp.Console(ctx) {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleError || m.Type == chromedp.ConsoleException || m.Type == chromedp.ConsoleWarning {
				mu.Lock()
				problems = append(problems, string(m.Type)+": "+m.Text+" "+m.URL)
				mu.Unlock()
			}
		}
	}()

	began := time.Now()
	step := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		defer func() { t.Logf("%v %s", time.Since(began).Round(time.Millisecond), what) }()
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := chromedp.Do(sctx, actions...); err != nil {
			state, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById('status').outerHTML + ' ' + document.getElementById('error').outerHTML`))
			mu.Lock()
			defer mu.Unlock()
			t.Fatalf("%s: %v\npage: %s\nconsole: %q", what, err, state, problems)
		}
	}
	// until waits for the page to show want.
	until := func(what string, want oracle.Indicator) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			raw, err := chromedp.Run(ctx, chromedp.Evaluate[map[string]*string](pageNumbers))
			if err != nil {
				t.Fatal(err)
			}
			got, ok := shown(t, raw)
			if ok && got == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: the page shows %+v, the API %+v", what, got, want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	type row struct{ Key, Connected string }
	tableRows := func() (string, []row) {
		t.Helper()
		raw, err := chromedp.Run(ctx, chromedp.Evaluate[[]byte](`JSON.stringify({by: document.getElementById('breakdown').getAttribute('data-by'),
		  rows: [...document.querySelectorAll('#breakdown tbody tr[data-key]')].map(tr => ({Key: tr.getAttribute('data-key'), Connected: tr.getAttribute('data-connected')}))})`))
		if err != nil {
			t.Fatal(err)
		}
		var s string
		json.Unmarshal(raw, &s)
		var v struct {
			By   string
			Rows []row
		}
		json.Unmarshal([]byte(s), &v)
		return v.By, v.Rows
	}
	apiRows := func(by string, f *engine.Filter) []row {
		t.Helper()
		vars := variables(f)
		vars["by"] = by
		_, body := graphql(t, addr, token, nil, testenv.BreakdownQuery, vars)
		var resp struct {
			Data struct {
				ConnectedUsersIndicatorBreakdown []struct {
					Key       string
					Indicator oracle.Indicator
				}
			}
		}
		json.Unmarshal(body, &resp)
		out := []row{}
		for _, r := range resp.Data.ConnectedUsersIndicatorBreakdown {
			out = append(out, row{r.Key, strconv.FormatInt(r.Indicator.ConnectedUsersCount, 10)})
		}
		return out
	}
	untilTable := func(by string, f *engine.Filter) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			gotBy, got := tableRows()
			want := apiRows(by, f)
			if gotBy == by && slices.Equal(got, want) {
				if len(want) == 0 {
					t.Fatalf("breakdown by %s: no row: the test proves little", by)
				}
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("breakdown by %s: the page shows %s %v, the API %v", by, gotBy, got, want)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	// The list of users: the page's rows against the API's page.
	type usersShown struct {
		Order, Page, Total string
		Users              []string
		Cells              []string // each row's cells, joined
	}
	shownUsers := func() usersShown {
		t.Helper()
		raw, err := chromedp.Run(ctx, chromedp.Evaluate[string](`JSON.stringify({
		  Order: document.getElementById('users').getAttribute('data-order') || '',
		  Page: document.getElementById('users').getAttribute('data-page') || '',
		  Total: document.getElementById('users').getAttribute('data-total') || '',
		  Users: [...document.querySelectorAll('#users tbody tr[data-user]')].map(tr => tr.getAttribute('data-user')),
		  Cells: [...document.querySelectorAll('#users tbody tr[data-user]')].map(tr => [...tr.cells].map(c => c.textContent).join(' | '))})`))
		if err != nil {
			t.Fatal(err)
		}
		var v usersShown
		json.Unmarshal([]byte(raw), &v)
		return v
	}
	// apiUsers asks the API for page (0-based) of 20 in order.
	apiUsers := func(f *engine.Filter, order string, page int) (total string, ids []string) {
		t.Helper()
		vars := variables(f)
		vars["first"], vars["order"] = 20, order
		for k := 0; ; k++ {
			_, body := graphql(t, addr, token, nil, testenv.UsersQuery, vars)
			var resp struct {
				Data struct {
					ConnectedUsers struct {
						TotalCount int
						Edges      []struct{ Node struct{ UserID string } }
						PageInfo   struct{ EndCursor *string }
					}
				}
			}
			json.Unmarshal(body, &resp)
			c := resp.Data.ConnectedUsers
			if k == page {
				for _, e := range c.Edges {
					ids = append(ids, e.Node.UserID)
				}
				return strconv.Itoa(c.TotalCount), ids
			}
			if c.PageInfo.EndCursor == nil {
				return strconv.Itoa(c.TotalCount), nil
			}
			vars["after"] = *c.PageInfo.EndCursor
		}
	}
	untilUsers := func(f *engine.Filter, order string, page int) usersShown {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			got := shownUsers()
			total, ids := apiUsers(f, order, page)
			if got.Order == order && got.Page == strconv.Itoa(page) && got.Total == total && slices.Equal(got.Users, ids) {
				if len(ids) == 0 {
					t.Fatalf("users by %s, page %d: none: the test proves little", order, page)
				}
				return got
			}
			if time.Now().After(deadline) {
				t.Fatalf("users by %s, page %d: the page shows %+v, the API %s %v", order, page, got, total, ids)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	clickUsers := func(what, css string) {
		t.Helper()
		step(what, chromedp.Click(chromedp.CSS(css)))
	}
	setOrder := func(order string) {
		t.Helper()
		step("order by "+order, chromedp.SetValue(chromedp.CSS("#order"), order),
			chromedp.Evaluate[chromedp.Void](`document.getElementById('order').dispatchEvent(new Event('change'))`))
	}
	// inStatus is how the page writes a time in status.
	inStatus := regexp.MustCompile(`^(\d+ s|\d+ min|\d+ h \d\d|\d+ d|never set)$`)

	// The page asks for the token; once given, it goes live.
	step("open the dashboard", chromedp.Navigate("http://"+addr+"/"), chromedp.WaitVisible(chromedp.CSS("#login-token")))
	step("give the token",
		chromedp.SendKeys(chromedp.CSS("#login-token"), token),
		chromedp.Click(chromedp.CSS("#login button")),
		chromedp.Poll[chromedp.Void](`document.getElementById('status').getAttribute('data-state') === 'live'`))
	truth := oracle.State(events)["acme"]
	until("all users", oracle.Answer(truth, &engine.Filter{}))
	untilTable("GROUP", &engine.Filter{})
	untilUsers(&engine.Filter{}, "USER_ID", 0)
	clickUsers("the next page of users", "#users-next")
	untilUsers(&engine.Filter{}, "USER_ID", 1)
	clickUsers("back to the first page", "#users-prev")
	untilUsers(&engine.Filter{}, "USER_ID", 0)
	setOrder("CONNECTED_AT")
	list := untilUsers(&engine.Filter{}, "CONNECTED_AT", 0)
	for _, row := range list.Cells {
		cells := strings.Split(row, " | ")
		_, status, _ := strings.Cut(cells[2], " · ")
		if len(cells) != 6 || !inStatus.MatchString(status) || !inStatus.MatchString(cells[5]) {
			t.Fatalf("a row of the list: %q", row)
		}
	}
	step("the chart's data", chromedp.Poll[chromedp.Void](`document.getElementById('chart').hasAttribute('data-samples')`))
	if stored, err := chromedp.Run(ctx, chromedp.Evaluate[string](`localStorage.getItem('presenced.token')`)); err != nil || stored != token {
		t.Errorf("the token is not kept in localStorage: %q %v", stored, err)
	}

	// A live change: pushed, not polled.
	before, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.getAttribute('data-updates')`))
	more := []oracle.Delivered{}
	ts := time.Now().UnixNano()
	for i := range 7 {
		ev := presence.Event{Type: presence.Login, UserID: fmt.Sprint("late", i), TS: ts, Fields: presence.HasTS |
			presence.HasRole | presence.HasGroups | presence.HasChat | presence.HasMaxSlots | presence.HasCurrentSlots,
			Role: presence.Operator, GroupIDs: []string{"g1", "live"}, Chat: presence.Busy, MaxSlots: 4, CurrentSlots: uint16(i % 5)}
		more = append(more, oracle.Delivered{Tenant: "acme", Ev: ev})
	}
	counted := eventsCounted(t, addr)
	publishEvents(t, nc, more)
	// The API's answer is the expectation only once every login is applied.
	testenv.WaitFor(t, "the late logins", func() bool { return eventsCounted(t, addr) == counted+len(more) })
	truth = oracle.State(append(events, more...))["acme"]
	until("after more logins", oracle.Answer(truth, &engine.Filter{}))
	untilTable("GROUP", &engine.Filter{})
	// The late logins connected last: the last page by CONNECTED_AT, there
	// for seconds.
	setOrder("CONNECTED_AT")
	total, _ := apiUsers(&engine.Filter{}, "CONNECTED_AT", 0)
	n, _ := strconv.Atoi(total)
	for page := 0; ; page++ {
		list = untilUsers(&engine.Filter{}, "CONNECTED_AT", page)
		if page >= (n-1)/20 {
			break
		}
		clickUsers("the next page of users", "#users-next")
	}
	if last := list.Cells[len(list.Cells)-1]; !strings.HasPrefix(last, "late") || !regexp.MustCompile(`\| \d+ (s|min)$`).MatchString(last) {
		t.Errorf("the last user connected: %q", last)
	}
	after, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.getAttribute('data-updates')`))
	if before == after {
		t.Errorf("data-updates stayed %s: the new numbers did not come from the subscription", before)
	}

	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100) /* 100: PNG */)
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{filepath.Join(t.TempDir(), "dashboard.png"), os.Getenv("PRESENCED_DASHBOARD_PNG")} {
		if path == "" {
			continue
		}
		if err := os.WriteFile(path, shot, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot: %s (%d bytes)", path, len(shot))
	}

	// Filters are controls: roles and a group typed in.
	f := &engine.Filter{Roles: []presence.Role{presence.Operator}, GroupIDs: []string{"g1", "g2"}}
	step("filter", chromedp.Click(chromedp.CSS(`fieldset[data-field="roles"] input[value="OPERATOR"]`)),
		chromedp.SendKeys(chromedp.CSS(`input[data-field="groupIds"]`), "g1, g2"))
	until("operators of g1 or g2", oracle.Answer(truth, f))
	untilTable("GROUP", f)
	untilUsers(f, "CONNECTED_AT", 0)
	step("breakdown by role", chromedp.SetValue(chromedp.CSS("#by"), "ROLE"),
		chromedp.Evaluate[chromedp.Void](`document.getElementById('by').dispatchEvent(new Event('change'))`))
	untilTable("ROLE", f)

	mu.Lock()
	defer mu.Unlock()
	if len(problems) > 0 {
		t.Errorf("the browser console:\n%s", problems)
	}
}

// TestGraphiQLInBrowser opens the GraphiQL page of a running service (open
// mode) in headless Chromium, enters a tenant, writes a query in the editor,
// runs it with the execute button, and reads the answer in the result pane:
// the oracle's, for the events published.
func TestGraphiQLInBrowser(t *testing.T) {
	ctx := browser(t)
	svc := start(t, testConfig(t.TempDir()))
	addr := svc.HTTPAddr()
	r := rand.New(rand.NewPCG(63, 64))
	events := oracle.Events(r, []string{"acme"}, 80, 6, 0)
	publishEvents(t, natsConnect(t, svc.NATSURL()), events)
	testenv.WaitFor(t, "the events", func() bool { return eventsCounted(t, addr) == len(events) })
	f := &engine.Filter{ChatAvailability: []presence.Status{presence.Available, presence.Busy}, GroupIDs: []string{"g1", "g2"}}
	want := oracle.Answer(oracle.State(events)["acme"], f)
	if want.ConnectedUsersCount == 0 {
		t.Fatal("the filter matches nobody: the test proves little")
	}
	// The default document's operation is Indicator: an edit of it, as a
	// user makes one, keeps the name GraphiQL sends as operationName.
	query := `query Indicator { connectedUsersIndicator(filters: {chatAvailability: [AVAILABLE, BUSY], groupIds: ["g1", "g2"]}) {
    connectedUsersCount
    countByChatAvailabilityStatus { available busy toggleOff }
    usersInProductionChatOccupancy { maximumSimultaneousConversationAverage simultaneousConversationAverage occupancyRate }
  }
}`
	do := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := chromedp.Do(sctx, actions...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	do("open GraphiQL", chromedp.Navigate("http://"+addr+"/graphql"),
		chromedp.WaitVisible(chromedp.CSS(".graphiql-query-editor .CodeMirror")))
	do("enter the tenant", chromedp.SendKeys(chromedp.CSS("#cred"), "acme"),
		chromedp.Evaluate[chromedp.Void](`document.getElementById('cred').dispatchEvent(new Event('change'))`),
		chromedp.WaitVisible(chromedp.CSS(".graphiql-query-editor .CodeMirror")))
	// The editor is CodeMirror: typed text would be completed and bracketed
	// as it goes, so the query is set through the editor itself, as a paste.
	do("write the query", chromedp.Evaluate[chromedp.Void](
		`document.querySelector('.graphiql-query-editor .CodeMirror').CodeMirror.setValue(`+strconv.Quote(query)+`)`))
	do("run it", chromedp.Click(chromedp.CSS(".graphiql-execute-button")))

	var answer string
	deadline := time.Now().Add(20 * time.Second)
	for {
		got, err := chromedp.Run(ctx, chromedp.Evaluate[string](
			`(() => { const cm = document.querySelector('.result-window .CodeMirror'); return cm ? cm.CodeMirror.getValue() : ''; })()`))
		if err != nil {
			t.Fatal(err)
		}
		if answer = got; answer != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the result pane stayed empty")
		}
		time.Sleep(50 * time.Millisecond)
	}
	var resp struct {
		Data   struct{ ConnectedUsersIndicator oracle.Indicator }
		Errors []any
	}
	if err := json.Unmarshal([]byte(answer), &resp); err != nil || len(resp.Errors) > 0 {
		t.Fatalf("the result pane shows %s (%v)", answer, err)
	}
	if got := resp.Data.ConnectedUsersIndicator; got != want {
		t.Fatalf("the result pane shows %+v, the oracle %+v", got, want)
	}
}
