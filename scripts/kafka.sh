#!/usr/bin/env bash
# A real Apache Kafka broker (KRaft, one node acting as broker and controller) on 127.0.0.1.
#
#   scripts/kafka.sh fetch         jars from Maven Central into .cache/kafka-<version>/libs (idempotent)
#   scripts/kafka.sh start DIR     format DIR, start the node on free ports, wait until it serves,
#                                  print the bootstrap address (also written to DIR/bootstrap)
#   scripts/kafka.sh stop DIR      stop the node started in DIR (SIGTERM, then SIGKILL after 20 s)
#
# Why 4.0.0: see docs/kafka.md (aiokafka 0.14.0 is proven against it by tests/kafka/).
#
# The JVM starts tuned for a fast start (C1 only, serial GC, small heap): what tests want. For a
# latency measurement (bench/RESULTS.md, "Kafka") set KAFKA_JVM=server: Kafka's own production
# options (C2, G1 with 20 ms pause goal), a larger heap, a slower start.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
KAFKA_VERSION="${KAFKA_VERSION:-4.0.0}"
LOG4J_VERSION="2.24.3"
CACHE="${KAFKA_CACHE:-$ROOT/.cache/kafka-$KAFKA_VERSION}"
LIBS="$CACHE/libs"
JAVA="${JAVA:-java}"
START_TIMEOUT="${KAFKA_START_TIMEOUT:-90}"

die() { echo "kafka.sh: $*" >&2; exit 1; }

fetch() {
  if [ -f "$LIBS/.complete" ]; then
    return 0
  fi
  command -v mvn >/dev/null || die "mvn is not installed (apt-get install maven)"
  mkdir -p "$CACHE"
  local work
  work="$(mktemp -d "$CACHE/fetch.XXXXXX")"
  # kafka_2.13 brings the server, raft, storage and coordinators at runtime scope; the broker logs
  # through slf4j 1.7 to log4j2, whose implementation Kafka leaves to the distribution, so name it here.
  cat >"$work/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.tl-engine</groupId>
  <artifactId>kafka-broker-runtime</artifactId>
  <version>$KAFKA_VERSION</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId>
      <version>$KAFKA_VERSION</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId>
      <version>$LOG4J_VERSION</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId>
      <version>$LOG4J_VERSION</version>
    </dependency>
  </dependencies>
</project>
EOF
  echo "kafka.sh: fetching Apache Kafka $KAFKA_VERSION with mvn (once) ..." >&2
  if ! mvn -q -B -f "$work/pom.xml" dependency:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="$work/libs" >"$work/mvn.log" 2>&1; then
    tail -40 "$work/mvn.log" >&2
    die "mvn could not fetch Kafka $KAFKA_VERSION (log: $work/mvn.log)"
  fi
  rm -rf "$LIBS"
  mv "$work/libs" "$LIBS"
  touch "$LIBS/.complete"
  rm -rf "$work"
  echo "kafka.sh: Kafka $KAFKA_VERSION cached in $LIBS" >&2
}

free_port() {
  python3 - <<'EOF'
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
EOF
}

