package kafka

// KeyPartition exposes the key partitioner to the external tests.
var KeyPartition = keyPartition
