// Package redis is an eventstream.MQAdapter for Redis Streams, built on
// github.com/redis/go-redis/v9.
package redis
