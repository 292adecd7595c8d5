package nats_test

func runCrashConsumer() int { return 2 }
