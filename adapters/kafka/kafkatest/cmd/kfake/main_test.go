package main

import (
	"bufio"
	"context"
	"io"
	"net"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestRunPrintsAddressesAndServes(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-port", "0", "-brokers", "2", "-topics", "a:4,b"}, pw)
		pw.Close()
	}()
	sc := bufio.NewScanner(pr)
	for i := 0; i < 2; i++ {
		if !sc.Scan() {
			t.Fatalf("no address line %d: %v", i, sc.Err())
		}
		conn, err := net.DialTimeout("tcp", sc.Text(), 5*time.Second)
		if err != nil {
			t.Fatalf("dial %s: %v", sc.Text(), err)
		}
		conn.Close()
	}
	cancel()
	go io.Copy(io.Discard, pr)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestBadFlags(t *testing.T) {
	for _, args := range [][]string{{"-brokers", "0"}, {"-topics", "x:0"}, {"-partitions", "0"}, {"-nope"}} {
		if err := run(context.Background(), append(args, "-port", "0"), io.Discard); err == nil {
			t.Errorf("run(%v) succeeded", args)
		}
	}
}
