# Developer entry points. CI runs .ci/run, which calls the same commands.
GO ?= go

.PHONY: test brokers bench bench-report bench-report-kafka lint examples ci

test:
	$(GO) test -race -count=1 ./...

# Installs the brokers the tests start (apt packages, Kafka jars under .build/).
brokers:
	bash scripts/install-brokers

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

bench-report:
	cd bench && $(GO) run ./cmd/report -out ../docs/benchmarks.md

# Adds the real-Apache-Kafka block to docs/benchmarks.md (needs make brokers).
bench-report-kafka:
	$(GO) run ./internal/brokertest/cmd/kafka-up -- sh -c 'cd bench && $(GO) run ./cmd/report -real-kafka -brokers {brokers} -broker-pid {pid} -broker-info "Apache Kafka {version} (KRaft, 1 node, internal/brokertest)" -out ../docs/benchmarks.md'

lint:
	test -z "$$(gofmt -l $$(git ls-files '*.go'))"
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

examples:
	@for ex in examples/*/; do [ -f $$ex/main.go ] || continue; echo "--- $$ex"; $(GO) run ./$$ex || exit 1; done

ci:
	bash .ci/run
