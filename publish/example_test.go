package publish_test

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/presenced/presenced/ingest"
	"github.com/presenced/presenced/presence"
	"github.com/presenced/presenced/publish"
)

func Example() {
	ctx := context.Background()

	// A broker for the example. In production: the one presenced embeds or
	// connects to, and the stream it creates at start-up.
	dir, _ := os.MkdirTemp("", "publish-example")
	defer os.RemoveAll(dir)
	srv, url, err := ingest.StartServer(ingest.ServerConfig{Listen: "127.0.0.1:-1", StoreDir: dir})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Shutdown()
	nc, err := nats.Connect(url)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	_, _ = js.CreateStream(ctx, jetstream.StreamConfig{Name: "PRESENCE", Subjects: []string{"presence.*.*"}})

	pub, err := publish.New(js, "")
	if err != nil {
		fmt.Println(err)
		return
	}
	login := presence.Event{
		Type:   presence.Login,
		UserID: "42",
		TS:     time.Now().UnixNano(),
		Fields: presence.HasTS | presence.HasRole | presence.HasChat | presence.HasMaxSlots,
		Role:   presence.Operator,
		Chat:   presence.Available, MaxSlots: 3,
	}
	fmt.Println(pub.Publish(ctx, "acme", &login))

	bad := login
	bad.MaxSlots = 5000
	fmt.Println(pub.Publish(ctx, "acme", &bad))
	// Output:
	// <nil>
	// publish: invalid event: presence: chat.maxSlots: must be an integer from 0 to 1000
}
