package api

import (
	"math"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/presenced/presenced/engine"
)

// TestConfigDefaults checks that withDefaults fills every zero field with
// its named default and keeps what is set, bad values included.
func TestConfigDefaults(t *testing.T) {
	c := Config{}.withDefaults()
	if c.RateLimit != rate.Inf || c.RateBurst != maxDefaultBurst || c.QueryTimeout != DefaultQueryTimeout ||
		c.InitTimeout != DefaultInitTimeout || c.SocketWriteTimeout != DefaultSocketWriteTimeout ||
		c.HistoryInterval != DefaultHistoryInterval || c.HistoryWindow != DefaultHistoryWindow ||
		c.SubscriptionsPerSocket != DefaultSubscriptionsPerSocket || c.SubscriptionsPerClient != DefaultSubscriptionsPerClient ||
		c.Ready == nil || !c.Ready() || c.Registry == nil || c.Logger == nil {
		t.Errorf("defaults: %+v", c)
	}
	for _, tc := range []struct {
		limit rate.Limit
		burst int
	}{{0.1, 1}, {1, 1}, {2.5, 3}, {300, 300}, {math.MaxFloat64, maxDefaultBurst}} {
		if got := (Config{RateLimit: tc.limit}).withDefaults().RateBurst; got != tc.burst {
			t.Errorf("RateLimit %v: RateBurst %d, want %d", tc.limit, got, tc.burst)
		}
	}
	set := Config{RateLimit: 7, RateBurst: 3, QueryTimeout: -time.Second, SubscriptionsPerSocket: -2}.withDefaults()
	if set.RateLimit != 7 || set.RateBurst != 3 || set.QueryTimeout != -time.Second || set.SubscriptionsPerSocket != -2 {
		t.Errorf("set fields changed: %+v", set)
	}
}

// TestConfigValidateOrder checks that validate names the first field, in
// the order of Config, when several break their rule.
func TestConfigValidateOrder(t *testing.T) {
	c := Config{Engine: nil, RateLimit: -1, SubscriptionsPerClient: -1}.withDefaults()
	for _, want := range []string{"Engine", "RateLimit", "SubscriptionsPerClient", ""} {
		err := c.validate()
		ce, _ := err.(*ConfigError)
		switch {
		case want == "" && err != nil:
			t.Fatalf("valid config: %v", err)
		case want != "" && (ce == nil || ce.Field != want):
			t.Fatalf("err = %v, want Config.%s", err, want)
		}
		switch want {
		case "Engine":
			e, err := engine.New(engine.Config{})
			if err != nil {
				t.Fatal(err)
			}
			c.Engine = e
		case "RateLimit":
			c.RateLimit = 1
		case "SubscriptionsPerClient":
			c.SubscriptionsPerClient = 1
		}
	}
}
