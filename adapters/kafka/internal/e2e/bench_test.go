package e2e_test

func cleanupBench() {}
