package natstest_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/eventstream-go/eventstream/adapters/nats/natstest"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestRestartKeepsStore: a message stored before Restart is still there
// after it, on the same URL; Close removes the temporary store.
func TestRestartKeepsStore(t *testing.T) {
	srv, err := natstest.Start(natstest.Options{MaxPayload: 4 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	url := srv.URL()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	nc, err := natsgo.Connect(url, natsgo.MaxReconnects(-1), natsgo.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if got := nc.MaxPayload(); got != 4<<20 {
		t.Errorf("MaxPayload = %d, want %d", got, 4<<20)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "S", Subjects: []string{"s"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "s", []byte("kept")); err != nil {
		t.Fatal(err)
	}

	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	if srv.URL() != url {
		t.Errorf("URL after Restart = %s, want %s", srv.URL(), url)
	}
	if srv.Server() == nil {
		t.Fatal("Server() is nil while running")
	}
	s, err := js.Stream(ctx, "S")
	if err != nil {
		t.Fatalf("stream after restart: %v", err)
	}
	m, err := s.GetMsg(ctx, 1)
	if err != nil || string(m.Data) != "kept" {
		t.Fatalf("message after restart: %v %q", err, m.Data)
	}

	srv.Stop()
	if srv.Server() != nil {
		t.Error("Server() is not nil after Stop")
	}
	dir := srv.StoreDir()
	nc.Close()
	srv.Close()
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("store %s still there after Close: %v", dir, err)
	}
	if err := srv.Restart(); err == nil {
		t.Error("Restart after Close succeeded")
	}
}

// TestNewServer: the testing.TB form cleans up by itself.
func TestNewServer(t *testing.T) {
	srv := natstest.NewServer(t, natstest.Options{})
	nc, err := natsgo.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if !nc.IsConnected() {
		t.Fatal("not connected")
	}
}
