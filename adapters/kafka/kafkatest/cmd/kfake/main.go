// Command kfake runs an embedded Kafka-protocol broker (franz-go's kfake) in
// its own process, for benchmarks and manual tests of the Kafka adapter.
//
//	go run ./adapters/kafka/kafkatest/cmd/kfake -port 9092 -topics bench:6
//
// It prints the broker addresses, one per line, on standard output and runs
// until interrupted (SIGINT or SIGTERM).
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/eventstream-go/eventstream/adapters/kafka/kafkatest"
	"github.com/twmb/franz-go/pkg/kfake"
)

func main() {
	port := flag.Int("port", 9092, "port of the first broker (0 picks free ports)")
	brokers := flag.Int("brokers", 1, "number of brokers")
	partitions := flag.Int("partitions", 3, "partitions of auto-created topics")
	autoCreate := flag.Bool("auto-create", true, "create topics on metadata requests")
	topics := flag.String("topics", "", "comma-separated topics to create up front, each name or name:partitions")
	flag.Parse()

	if err := run(*port, *brokers, *partitions, *autoCreate, *topics); err != nil {
		fmt.Fprintln(os.Stderr, "kfake:", err)
		os.Exit(1)
	}
}

func run(port, brokers, partitions int, autoCreate bool, topics string) error {
	if brokers < 1 {
		return fmt.Errorf("-brokers must be at least 1")
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
				return fmt.Errorf("bad topic spec %q", t)
			}
			name, n = t[:i], p
		}
		opts = append(opts, kfake.SeedTopics(int32(n), name))
	}
	c, err := kafkatest.Start(opts...)
	if err != nil {
		return err
	}
	defer c.Close()
	for _, a := range c.Addrs() {
		fmt.Println(a)
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	<-sigs
	return nil
}
