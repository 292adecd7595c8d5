package main

import (
	"strings"

	"github.com/eventstream-go/eventstream"
	"github.com/eventstream-go/eventstream/adapters/redis"
)

// newRedisAdapter returns a Redis Streams adapter for url, a redis:// or
// rediss:// URL such as "redis://127.0.0.1:6379/0" (REDIS_URL), or a bare
// "host:port". Streams are bounded to 100,000 entries; trimming never drops
// an entry a consumer group has not acknowledged.
func newRedisAdapter(url string) (eventstream.MQAdapter, error) {
	cfg := redis.Config{MaxLen: 100_000}
	if strings.HasPrefix(url, "redis://") || strings.HasPrefix(url, "rediss://") {
		cfg.URL = url
	} else {
		cfg.Addr = url
	}
	return redis.NewAdapter(cfg)
}