classpath() { printf '%s:' "$LIBS"/*.jar; }

start() {
  local dir="${1:-}"
  [ -n "$dir" ] || die "usage: kafka.sh start DIR"
  fetch
  mkdir -p "$dir"
  dir="$(cd "$dir" && pwd)"
  if [ -f "$dir/kafka.pid" ] && kill -0 "$(cat "$dir/kafka.pid")" 2>/dev/null; then
    die "a broker is already running from $dir (pid $(cat "$dir/kafka.pid")); stop it first"
  fi
  local broker_port controller_port
  broker_port="$(free_port)"
  controller_port="$(free_port)"
  while [ "$controller_port" = "$broker_port" ]; do controller_port="$(free_port)"; done
  rm -rf "$dir/data"
  mkdir -p "$dir/data" "$dir/logs"
  # Small and fast on a shared 2-core machine: one partition replica, short group join delay (so a
  # consumer group forms at once), few threads, and no fsync per message (the OS page cache is
  # enough for a test broker; durability of the engine's decisions is the journal's job).
  cat >"$dir/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$controller_port
listeners=PLAINTEXT://127.0.0.1:$broker_port,CONTROLLER://127.0.0.1:$controller_port
advertised.listeners=PLAINTEXT://127.0.0.1:$broker_port,CONTROLLER://127.0.0.1:$controller_port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$dir/data
num.partitions=3
default.replication.factor=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=3
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
# The engine's default session timeout is 1.5 s (takeover in seconds, docs/kafka.md); the
# broker's default floor is 6 s.
group.min.session.timeout.ms=1000
auto.create.topics.enable=true
num.network.threads=2
num.io.threads=2
num.recovery.threads.per.data.dir=1
background.threads=2
log.retention.hours=24
log.segment.bytes=16777216
EOF
  cat >"$dir/log4j2.properties" <<EOF
status = warn
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = $dir/logs/server.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.apache.name = org.apache.kafka
logger.apache.level = INFO
EOF
  local cp jvm_opts cluster_id
  cp="$(classpath)"
  if [ "${KAFKA_JVM:-test}" = server ]; then
    jvm_opts=(-Xms1g -Xmx1g -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20
              -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent
              -XX:MaxInlineLevel=15)
  else
    jvm_opts=(-Xms128m -Xmx512m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xshare:auto)
  fi
  jvm_opts+=(-Djava.awt.headless=true -Dlog4j2.configurationFile="$dir/log4j2.properties"
             -Dkafka.logs.dir="$dir/logs")
  # A KRaft cluster id is 16 random bytes in URL-safe base64; it may start with "-", hence the
  # --cluster-id=VALUE form below (a bare "-abc" would be parsed as an option).
  cluster_id="$(python3 -c 'import base64,uuid;print(base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("="))')"
  if ! "$JAVA" "${jvm_opts[@]}" -cp "$cp" kafka.tools.StorageTool format \
      --cluster-id="$cluster_id" --config="$dir/server.properties" --standalone >"$dir/logs/format.log" 2>&1; then
    cat "$dir/logs/format.log" >&2
    die "formatting the storage in $dir failed"
  fi
  nohup "$JAVA" "${jvm_opts[@]}" -cp "$cp" kafka.Kafka "$dir/server.properties" \
    >"$dir/logs/stdout.log" 2>&1 </dev/null &
  local pid=$!
  echo "$pid" >"$dir/kafka.pid"
  local deadline=$((SECONDS + START_TIMEOUT))
  while ! grep -q "Kafka Server started" "$dir/logs/server.log" 2>/dev/null; do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -30 "$dir/logs/stdout.log" "$dir/logs/server.log" >&2 2>/dev/null || true
      rm -f "$dir/kafka.pid"
      die "the broker exited during start-up (logs in $dir/logs)"
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      kill -9 "$pid" 2>/dev/null || true
      rm -f "$dir/kafka.pid"
      tail -30 "$dir/logs/server.log" >&2 2>/dev/null || true
      die "the broker did not start within ${START_TIMEOUT}s (logs in $dir/logs)"
    fi
    sleep 0.2
  done
  echo "127.0.0.1:$broker_port" >"$dir/bootstrap"
  echo "127.0.0.1:$broker_port"
}

stop() {
  local dir="${1:-}"
  [ -n "$dir" ] || die "usage: kafka.sh stop DIR"
  [ -f "$dir/kafka.pid" ] || return 0
  local pid
  pid="$(cat "$dir/kafka.pid")"
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.2
    done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$dir/kafka.pid"
}

case "${1:-}" in
  fetch) fetch ;;
  start) start "${2:-}" ;;
  stop) stop "${2:-}" ;;
  classpath) fetch; classpath; echo ;;
  *) echo "usage: kafka.sh fetch | start DIR | stop DIR" >&2; exit 2 ;;
esac
