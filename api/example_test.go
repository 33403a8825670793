package api_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/presenced/presenced/api"
	"github.com/presenced/presenced/engine"
	"github.com/presenced/presenced/presence"
)

// An API in open mode over an engine with one connected user, queried for
// the tenant "acme".
func ExampleNew() {
	e, _ := engine.New(engine.Config{})
	e.Apply("acme", &presence.Event{
		Type: presence.Login, UserID: "42", TS: time.Now().UnixNano(),
		Fields: presence.HasTS | presence.HasChat | presence.HasMaxSlots | presence.HasCurrentSlots,
		Chat:   presence.Available, MaxSlots: 4, CurrentSlots: 1,
	})

	srv, err := api.New(api.Config{Engine: e}) // no Tokens: open mode
	if err != nil {
		panic(err)
	}
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()

	body := `{"query": "{ connectedUsersIndicator { connectedUsersCount usersInProductionChatOccupancy { occupancyRate } } }"}`
	req, _ := http.NewRequest(http.MethodPost, ts.URL+"/graphql", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Tenant-Id", "acme")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		panic(err)
	}
	defer res.Body.Close()
	answer, _ := io.ReadAll(res.Body)
	fmt.Println(res.StatusCode, string(answer))
	// Output: 200 {"data":{"connectedUsersIndicator":{"connectedUsersCount":1,"usersInProductionChatOccupancy":{"occupancyRate":25}}}}
}

// The tokens-file line of a new token, as `presenced token acme` prints it.
func ExampleTokenLine() {
	token := api.NewToken() // give this to the client
	line, err := api.TokenLine("acme", token)
	if err != nil {
		panic(err)
	}
	fmt.Println(len(token), strings.HasPrefix(line, "acme "), len(line))
	// Output: 43 true 69
}
