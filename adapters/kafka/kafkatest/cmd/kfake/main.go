// Command kfake runs an embedded Kafka-protocol broker (franz-go's kfake) in
// its own process, for benchmarks and manual tests of the Kafka adapter.
//
//	go run ./adapters/kafka/kafkatest/cmd/kfake -port 9092 -topics bench:6
//
// It prints the broker addresses, one per line, on standard output and runs
// until interrupted (SIGINT or SIGTERM). Flags:
//
//	-port N         port of the first broker; the others follow (0: free ports)
//	-brokers N      number of brokers (default 1)
//	-partitions N   partitions of auto-created topics (default 3)
//	-auto-create    create unknown topics on metadata requests (default true)
//	-topics LIST    comma-separated topics to create, each name or name:partitions
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/eventstream-go/eventstream/adapters/kafka/kafkatest"
	"github.com/twmb/franz-go/pkg/kfake"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "kfake:", err)
		os.Exit(1)
	}
}

// run starts the cluster described by args, writes its addresses to out and
// serves until ctx is done.
func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("kfake", flag.ContinueOnError)
	port := fs.Int("port", 9092, "port of the first broker (0 picks free ports)")
	brokers := fs.Int("brokers", 1, "number of brokers")
	partitions := fs.Int("partitions", 3, "partitions of auto-created topics")
	autoCreate := fs.Bool("auto-create", true, "create topics on metadata requests")
	topics := fs.String("topics", "", "comma-separated topics to create up front, each name or name:partitions")
	if err := fs.Parse(args); err != nil {
		return err
	}
	opts, err := options(*port, *brokers, *partitions, *autoCreate, *topics)
	if err != nil {
		return err
	}
	c, err := kafkatest.Start(opts...)
	if err != nil {
		return err
	}
	defer c.Close()
	for _, a := range c.Addrs() {
		if _, err := fmt.Fprintln(out, a); err != nil {
			return err
		}
	}
	<-ctx.Done()
	return nil
}

func options(port, brokers, partitions int, autoCreate bool, topics string) ([]kfake.Opt, error) {
	if brokers < 1 {
		return nil, fmt.Errorf("-brokers must be at least 1")
	}
	if partitions < 1 {
		return nil, fmt.Errorf("-partitions must be at least 1")
	}
	opts := []kfake.Opt{kfake.NumBrokers(brokers), kfake.DefaultNumPartitions(partitions)}
	if port != 0 {
		ports := make([]int, brokers)
		for i := range ports {
			ports[i] = port + i
		}
		opts = append(opts, kfake.Ports(ports...))
	}
	if autoCreate {
		opts = append(opts, kfake.AllowAutoTopicCreation())
	}
	for _, t := range strings.Split(topics, ",") {
		if t = strings.TrimSpace(t); t == "" {
			continue
		}
		name, n := t, -1
		if i := strings.LastIndexByte(t, ':'); i > 0 {
			p, err := strconv.Atoi(t[i+1:])
			if err != nil || p < 1 {
				return nil, fmt.Errorf("bad topic spec %q", t)
			}
			name, n = t[:i], p
		}
		opts = append(opts, kfake.SeedTopics(int32(n), name))
	}
	return opts, nil
}
