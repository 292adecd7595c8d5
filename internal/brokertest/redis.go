package brokertest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
)

// RedisOption configures Redis.
type RedisOption func(*redisConfig)

type redisConfig struct {
	aof bool
}

// RedisAOF turns on the append-only file with appendfsync always, so that a
// Stop, Kill or Restart loses no acknowledged write. Without it the broker
// persists nothing (like Debian's packaged configuration, save "" and
// appendonly no): a restart starts empty.
func RedisAOF() RedisOption { return func(c *redisConfig) { c.aof = true } }

// Redis starts a private redis-server (the Debian package redis-server) on a
// free loopback port with its own data directory and returns once it answers
// PING. It skips t when redis-server is not installed (fails it with
// RequireEnv set). With REDIS_ADDR set (host:port) it returns that broker as
// External instead; options are then ignored.
func Redis(t testing.TB, opts ...RedisOption) *Broker {
	t.Helper()
	if addr := os.Getenv("REDIS_ADDR"); addr != "" {
		return &Broker{kind: "redis", addr: addr, url: "redis://" + addr + "/0", external: true}
	}
	var cfg redisConfig
	for _, o := range opts {
		o(&cfg)
	}
	bin := findProgram("redis-server")
	if bin == "" {
		missing(t, "redis-server (Debian package redis-server)")
	}
	dir := newDir(t, "redis")
	port := freePorts(t, 1)[0]
	addr := "127.0.0.1:" + strconv.Itoa(port)
	conf := fmt.Sprintf(`bind 127.0.0.1
port %d
protected-mode no
daemonize no
dir %s
logfile ""
save ""
`, port, dir)
	if cfg.aof {
		conf += "appendonly yes\nappendfsync always\n"
	} else {
		conf += "appendonly no\n"
	}
	confPath := filepath.Join(dir, "redis.conf")
	writeFile(t, confPath, conf, 0o644)
	b := &Broker{
		kind:        "redis",
		addr:        addr,
		url:         "redis://" + addr + "/0",
		dir:         dir,
		logPath:     filepath.Join(dir, "broker.log"),
		deathSignal: syscall.SIGKILL,
		command:     func() *exec.Cmd { return exec.Command(bin, confPath) },
		// PING answers -LOADING while an AOF is replayed; +PONG once ready.
		ready: func() error { return probe(addr, []byte("PING\r\n"), []byte("+PONG")) },
	}
	b.launch(t)
	return b
}
