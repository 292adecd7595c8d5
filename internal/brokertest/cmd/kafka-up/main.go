// Command kafka-up starts a private Apache Kafka (the same one the tests get
// from brokertest.Kafka) and either runs a command against it or waits.
//
//	kafka-up [-version 4.x] [-sasl] [--] command args...
//
// With a command, every "{brokers}" in its arguments is replaced by the
// broker's host:port (KAFKA_BROKERS is set for it too), "{pid}" by the
// broker's process id and "{version}" by its release; Kafka is stopped when
// the command ends and kafka-up exits with the command's status. Without
// one, kafka-up prints the address and runs until interrupted. CI uses it
// to run examples/distributed_basic and bench/cmd/report on real Kafka:
//
//	go run ./internal/brokertest/cmd/kafka-up -- go run ./examples/distributed_basic -brokers '{brokers}'
//
// Install Kafka first with scripts/install-brokers.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/eventstream-go/eventstream/internal/brokertest"
)

func main() {
	version := flag.String("version", "4.x", `Kafka release: "4.x", "3.9.x" or an exact version`)
	sasl := flag.Bool("sasl", false, "add a SASL_PLAINTEXT listener (PLAIN and SCRAM users)")
	flag.Usage = func() {
		fmt.Fprintln(flag.CommandLine.Output(), "usage: kafka-up [-version 4.x] [-sasl] [--] [command args...]")
		flag.PrintDefaults()
	}
	flag.Parse()
	os.Exit(run(*version, *sasl, flag.Args()))
}

func run(version string, sasl bool, args []string) (code int) {
	opts := []brokertest.KafkaOption{brokertest.KafkaVersion(version)}
	if sasl {
		opts = append(opts, brokertest.KafkaSASL())
	}
	logf := func(f string, args ...any) { fmt.Fprintf(os.Stderr, "kafka-up: "+f+"\n", args...) }
	b, stop, err := brokertest.Outside(logf, func(t testing.TB) *brokertest.Broker { return brokertest.Kafka(t, opts...) })
	if err != nil {
		fmt.Fprintln(os.Stderr, "kafka-up:", err)
		return 1
	}
	defer stop()
	fmt.Fprintf(os.Stderr, "kafka-up: Kafka %s ready at %s", b.Version(), b.Addr())
	if b.SASLAddr() != "" {
		fmt.Fprintf(os.Stderr, ", SASL_PLAINTEXT at %s (user %s, password %s)", b.SASLAddr(), brokertest.KafkaSASLUser, brokertest.KafkaSASLPassword)
	}
	fmt.Fprintf(os.Stderr, ", started in %v; data in %s\n", b.StartTime().Round(1e6), b.Dir())

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	if len(args) == 0 {
		fmt.Println(b.Addr())
		<-sigs
		return 0
	}
	for i, a := range args {
		args[i] = strings.NewReplacer("{brokers}", b.Addr(), "{pid}", strconv.Itoa(b.Pid()), "{version}", b.Version()).Replace(a)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), "KAFKA_BROKERS="+b.Addr())
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "kafka-up:", err)
		return 1
	}
	go func() {
		for s := range sigs {
			_ = cmd.Process.Signal(s)
		}
	}()
	err = cmd.Wait()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		fmt.Fprintf(os.Stderr, "kafka-up: %s: %v\n", args[0], err)
		if exit.ExitCode() > 0 {
			return exit.ExitCode()
		}
		return 1
	case err != nil:
		fmt.Fprintln(os.Stderr, "kafka-up:", err)
		return 1
	}
	return 0
}
