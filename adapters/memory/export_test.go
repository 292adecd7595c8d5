package memory

// PartitionOf exposes the key hash to the tests.
var PartitionOf = partitionOf
