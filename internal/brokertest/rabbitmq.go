package brokertest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// rabbitDir is where Debian's rabbitmq-server package keeps the real scripts;
// /usr/sbin/rabbitmq-server and rabbitmqctl are wrappers that switch to the
// rabbitmq user and the system node's directories.
const rabbitDir = "/usr/lib/rabbitmq/bin"

// RabbitMQ starts a private RabbitMQ node (the Debian package
// rabbitmq-server) and returns once a guest AMQP connection can open a
// channel. The node has a unique name (brokertest-<random>@localhost), free
// loopback AMQP and distribution ports, its own Mnesia, log, config and
// enabled-plugins files (no plugins), and an Erlang cookie in a private
// HOME; it registers with the machine's shared epmd (started by Erlang if
// none runs), which is shared by node name only. User guest/guest may log
// in from 127.0.0.1. Use Ctl to run rabbitmqctl against it. It skips t when
// rabbitmq-server is not installed (fails it with RequireEnv set). With
// RABBITMQ_URL set it returns that broker as External instead.
func RabbitMQ(t testing.TB) *Broker {
	t.Helper()
	if u := os.Getenv("RABBITMQ_URL"); u != "" {
		return &Broker{kind: "rabbitmq", addr: hostPort(u), url: u, external: true}
	}
	server := findProgram("rabbitmq-server", filepath.Join(rabbitDir, "rabbitmq-server"))
	ctl := findProgram("rabbitmqctl", filepath.Join(rabbitDir, "rabbitmqctl"))
	if server == "" || ctl == "" || findProgram("erl") == "" {
		missing(t, "rabbitmq-server (Debian package rabbitmq-server)")
	}
	dir := newDir(t, "rabbitmq")
	ports := freePorts(t, 2)
	port, distPort := ports[0], ports[1]
	addr := "127.0.0.1:" + strconv.Itoa(port)
	url := "amqp://guest:guest@" + addr + "/"
	node := "brokertest-" + randomHex(t, 6) + "@localhost"

	home := filepath.Join(dir, "home")
	for _, d := range []string{home, filepath.Join(dir, "mnesia"), filepath.Join(dir, "log")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatalf("brokertest: %v", err)
		}
	}
	writeFile(t, filepath.Join(home, ".erlang.cookie"), "BROKERTEST"+strings.ToUpper(randomHex(t, 10)), 0o400)
	conf := filepath.Join(dir, "rabbitmq.conf")
	writeFile(t, conf, fmt.Sprintf("listeners.tcp.default = 127.0.0.1:%d\nloopback_users.guest = true\n", port), 0o644)
	plugins := filepath.Join(dir, "enabled_plugins")
	writeFile(t, plugins, "[].\n", 0o644)
	envFile := filepath.Join(dir, "rabbitmq-env.conf")
	writeFile(t, envFile, "", 0o644)

	env := append(os.Environ(),
		"HOME="+home,
		"RABBITMQ_NODENAME="+node,
		"RABBITMQ_NODE_IP_ADDRESS=127.0.0.1",
		"RABBITMQ_NODE_PORT="+strconv.Itoa(port),
		"RABBITMQ_DIST_PORT="+strconv.Itoa(distPort),
		"RABBITMQ_MNESIA_BASE="+filepath.Join(dir, "mnesia"),
		"RABBITMQ_LOG_BASE="+filepath.Join(dir, "log"),
		"RABBITMQ_CONFIG_FILE="+conf,
		"RABBITMQ_ADVANCED_CONFIG_FILE="+filepath.Join(dir, "advanced.config"),
		"RABBITMQ_ENABLED_PLUGINS_FILE="+plugins,
		"RABBITMQ_CONF_ENV_FILE="+envFile,
		// Keep the distribution listener on loopback too.
		"RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=-kernel inet_dist_use_interface {127,0,0,1}",
		// Log to the console, which is our log file.
		"RABBITMQ_LOGS=-",
	)
	b := &Broker{
		kind:    "rabbitmq",
		addr:    addr,
		url:     url,
		dir:     dir,
		logPath: filepath.Join(dir, "broker.log"),
		// The start script traps SIGTERM and stops the node with
		// rabbitmqctl; SIGKILL would orphan the Erlang VM.
		deathSignal: syscall.SIGTERM,
		command: func() *exec.Cmd {
			cmd := exec.Command(server)
			cmd.Env = env
			cmd.Dir = dir
			return cmd
		},
		ready: func() error { return amqpReady(url) },
		ctl: func(ctx context.Context, args ...string) *exec.Cmd {
			cmd := exec.CommandContext(ctx, ctl, append([]string{"-n", node}, args...)...)
			cmd.Env = env
			cmd.Dir = dir
			return cmd
		},
	}
	b.launch(t)
	return b
}

// amqpReady logs in as guest and opens a channel: the node has finished
// booting (the AMQP listener opens last) and accepts work.
func amqpReady(url string) error {
	conn, err := amqp.DialConfig(url, amqp.Config{Dial: amqp.DefaultDial(dialTimeout)})
	if err != nil {
		return err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	return ch.Close()
}

// Ctl runs rabbitmqctl against the private RabbitMQ node (for example
// Ctl(t, "close_all_connections", "test") or Ctl(t, "list_queues", "name"))
// and returns its standard output; it fails t when the command fails or
// takes more than two minutes. It skips t for an external broker and fails
// it for a broker that is not RabbitMQ.
func (b *Broker) Ctl(t testing.TB, args ...string) string {
	t.Helper()
	b.skipExternal(t, "Ctl")
	if b.ctl == nil {
		t.Fatalf("brokertest: Ctl: %s has no control tool", b.kind)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stdout, stderr strings.Builder
	cmd := b.ctl(ctx, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("brokertest: rabbitmqctl %s: %v\n%s%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

func randomHex(t testing.TB, n int) string {
	t.Helper()
	buf := make([]byte, n)
	if _, err := rand.Read(buf); err != nil {
		t.Fatalf("brokertest: %v", err)
	}
	return hex.EncodeToString(buf)
}
