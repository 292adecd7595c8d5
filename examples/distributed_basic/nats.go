package main

import (
	"fmt"

	"github.com/eventstream-go/eventstream"
	"github.com/eventstream-go/eventstream/adapters/nats"
	"github.com/eventstream-go/eventstream/adapters/nats/natstest"
)

// newNATSAdapter returns the NATS JetStream adapter for url; with an empty
// url it starts an embedded JetStream server (natstest) first, which the
// returned adapter's Close shuts down.
func newNATSAdapter(url string) (eventstream.MQAdapter, error) {
	if url != "" {
		fmt.Println("using NATS at", url)
		return nats.NewAdapter(nats.Config{URL: url})
	}
	srv, err := natstest.Start(natstest.Options{})
	if err != nil {
		return nil, fmt.Errorf("starting the embedded NATS server: %w", err)
	}
	fmt.Println("no NATS URL given: started an embedded JetStream server at", srv.URL())
	a, err := nats.NewAdapter(nats.Config{URL: srv.URL()})
	if err != nil {
		srv.Close()
		return nil, err
	}
	return &embeddedNATS{Adapter: a, srv: srv}, nil
}

// embeddedNATS is an adapter that owns its embedded server.
type embeddedNATS struct {
	*nats.Adapter
	srv *natstest.Server
}

// Close closes the adapter, then the server.
func (e *embeddedNATS) Close() error {
	err := e.Adapter.Close()
	e.srv.Close()
	return err
}
