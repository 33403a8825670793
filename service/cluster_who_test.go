package service_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"testing"

	"github.com/presenced/presenced/engine"
	"github.com/presenced/presenced/internal/oracle"
	"github.com/presenced/presenced/internal/testenv"
)

// TestClusterConnectedUsers runs two instances on one NATS server, each
// tenant's partition held by one of them only, and checks that
// connectedUsers of a tenant held elsewhere is forwarded: both instances
// answer every page byte for byte alike, as the oracle lists the users,
// and a cursor of one instance reads the next page on the other.
func TestClusterConnectedUsers(t *testing.T) {
	url, js := testenv.StartJetStream(t)
	var addrs []string
	for _, name := range []string{"a", "b"} {
		cfg := testConfig(t.TempDir())
		cfg.NATSURL, cfg.NATSListen = url, ""
		cfg.Partitions, cfg.Copies, cfg.Instance = clusterPartitions, 1, name
		addrs = append(addrs, start(t, cfg).HTTPAddr())
	}

	r := rand.New(rand.NewPCG(81, 82))
	const users = 30
	events := oracle.Events(r, clusterTenants, users, 6, 20)
	publishRetrying(t, js, events)
	truth := oracle.State(events)

	// page asks one page of the tenant's users at addr, the filter's
	// variables and first 7, and returns the answer and the next cursor.
	page := func(addr, tenant string, vars map[string]any) ([]byte, *string) {
		var body []byte
		testenv.WaitFor(t, addr+" to answer connectedUsers of "+tenant, func() bool {
			var code int
			code, body = post(t, addr, tenant, testenv.UsersQuery, vars)
			return code == http.StatusOK && !bytes.Contains(body, []byte(`"errors"`))
		})
		var resp struct {
			Data struct {
				ConnectedUsers struct {
					PageInfo struct{ EndCursor *string }
				}
			}
		}
		if err := json.Unmarshal(body, &resp); err != nil {
			t.Fatal(err)
		}
		return body, resp.Data.ConnectedUsers.PageInfo.EndCursor
	}
	ids := func(body []byte) []string {
		var resp struct {
			Data struct {
				ConnectedUsers struct {
					Edges []struct{ Node struct{ UserID string } }
				}
			}
		}
		if err := json.Unmarshal(body, &resp); err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, e := range resp.Data.ConnectedUsers.Edges {
			out = append(out, e.Node.UserID)
		}
		return out
	}

	filters := []*engine.Filter{{}, oracle.RandomFilter(r, oracle.ClassC, users)}
	for _, tn := range clusterTenants {
		for _, f := range filters {
			var want []string
			for _, u := range oracle.Users(truth[tn], f, engine.ByConnectedAt) {
				want = append(want, u.UserID)
			}
			// Until every event is applied: the first page as the oracle's.
			vars := map[string]any{"f": testenv.FilterInput(f), "first": 7, "order": "CONNECTED_AT"}
			testenv.WaitFor(t, "the oracle's first page of "+tn, func() bool {
				body, _ := page(addrs[0], tn, vars)
				return fmt.Sprint(ids(body)) == fmt.Sprint(want[:min(7, len(want))])
			})
			var got []string
			for k := 0; ; k++ {
				// Pages alternate between the instances: one of them
				// forwards, and reads the other's cursor.
				body, next := page(addrs[k%2], tn, vars)
				other, _ := page(addrs[(k+1)%2], tn, vars)
				if !bytes.Equal(body, other) {
					t.Fatalf("tenant %s: %s answered %s, %s %s", tn, addrs[k%2], body, addrs[(k+1)%2], other)
				}
				got = append(got, ids(body)...)
				if next == nil || len(got) == len(want) {
					break
				}
				vars["after"] = *next
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("tenant %s filter %+v: %v, want %v", tn, *f, got, want)
			}
		}
	}
	forwarded := 0.0
	for _, addr := range addrs {
		forwarded += metric(t, addr, `presence_forwarded_requests_total{result="ok"}`)
	}
	t.Logf("%v requests forwarded", forwarded)
	if forwarded == 0 {
		t.Fatal("no request was forwarded: the test proves nothing")
	}
}
