package api

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/presenced/presenced/engine"
	"github.com/presenced/presenced/presence"
)

// TestFollowThrottle checks the throttle of contract 6.2 on a fake clock:
// the first value at once; a change after a quiet interval at once; changes
// inside the interval held and the latest sent when it ends; nothing when
// the value came back to the one sent; a value not sent starts no interval;
// 0 sends every change.
func TestFollowThrottle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e, err := engine.New(engine.Config{})
		if err != nil {
			t.Fatal(err)
		}
		ts := int64(1)
		login := func(user string) {
			ts++
			e.Apply("acme", &presence.Event{Type: presence.Login, UserID: user, TS: ts, Fields: presence.HasTS})
		}
		logout := func(user string) {
			ts++
			e.Apply("acme", &presence.Event{Type: presence.Logout, UserID: user, TS: ts, Fields: presence.HasTS})
		}

		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		w := e.Watch("acme", &engine.Filter{})
		defer w.Close()
		out := make(chan *indicatorResolver)
		acks := make(chan sent, 1)
		const interval = time.Second
		go follow(ctx, localWatch{w}, interval, out, acks)

		start := time.Now()
		type push struct {
			at        time.Duration
			connected int64
		}
		var got []push
		// take receives what follow hands over by now, and acknowledges
		// it as sent (or, with skip, as not sent).
		take := func(skip bool) {
			t.Helper()
			synctest.Wait()
			select {
			case r := <-out:
				got = append(got, push{time.Since(start), int64(r.ConnectedUsersCount)})
				a := sent{at: time.Now()}
				if skip {
					a = sent{}
				}
				acks <- a
			default:
			}
		}
		expect := func(want ...push) {
			t.Helper()
			if len(got) != len(want) {
				t.Fatalf("pushes %v, want %v", got, want)
			}
			for i := range want {
				if got[i] != want[i] {
					t.Fatalf("pushes %v, want %v", got, want)
				}
			}
		}
		sleep := func(d time.Duration) { time.Sleep(d); take(false) }

		take(false) // the first value, at once
		expect(push{0, 0})

		sleep(200 * time.Millisecond)
		login("a") // inside the interval: held
		sleep(300 * time.Millisecond)
		login("b") // still inside: the latest wins
		sleep(400 * time.Millisecond)
		expect(push{0, 0})
		sleep(100 * time.Millisecond) // the interval ends at 1 s: the latest goes
		expect(push{0, 0}, push{time.Second, 2})

		sleep(3 * time.Second) // quiet
		login("c")             // after a quiet interval: at once
		take(false)
		expect(push{0, 0}, push{time.Second, 2}, push{4 * time.Second, 3})

		sleep(100 * time.Millisecond)
		login("d")
		logout("d") // back to what was sent: nothing at the end of the interval
		sleep(2 * time.Second)
		expect(push{0, 0}, push{time.Second, 2}, push{4 * time.Second, 3})

		// A value the client would not see differently is not sent and
		// starts no interval: the next change goes at once.
		login("e")
		take(true)
		login("f")
		take(false)
		if n := len(got); n != 5 || got[4] != (push{6100 * time.Millisecond, 5}) {
			t.Fatalf("pushes %v", got)
		}
		cancel()
		synctest.Wait()
	})

	t.Run("again", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			e, _ := engine.New(engine.Config{})
			w := e.Watch("acme", &engine.Filter{})
			defer w.Close()
			out, acks := make(chan *indicatorResolver), make(chan sent, 1)
			go follow(t.Context(), localWatch{w}, time.Second, out, acks)
			<-out
			acks <- sent{again: true} // the value could not be sent: the same again, at once
			synctest.Wait()
			select {
			case r := <-out:
				if r.ConnectedUsersCount != 0 {
					t.Fatalf("again: %+v", *r)
				}
			default:
				t.Fatal("again: no value")
			}
			acks <- sent{at: time.Now()}
			synctest.Wait()
			select {
			case r := <-out:
				t.Fatalf("unchanged value sent twice: %+v", *r)
			default:
			}
		})
	})

	t.Run("zero interval", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			e, _ := engine.New(engine.Config{})
			w := e.Watch("acme", &engine.Filter{})
			defer w.Close()
			out, acks := make(chan *indicatorResolver), make(chan sent, 1)
			go follow(t.Context(), localWatch{w}, 0, out, acks)
			for i := range 5 {
				synctest.Wait()
				r := <-out
				if r.ConnectedUsersCount != int32(i) {
					t.Fatalf("push %d: %d connected", i, r.ConnectedUsersCount)
				}
				acks <- sent{at: time.Now()}
				time.Sleep(time.Millisecond)
				e.Apply("acme", &presence.Event{Type: presence.Login, UserID: string(rune('a' + i)), TS: int64(i + 1), Fields: presence.HasTS})
			}
		})
	})
}
