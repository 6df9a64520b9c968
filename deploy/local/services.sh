#!/usr/bin/env bash
# Throwaway PostgreSQL, MariaDB, Redis and Kafka (KRaft) instances and a Mailpit SMTP sink for Kassa's
# tests and benchmarks, on non-default loopback ports, all state under one folder; and the tools the
# deployment tests run (promtool, Prometheus, helm, the compose checker), built once.
#
#   services.sh up       install what is missing, start everything, print `export` lines
#   services.sh env      print `export` lines for the services that are up
#   services.sh status   one line per service: up/down
#   services.sh down     stop every instance and remove the folder
#
# Progress goes to stderr (one line per step), `export` lines to stdout, so
# `eval "$(deploy/local/services.sh up)"` works. Exit codes: 0 all up, 3 some service
# missing (named on stderr), 2 usage error, 1 unexpected failure.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SERVICES_DIR=${KASSA_SERVICES_DIR:-/tmp/kassa-services}
# Without HOME, `~` is the home directory from the password database.
CACHE_DIR=${KASSA_CACHE_DIR:-${XDG_CACHE_HOME:-${HOME:-~}/.cache}/kassa}
KAFKA_VERSION=${KASSA_KAFKA_VERSION:-3.9.2}
KAFKA_HOME="$CACHE_DIR/kafka-$KAFKA_VERSION"
KAFKA_LIBS="$KAFKA_HOME/libs"
# Go programs are built from the Go module proxy into this folder, once.
GO_BIN_DIR="$CACHE_DIR/go-bin"
MAILPIT_VERSION=${KASSA_MAILPIT_VERSION:-1.33.1}
# Prometheus's module version for promtool 3.x (v0.316.0 is Prometheus 3.16).
PROMETHEUS_VERSION=${KASSA_PROMETHEUS_VERSION:-0.316.0}
HELM_VERSION=${KASSA_HELM_VERSION:-4.3.2}

HOST=127.0.0.1
PG_PORT=55432
MYSQL_PORT=53306
REDIS_PORT=56379
KAFKA_PORT=59092
KAFKA_CONTROLLER_PORT=59093
SMTP_PORT=51025
MAILPIT_HTTP_PORT=58025

PG_DIR="$SERVICES_DIR/postgres"
MYSQL_DIR="$SERVICES_DIR/mariadb"
REDIS_DIR="$SERVICES_DIR/redis"
KAFKA_DIR="$SERVICES_DIR/kafka"
MAILPIT_DIR="$SERVICES_DIR/mailpit"
LOG_DIR="$SERVICES_DIR/logs"

SERVICES=(postgres mariadb redis kafka mailpit)
TOOLS=(promtool prometheus helm compose-check)

# Bounded waits, in seconds.
PG_START_TIMEOUT_S=60
MYSQL_START_TIMEOUT_S=60
REDIS_START_TIMEOUT_S=20
KAFKA_START_TIMEOUT_S=120
MAILPIT_START_TIMEOUT_S=20
GO_BUILD_TIMEOUT_S=900
STOP_TIMEOUT_S=30
APT_TIMEOUT_S=900
MVN_TIMEOUT_S=900

say() { printf '[services] %s\n' "$*" >&2; }
now_ms() { date +%s%3N; }
elapsed() {
    local ms=$(($(now_ms) - $1))
    printf '%d.%01ds' $((ms / 1000)) $(((ms % 1000) / 100))
}
fail() {
    # fail <service> <reason>: remember why a service could not be had; the rest continue.
    # Services start in background subshells, so the reason goes to a file cmd_up reads.
    if [[ -d $SERVICES_DIR ]]; then printf '%s\n' "$2" >"$SERVICES_DIR/.failed.$1"; fi
    say "$1: FAILED - $2"
}

# ---------------------------------------------------------------- locking
# Serialise concurrent invocations (two test runners calling `up` at once). The lock file
# lives next to the folder so `down` can remove the folder while holding it.
take_lock() {
    local lock="${SERVICES_DIR%/}.lock"
    mkdir -p "$(dirname "$lock")"
    exec 9>"$lock"
    if ! flock -w 600 9; then
        say "another services.sh holds $lock for more than 600s; giving up"
        exit 1
    fi
}

require_root() {
    if ((EUID != 0)); then
        say "$1 must run as root (it installs packages and manages daemons owned by postgres/mysql)"
        exit 1
    fi
}

# ---------------------------------------------------------------- process helpers
pid_alive() {
    # pid_alive <pid> <cmdline-substring>: true while the pid runs and is the process we
    # started (guards against a recycled pid). An exiting process has an empty cmdline: still
    # alive; a zombie has finished.
    local pid=$1 marker=$2 stat cmdline
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [[ ${stat:0:1} != Z ]] || return 1
    cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
    [[ -z $cmdline || $cmdline == *"$marker"* ]]
}

read_pid() {
    if [[ -r $1 ]]; then head -n1 "$1" 2>/dev/null | tr -dc '0-9'; fi
    return 0
}

stop_pid() {
    # stop_pid <name> <pid> <marker>: SIGTERM, wait up to STOP_TIMEOUT_S, then SIGKILL.
    local name=$1 pid=$2 marker=$3 i
    pid_alive "$pid" "$marker" || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < STOP_TIMEOUT_S * 10; i++)); do
        pid_alive "$pid" "$marker" || return 0
        sleep 0.1
    done
    say "$name: still running after ${STOP_TIMEOUT_S}s, killing pid $pid"
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        pid_alive "$pid" "$marker" || return 0
        sleep 0.1
    done
}

wait_until() {
    # wait_until <timeout_s> <command...>: poll every 0.2s.
    local timeout_s=$1 deadline
    shift
    deadline=$(($(date +%s) + timeout_s))
    while true; do
        if "$@" >/dev/null 2>&1; then return 0; fi
        (($(date +%s) < deadline)) || return 1
        sleep 0.2
    done
}

wait_started() {
    # wait_started <service> <pid> <cmdline-marker> <timeout_s> <log>: until is_up <service>, failing
    # the service if its process exits first or the time runs out.
    local name=$1 pid=$2 marker=$3 timeout_s=$4 log=$5 deadline
    deadline=$(($(date +%s) + timeout_s))
    while ! is_up "$name"; do
        if ! pid_alive "$pid" "$marker"; then
            fail "$name" "exited during startup (see $log)"
            return 1
        fi
        if (($(date +%s) >= deadline)); then
            fail "$name" "not answering after ${timeout_s}s (see $log)"
            return 1
        fi
        sleep 0.2
    done
}

port_busy() { timeout 1 bash -c "exec 3<>/dev/tcp/$HOST/$1" 2>/dev/null; }

# ---------------------------------------------------------------- package installation
pg_bindir() {
    local d
    d=$(find /usr/lib/postgresql -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n1)
    [[ -n $d && -x $d/pg_ctl && -x $d/initdb ]] && printf '%s\n' "$d"
}

have_postgres() { [[ -n $(pg_bindir) ]] && command -v psql >/dev/null && command -v pg_isready >/dev/null; }
have_mariadb() {
    [[ -x /usr/sbin/mariadbd ]] && command -v mariadb-install-db >/dev/null &&
        command -v mariadb >/dev/null && command -v mariadb-admin >/dev/null
}
have_redis() { command -v redis-server >/dev/null && command -v redis-cli >/dev/null; }

disable_distro_service() {
    # The packages start their own default instances (ports 5432/3306/6379); we only want ours.
    local unit=$1
    if [[ -d /run/systemd/system ]]; then
        systemctl disable --now "$unit" >>"$LOG_DIR/apt.log" 2>&1 || true
    else
        service "$unit" stop >>"$LOG_DIR/apt.log" 2>&1 || true
        update-rc.d "$unit" disable >>"$LOG_DIR/apt.log" 2>&1 || true
    fi
}

install_packages() {
    local -a missing=() pkgs=()
    have_postgres || { missing+=(postgres); pkgs+=(postgresql postgresql-client); }
    have_mariadb || { missing+=(mariadb); pkgs+=(mariadb-server mariadb-client); }
    have_redis || { missing+=(redis); pkgs+=(redis-server redis-tools); }
    ((${#pkgs[@]} > 0)) || return 0

    local start policy_created=0 ok=0
    start=$(now_ms)
    say "apt: installing ${pkgs[*]} (log: $LOG_DIR/apt.log)"
    # Keep the packages' maintainer scripts from starting default instances at all.
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        policy_created=1
    fi
    export DEBIAN_FRONTEND=noninteractive
    local -a apt_opts=(-y -q -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold
        --no-install-recommends)
    # Try the existing package lists first; refresh them only if that fails.
    if timeout "$APT_TIMEOUT_S" apt-get install "${apt_opts[@]}" "${pkgs[@]}" >>"$LOG_DIR/apt.log" 2>&1; then
        ok=1
    else
        say "apt: install from current lists failed, running apt-get update"
        if timeout "$APT_TIMEOUT_S" apt-get update -q >>"$LOG_DIR/apt.log" 2>&1 &&
            timeout "$APT_TIMEOUT_S" apt-get install "${apt_opts[@]}" "${pkgs[@]}" >>"$LOG_DIR/apt.log" 2>&1; then
            ok=1
        fi
    fi
    ((policy_created == 0)) || rm -f /usr/sbin/policy-rc.d
    for unit in postgresql mariadb redis-server; do
        case $unit in
            postgresql) [[ " ${missing[*]} " == *" postgres "* ]] || continue ;;
            mariadb) [[ " ${missing[*]} " == *" mariadb "* ]] || continue ;;
            redis-server) [[ " ${missing[*]} " == *" redis "* ]] || continue ;;
        esac
        disable_distro_service "$unit"
    done
    if ((ok == 1)); then
        say "apt: done in $(elapsed "$start")"
    else
        say "apt: install failed after $(elapsed "$start"), see $LOG_DIR/apt.log"
    fi
}

fetch_kafka() {
    [[ -f $KAFKA_HOME/.complete ]] && return 0
    if ! command -v mvn >/dev/null || ! command -v java >/dev/null; then
        fail kafka "java and mvn are needed to fetch and run Kafka"
        return 1
    fi
    local start tmp
    start=$(now_ms)
    say "kafka: fetching kafka_2.13 $KAFKA_VERSION jars from Maven Central into $KAFKA_LIBS (log: $LOG_DIR/maven.log)"
    mkdir -p "$CACHE_DIR"
    tmp=$(mktemp -d "$CACHE_DIR/.kafka-$KAFKA_VERSION.XXXXXX")
    if timeout "$MVN_TIMEOUT_S" mvn -B -q -f "$SCRIPT_DIR/kafka/pom.xml" \
        -Dkafka.version="$KAFKA_VERSION" dependency:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$tmp/libs" >>"$LOG_DIR/maven.log" 2>&1 &&
        compgen -G "$tmp/libs/kafka_2.13-*.jar" >/dev/null; then
        touch "$tmp/.complete"
        rm -rf "$KAFKA_HOME"
        mv "$tmp" "$KAFKA_HOME"
        say "kafka: fetched $(find "$KAFKA_LIBS" -name '*.jar' | wc -l) jars in $(elapsed "$start")"
    else
        rm -rf "$tmp"
        fail kafka "could not fetch Kafka $KAFKA_VERSION jars with Maven (see $LOG_DIR/maven.log)"
        return 1
    fi
}

# ---------------------------------------------------------------- readiness probes
pg_up() { pg_isready -q -h "$HOST" -p "$PG_PORT" -t 2; }
mysql_admin() { mariadb-admin --defaults-file="$MYSQL_DIR/my.cnf" --connect-timeout=2 "$@"; }
mysql_up() { [[ -f $MYSQL_DIR/my.cnf ]] && mysql_admin ping >/dev/null 2>&1; }
redis_up() { [[ $(timeout 3 redis-cli -h "$HOST" -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]]; }

kafka_up() {
    # Raw Metadata v4 request (api key 3, correlation id 1, client id "kassa", no topics). A
    # KRaft broker lists itself only once it is registered and unfenced, so this is a real
    # readiness check without starting a JVM. Expected reply prefix: size, correlation id 1,
    # throttle time, broker count 1, node id 1, host "127.0.0.1", our port.
    local reply expected
    reply=$(timeout 3 bash -c "exec 3<>/dev/tcp/$HOST/$KAFKA_PORT || exit 1
        printf '\\x00\\x00\\x00\\x14\\x00\\x03\\x00\\x04\\x00\\x00\\x00\\x01\\x00\\x05kassa\\x00\\x00\\x00\\x00\\x00' >&3
        head -c 35 <&3 | od -An -v -tx1" 2>/dev/null) || return 1
    reply=$(tr -d ' \n' <<<"$reply")
    expected=00000001$(printf '%04x' ${#HOST})$(printf '%s' "$HOST" | od -An -v -tx1 | tr -d ' \n')$(printf '%08x' "$KAFKA_PORT")
    [[ ${reply:8:8} == 00000001 && ${reply:24:8} == 00000001 && ${reply:32} == "$expected" ]]
}

mailpit_up() {
    # Mailpit's HTTP API answers /readyz with 200 once it takes mail.
    local status
    status=$(timeout 3 bash -c "exec 3<>/dev/tcp/$HOST/$MAILPIT_HTTP_PORT || exit 1
        printf 'GET /readyz HTTP/1.0\\r\\nHost: $HOST\\r\\n\\r\\n' >&3
        head -n1 <&3" 2>/dev/null) || return 1
    [[ $status == *" 200"* ]]
}

is_up() {
    case $1 in
        postgres) command -v pg_isready >/dev/null && pg_up ;;
        mariadb) command -v mariadb-admin >/dev/null && mysql_up ;;
        redis) command -v redis-cli >/dev/null && redis_up ;;
        kafka) kafka_up ;;
        mailpit) mailpit_up ;;
    esac
}

# ---------------------------------------------------------------- PostgreSQL
pg_as() { runuser -u postgres -- "$@"; }

start_postgres() {
    have_postgres || { fail postgres "package postgresql is not installed (see $LOG_DIR/apt.log)"; return 1; }
    id postgres >/dev/null 2>&1 || { fail postgres "OS user postgres does not exist"; return 1; }
    local bin start
    bin=$(pg_bindir)
    start=$(now_ms)
    if port_busy "$PG_PORT"; then
        fail postgres "port $PG_PORT is taken by something that is not answering as PostgreSQL"
        return 1
    fi
    mkdir -p "$PG_DIR/run"
    chown postgres:postgres "$PG_DIR" "$PG_DIR/run"
    chmod 700 "$PG_DIR"
    touch "$LOG_DIR/postgres.log"
    chown postgres:postgres "$LOG_DIR/postgres.log"
    if ! pg_as test -x "$PG_DIR"; then
        fail postgres "the postgres OS user cannot reach $PG_DIR (a parent directory is not world-executable)"
        return 1
    fi
    if [[ ! -f $PG_DIR/data/PG_VERSION ]]; then
        say "postgres: initdb in $PG_DIR/data"
        rm -rf "$PG_DIR/data"
        if ! pg_as "$bin/initdb" -D "$PG_DIR/data" -U postgres -E UTF8 --no-locale \
            --auth-local=trust --auth-host=scram-sha-256 >>"$LOG_DIR/postgres.log" 2>&1; then
            fail postgres "initdb failed (see $LOG_DIR/postgres.log)"
            return 1
        fi
        cat >>"$PG_DIR/data/postgresql.conf" <<EOF

# kassa services.sh
listen_addresses = '$HOST'
port = $PG_PORT
unix_socket_directories = '$PG_DIR/run'
max_connections = 200
shared_buffers = 256MB
EOF
        cat >"$PG_DIR/data/pg_hba.conf" <<EOF
local all all trust
host all all 127.0.0.1/32 scram-sha-256
host all all ::1/128 scram-sha-256
EOF
        chown postgres:postgres "$PG_DIR/data/pg_hba.conf"
    fi
    say "postgres: starting on $HOST:$PG_PORT"
    # 9>&- : the daemon must not inherit our lock.
    if ! pg_as "$bin/pg_ctl" -D "$PG_DIR/data" -l "$LOG_DIR/postgres.log" -w -t "$PG_START_TIMEOUT_S" \
        start >>"$LOG_DIR/pg_ctl.log" 2>&1 9>&-; then
        fail postgres "pg_ctl start failed (see $LOG_DIR/pg_ctl.log and $LOG_DIR/postgres.log)"
        return 1
    fi
    if ! wait_until "$PG_START_TIMEOUT_S" pg_up; then
        fail postgres "not ready after ${PG_START_TIMEOUT_S}s (see $LOG_DIR/postgres.log)"
        return 1
    fi
    local psql=(psql -X -q -v ON_ERROR_STOP=1 -h "$PG_DIR/run" -p "$PG_PORT" -U postgres -d postgres)
    if ! pg_as "${psql[@]}" >>"$LOG_DIR/postgres.log" 2>&1 <<'SQL'; then
DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'kassa') THEN
    CREATE ROLE kassa LOGIN CREATEDB PASSWORD 'kassa';
  ELSE
    ALTER ROLE kassa LOGIN CREATEDB PASSWORD 'kassa';
  END IF;
END $$;
SELECT 'CREATE DATABASE ' || quote_ident(d) || ' OWNER kassa'
  FROM unnest(ARRAY['kassa', 'product_service', 'notification_service']) AS d
 WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = d) \gexec
SQL
        fail postgres "creating role/databases failed (see $LOG_DIR/postgres.log)"
        return 1
    fi
    if ! PGPASSWORD=kassa PGCONNECT_TIMEOUT=5 psql -X -q -h "$HOST" -p "$PG_PORT" -U kassa -d kassa \
        -c 'SELECT 1' >>"$LOG_DIR/postgres.log" 2>&1; then
        fail postgres "SELECT 1 as kassa failed (see $LOG_DIR/postgres.log)"
        return 1
    fi
    say "postgres: up in $(elapsed "$start")"
}

stop_postgres() {
    [[ -f $PG_DIR/data/postmaster.pid ]] || return 0
    local bin pid
    bin=$(pg_bindir || true)
    pid=$(read_pid "$PG_DIR/data/postmaster.pid")
    if [[ -n $bin ]]; then
        pg_as "$bin/pg_ctl" -D "$PG_DIR/data" -m fast -w -t "$STOP_TIMEOUT_S" stop \
            >>"$LOG_DIR/pg_ctl.log" 2>&1 || true
    fi
    [[ -z $pid ]] || stop_pid postgres "$pid" "$PG_DIR/data"
}

# ---------------------------------------------------------------- MariaDB
start_mariadb() {
    have_mariadb || { fail mariadb "package mariadb-server is not installed (see $LOG_DIR/apt.log)"; return 1; }
    id mysql >/dev/null 2>&1 || { fail mariadb "OS user mysql does not exist"; return 1; }
    local start pid
    start=$(now_ms)
    if port_busy "$MYSQL_PORT"; then
        fail mariadb "port $MYSQL_PORT is taken by something that is not answering as MariaDB"
        return 1
    fi
    mkdir -p "$MYSQL_DIR/run" "$MYSQL_DIR/tmp"
    cat >"$MYSQL_DIR/my.cnf" <<EOF
# Generated by kassa deploy/local/services.sh; used with --defaults-file so /etc/mysql is ignored.
[mysqld]
user = mysql
datadir = $MYSQL_DIR/data
tmpdir = $MYSQL_DIR/tmp
socket = $MYSQL_DIR/run/mysqld.sock
pid-file = $MYSQL_DIR/run/mysqld.pid
port = $MYSQL_PORT
bind-address = $HOST
log-error = $LOG_DIR/mariadb.log
skip-name-resolve
character-set-server = utf8mb4
collation-server = utf8mb4_unicode_ci
max_connections = 200
innodb_buffer_pool_size = 256M
innodb_log_file_size = 48M

[client]
socket = $MYSQL_DIR/run/mysqld.sock
user = root
EOF
    touch "$LOG_DIR/mariadb.log"
    chown mysql:mysql "$LOG_DIR/mariadb.log"
    chown -R mysql:mysql "$MYSQL_DIR/run" "$MYSQL_DIR/tmp"
    if [[ ! -d $MYSQL_DIR/data/mysql ]]; then
        say "mariadb: mariadb-install-db in $MYSQL_DIR/data"
        rm -rf "$MYSQL_DIR/data"
        mkdir -p "$MYSQL_DIR/data"
        chown mysql:mysql "$MYSQL_DIR/data"
        if ! mariadb-install-db --defaults-file="$MYSQL_DIR/my.cnf" --user=mysql \
            --datadir="$MYSQL_DIR/data" --auth-root-authentication-method=socket \
            --skip-test-db >>"$LOG_DIR/mariadb.log" 2>&1; then
            fail mariadb "mariadb-install-db failed (see $LOG_DIR/mariadb.log)"
            return 1
        fi
    fi
    say "mariadb: starting on $HOST:$MYSQL_PORT"
    setsid /usr/sbin/mariadbd --defaults-file="$MYSQL_DIR/my.cnf" \
        </dev/null >>"$LOG_DIR/mariadb.log" 2>&1 9>&- &
    pid=$!
    if ! wait_until "$MYSQL_START_TIMEOUT_S" mysql_up; then
        fail mariadb "not ready after ${MYSQL_START_TIMEOUT_S}s (see $LOG_DIR/mariadb.log)"
        return 1
    fi
    printf '%s\n' "$pid" >"$MYSQL_DIR/mariadbd.pid"
    if ! mariadb --defaults-file="$MYSQL_DIR/my.cnf" >>"$LOG_DIR/mariadb.log" 2>&1 <<'SQL'; then
CREATE DATABASE IF NOT EXISTS kassa;
CREATE DATABASE IF NOT EXISTS payment_service;
CREATE USER IF NOT EXISTS 'kassa'@'%' IDENTIFIED BY 'kassa';
CREATE USER IF NOT EXISTS 'kassa'@'localhost' IDENTIFIED BY 'kassa';
ALTER USER 'kassa'@'%' IDENTIFIED BY 'kassa';
ALTER USER 'kassa'@'localhost' IDENTIFIED BY 'kassa';
GRANT ALL PRIVILEGES ON kassa.* TO 'kassa'@'%';
GRANT ALL PRIVILEGES ON kassa.* TO 'kassa'@'localhost';
GRANT ALL PRIVILEGES ON payment_service.* TO 'kassa'@'%';
GRANT ALL PRIVILEGES ON payment_service.* TO 'kassa'@'localhost';
GRANT ALL PRIVILEGES ON `kassa\_test\_%`.* TO 'kassa'@'%';
GRANT ALL PRIVILEGES ON `kassa\_test\_%`.* TO 'kassa'@'localhost';
GRANT ALL PRIVILEGES ON `kassa\_bench\_%`.* TO 'kassa'@'%';
GRANT ALL PRIVILEGES ON `kassa\_bench\_%`.* TO 'kassa'@'localhost';
FLUSH PRIVILEGES;
SQL
        fail mariadb "creating users/databases failed (see $LOG_DIR/mariadb.log)"
        return 1
    fi
    if ! mariadb --no-defaults --protocol=TCP -h "$HOST" -P "$MYSQL_PORT" -u kassa -pkassa kassa \
        -e 'SELECT 1' >>"$LOG_DIR/mariadb.log" 2>&1; then
        fail mariadb "SELECT 1 as kassa over TCP failed (see $LOG_DIR/mariadb.log)"
        return 1
    fi
    say "mariadb: up in $(elapsed "$start")"
}

stop_mariadb() {
    local pid
    for f in "$MYSQL_DIR/run/mysqld.pid" "$MYSQL_DIR/mariadbd.pid"; do
        pid=$(read_pid "$f")
        [[ -z $pid ]] || stop_pid mariadb "$pid" "$MYSQL_DIR/my.cnf"
    done
}

# ---------------------------------------------------------------- Redis
start_redis() {
    have_redis || { fail redis "package redis-server is not installed (see $LOG_DIR/apt.log)"; return 1; }
    local start
    start=$(now_ms)
    if port_busy "$REDIS_PORT"; then
        fail redis "port $REDIS_PORT is taken by something that is not answering as Redis"
        return 1
    fi
    mkdir -p "$REDIS_DIR/data"
    # appendfsync always: every write is fsynced; this instance is also the `redis-fsync`
    # benchmark reference.
    cat >"$REDIS_DIR/redis.conf" <<EOF
# Generated by kassa deploy/local/services.sh
bind $HOST
port $REDIS_PORT
protected-mode no
daemonize yes
pidfile $REDIS_DIR/redis.pid
logfile $LOG_DIR/redis.log
dir $REDIS_DIR/data
appendonly yes
appendfsync always
save ""
databases 16
EOF
    say "redis: starting on $HOST:$REDIS_PORT"
    if ! redis-server "$REDIS_DIR/redis.conf" </dev/null >>"$LOG_DIR/redis.log" 2>&1 9>&-; then
        fail redis "redis-server failed to start (see $LOG_DIR/redis.log)"
        return 1
    fi
    if ! wait_until "$REDIS_START_TIMEOUT_S" redis_up; then
        fail redis "not ready after ${REDIS_START_TIMEOUT_S}s (see $LOG_DIR/redis.log)"
        return 1
    fi
    say "redis: up in $(elapsed "$start")"
}

stop_redis() {
    local pid
    pid=$(read_pid "$REDIS_DIR/redis.pid")
    [[ -n $pid ]] || return 0
    stop_pid redis "$pid" "$HOST:$REDIS_PORT"
}

# ---------------------------------------------------------------- Kafka
kafka_java() {
    # kafka_java <main-class> <args...>: run a Kafka tool quietly (warnings to stderr), bounded.
    timeout 120 java -Xmx256m -XX:TieredStopAtLevel=1 -Dlog4j.configuration="file:$KAFKA_DIR/tools-log4j.properties" \
        -cp "$KAFKA_LIBS/*" "$@"
}

start_kafka() {
    fetch_kafka || return 1
    command -v java >/dev/null || { fail kafka "java is not installed"; return 1; }
    local start pid
    start=$(now_ms)
    if port_busy "$KAFKA_PORT" || port_busy "$KAFKA_CONTROLLER_PORT"; then
        fail kafka "port $KAFKA_PORT or $KAFKA_CONTROLLER_PORT is taken by something that is not answering as Kafka"
        return 1
    fi
    mkdir -p "$KAFKA_DIR/data"
    cat >"$KAFKA_DIR/server.properties" <<EOF
# Generated by kassa deploy/local/services.sh: single-node KRaft, broker and controller combined.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$HOST:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://$HOST:$KAFKA_PORT,CONTROLLER://$HOST:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$HOST:$KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$KAFKA_DIR/data
auto.create.topics.enable=true
num.partitions=3
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=3
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=3
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=4
log.retention.hours=24
EOF
    cat >"$KAFKA_DIR/log4j.properties" <<EOF
log4j.rootLogger=INFO, file
log4j.appender.file=org.apache.log4j.RollingFileAppender
log4j.appender.file.File=$LOG_DIR/kafka.log
log4j.appender.file.MaxFileSize=50MB
log4j.appender.file.MaxBackupIndex=2
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.request.logger=WARN
log4j.logger.state.change.logger=WARN
EOF
    cat >"$KAFKA_DIR/tools-log4j.properties" <<'EOF'
log4j.rootLogger=WARN, stderr
log4j.appender.stderr=org.apache.log4j.ConsoleAppender
log4j.appender.stderr.Target=System.err
log4j.appender.stderr.layout=org.apache.log4j.PatternLayout
log4j.appender.stderr.layout.ConversionPattern=[%d] %p %m (%c)%n
EOF
    if [[ ! -f $KAFKA_DIR/data/meta.properties ]]; then
        local cluster_id
        # A Kafka cluster id is 16 random bytes in URL-safe base64 without padding (22 chars). It may
        # start with '-', so it is passed as `--cluster-id=ID`, never as a separate argument.
        cluster_id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
        say "kafka: formatting KRaft storage (cluster id $cluster_id)"
        if ! kafka_java kafka.tools.StorageTool format --cluster-id="$cluster_id" \
            -c "$KAFKA_DIR/server.properties" --ignore-formatted >>"$LOG_DIR/kafka.out" 2>&1; then
            fail kafka "storage format failed (see $LOG_DIR/kafka.out)"
            return 1
        fi
    fi
    say "kafka: starting $KAFKA_VERSION on $HOST:$KAFKA_PORT (controller $KAFKA_CONTROLLER_PORT)"
    (
        cd "$KAFKA_DIR"
        exec setsid java -Xms256m -Xmx512m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
            -Djava.awt.headless=true -Dkafka.logs.dir="$LOG_DIR" \
            -Dlog4j.configuration="file:$KAFKA_DIR/log4j.properties" \
            -cp "$KAFKA_LIBS/*" kafka.Kafka "$KAFKA_DIR/server.properties"
    ) </dev/null >>"$LOG_DIR/kafka.out" 2>&1 9>&- &
    pid=$!
    printf '%s\n' "$pid" >"$KAFKA_DIR/kafka.pid"
    wait_started kafka "$pid" "$KAFKA_DIR/server.properties" "$KAFKA_START_TIMEOUT_S" "$LOG_DIR/kafka.log" || return 1
    say "kafka: up in $(elapsed "$start")"
}

stop_kafka() {
    local pid
    pid=$(read_pid "$KAFKA_DIR/kafka.pid")
    [[ -n $pid ]] || return 0
    stop_pid kafka "$pid" "$KAFKA_DIR/server.properties"
}

# ---------------------------------------------------------------- Mailpit
go_tool() {
    # go_tool <service> <binary> <package@version>: build a Go program from the Go module proxy into
    # GO_BIN_DIR, once; a failure is the service's.
    local name=$1 binary=$2 package=$3 start
    [[ -x $GO_BIN_DIR/$binary ]] && return 0
    command -v go >/dev/null || { fail "$name" "go is not installed, so $binary cannot be built"; return 1; }
    start=$(now_ms)
    say "$name: building $package from the Go module proxy into $GO_BIN_DIR"
    mkdir -p "$GO_BIN_DIR"
    if ! GOBIN="$GO_BIN_DIR" timeout "$GO_BUILD_TIMEOUT_S" go install "$package" >>"$LOG_DIR/$binary-build.log" 2>&1; then
        fail "$name" "go install $package failed (see $LOG_DIR/$binary-build.log)"
        return 1
    fi
    say "$name: built in $(elapsed "$start")"
}

fetch_mailpit() { go_tool mailpit mailpit "github.com/axllent/mailpit@v$MAILPIT_VERSION"; }

start_mailpit() {
    fetch_mailpit || return 1
    command -v openssl >/dev/null || { fail mailpit "openssl is not installed (needed for the STARTTLS certificate)"; return 1; }
    local start pid
    start=$(now_ms)
    if port_busy "$SMTP_PORT" || port_busy "$MAILPIT_HTTP_PORT"; then
        fail mailpit "port $SMTP_PORT or $MAILPIT_HTTP_PORT is taken by something that is not answering as Mailpit"
        return 1
    fi
    mkdir -p "$MAILPIT_DIR"
    # A throwaway CA and the server certificate it signs, for STARTTLS; clients trust the CA through
    # KASSA_SMTP_CA (a certificate that is its own CA is refused as a server's by rustls).
    printf 'subjectAltName=IP:%s,DNS:localhost\nbasicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\n' "$HOST" \
        >"$MAILPIT_DIR/server.ext"
    if ! {
        openssl req -x509 -newkey rsa:2048 -nodes -days 7 -subj "/CN=Kassa test CA" \
            -keyout "$MAILPIT_DIR/ca-key.pem" -out "$MAILPIT_DIR/ca.pem" &&
            openssl req -newkey rsa:2048 -nodes -subj "/CN=$HOST" -keyout "$MAILPIT_DIR/key.pem" -out "$MAILPIT_DIR/server.csr" &&
            openssl x509 -req -in "$MAILPIT_DIR/server.csr" -CA "$MAILPIT_DIR/ca.pem" -CAkey "$MAILPIT_DIR/ca-key.pem" \
                -CAcreateserial -days 7 -extfile "$MAILPIT_DIR/server.ext" -out "$MAILPIT_DIR/cert.pem"
    } >>"$LOG_DIR/mailpit.out" 2>&1; then
        fail mailpit "the STARTTLS certificate could not be made (see $LOG_DIR/mailpit.out)"
        return 1
    fi
    say "mailpit: starting on $HOST:$SMTP_PORT (SMTP, STARTTLS required, any credentials) and $HOST:$MAILPIT_HTTP_PORT (HTTP API)"
    setsid "$GO_BIN_DIR/mailpit" --smtp "$HOST:$SMTP_PORT" --listen "$HOST:$MAILPIT_HTTP_PORT" \
        --database "$MAILPIT_DIR/mailpit.db" --smtp-tls-cert "$MAILPIT_DIR/cert.pem" --smtp-tls-key "$MAILPIT_DIR/key.pem" \
        --smtp-require-starttls --smtp-auth-accept-any </dev/null >>"$LOG_DIR/mailpit.out" 2>&1 9>&- &
    pid=$!
    printf '%s\n' "$pid" >"$MAILPIT_DIR/mailpit.pid"
    wait_started mailpit "$pid" mailpit "$MAILPIT_START_TIMEOUT_S" "$LOG_DIR/mailpit.out" || return 1
    say "mailpit: up in $(elapsed "$start")"
}

stop_mailpit() {
    local pid
    pid=$(read_pid "$MAILPIT_DIR/mailpit.pid")
    [[ -n $pid ]] || return 0
    stop_pid mailpit "$pid" mailpit
}

# ---------------------------------------------------------------- tools
# Programs the tests run rather than services they talk to (each test starts its own Prometheus with
# its own configuration): built once into GO_BIN_DIR.
fetch_promtool() { go_tool promtool promtool "github.com/prometheus/prometheus/cmd/promtool@v$PROMETHEUS_VERSION"; }
fetch_prometheus() { go_tool prometheus prometheus "github.com/prometheus/prometheus/cmd/prometheus@v$PROMETHEUS_VERSION"; }
fetch_helm() { go_tool helm helm "helm.sh/helm/v4/cmd/helm@v$HELM_VERSION"; }
fetch_compose-check() {
    # The repository's own Go program (deploy/compose/check), rebuilt whenever its sources are newer.
    local src="$SCRIPT_DIR/../compose/check" bin="$GO_BIN_DIR/compose-check" start
    if [[ -x $bin && ! $src/main.go -nt $bin && ! $src/go.mod -nt $bin && ! $src/go.sum -nt $bin ]]; then return 0; fi
    command -v go >/dev/null || { fail compose-check "go is not installed, so the compose checker cannot be built"; return 1; }
    start=$(now_ms)
    mkdir -p "$GO_BIN_DIR"
    if ! (cd "$src" && timeout "$GO_BUILD_TIMEOUT_S" go build -o "$bin" .) >>"$LOG_DIR/compose-check-build.log" 2>&1; then
        fail compose-check "go build of deploy/compose/check failed (see $LOG_DIR/compose-check-build.log)"
        return 1
    fi
    say "compose-check: built in $(elapsed "$start")"
}

# ---------------------------------------------------------------- commands
print_env() {
    is_up postgres && echo "export KASSA_PG_URL=postgres://kassa:kassa@$HOST:$PG_PORT/kassa"
    is_up mariadb && echo "export KASSA_MYSQL_URL=mysql://kassa:kassa@$HOST:$MYSQL_PORT/kassa"
    is_up redis && echo "export KASSA_REDIS_URL=redis://$HOST:$REDIS_PORT/0"
    is_up kafka && echo "export KASSA_KAFKA_BROKERS=$HOST:$KAFKA_PORT"
    if is_up mailpit; then
        echo "export KASSA_SMTP_HOST=$HOST KASSA_SMTP_PORT=$SMTP_PORT KASSA_SMTP_CA=$MAILPIT_DIR/ca.pem"
        echo "export KASSA_MAILPIT_URL=http://$HOST:$MAILPIT_HTTP_PORT"
    fi
    [[ -x $GO_BIN_DIR/promtool ]] && echo "export KASSA_PROMTOOL=$GO_BIN_DIR/promtool"
    [[ -x $GO_BIN_DIR/prometheus ]] && echo "export KASSA_PROMETHEUS=$GO_BIN_DIR/prometheus"
    [[ -x $GO_BIN_DIR/helm ]] && echo "export KASSA_HELM=$GO_BIN_DIR/helm"
    [[ -x $GO_BIN_DIR/compose-check ]] && echo "export KASSA_COMPOSE_CHECK=$GO_BIN_DIR/compose-check"
    [[ -d $SERVICES_DIR ]] && echo "export KASSA_SERVICES_DIR=$SERVICES_DIR"
    return 0
}

start_service() {
    case $1 in
        postgres) start_postgres ;;
        mariadb) start_mariadb ;;
        redis) start_redis ;;
        kafka) start_kafka ;;
        mailpit) start_mailpit ;;
    esac
}

cmd_up() {
    local start s
    start=$(now_ms)
    # Fast path: everything already answers.
    local all=1
    for s in "${SERVICES[@]}"; do is_up "$s" || { all=0; break; }; done
    for s in "${TOOLS[@]}"; do [[ -x $GO_BIN_DIR/$s ]] || { all=0; break; }; done
    if ((all == 1)); then
        say "all services already up ($(elapsed "$start"))"
        print_env
        return 0
    fi
    require_root up
    take_lock
    mkdir -p "$SERVICES_DIR" "$LOG_DIR"
    chmod 755 "$SERVICES_DIR" "$LOG_DIR"
    rm -f "$SERVICES_DIR"/.failed.*
    # Services start concurrently (most of the time is fsync and JVM start-up, not CPU). Kafka
    # needs no Debian package, so it goes first: its Maven fetch overlaps with apt.
    local -A starting=()
    # Mailpit is a Go build at most, independent of apt as well; so are the tools.
    for s in kafka mailpit; do
        if is_up "$s"; then say "$s: already up"; else start_service "$s" & starting[$s]=$!; fi
    done
    for s in "${TOOLS[@]}"; do "fetch_$s" & starting[$s]=$!; done
    install_packages
    for s in postgres mariadb redis; do
        if is_up "$s"; then say "$s: already up"; else start_service "$s" & starting[$s]=$!; fi
    done
    for s in "${!starting[@]}"; do
        if ! wait "${starting[$s]}" && [[ ! -f $SERVICES_DIR/.failed.$s ]]; then
            fail "$s" "start-up aborted unexpectedly (see $LOG_DIR)"
        fi
    done
    print_env
    local n_missing=0
    for s in "${SERVICES[@]}" "${TOOLS[@]}"; do
        if [[ -f $SERVICES_DIR/.failed.$s ]]; then
            say "MISSING $s: $(cat "$SERVICES_DIR/.failed.$s")"
            n_missing=$((n_missing + 1))
        fi
    done
    if ((n_missing > 0)); then
        say "up finished in $(elapsed "$start") with $n_missing service(s) missing"
        return 3
    fi
    say "all services up in $(elapsed "$start") (state and logs: $SERVICES_DIR)"
}

cmd_status() {
    local s rc=0 addr
    for s in "${SERVICES[@]}"; do
        case $s in
            postgres) addr=$HOST:$PG_PORT ;;
            mariadb) addr=$HOST:$MYSQL_PORT ;;
            redis) addr=$HOST:$REDIS_PORT ;;
            kafka) addr=$HOST:$KAFKA_PORT ;;
            mailpit) addr=$HOST:$SMTP_PORT ;;
        esac
        if is_up "$s"; then
            printf '%-9s up    %s\n' "$s" "$addr"
        else
            printf '%-9s down  %s\n' "$s" "$addr"
            rc=3
        fi
    done
    return "$rc"
}

cmd_down() {
    local start s
    start=$(now_ms)
    if [[ ! -d $SERVICES_DIR ]]; then
        say "nothing to stop ($SERVICES_DIR does not exist)"
        return 0
    fi
    mkdir -p "$LOG_DIR"
    # Independent instances: stop them concurrently, each bounded by STOP_TIMEOUT_S.
    local -a stopping=()
    for s in "${SERVICES[@]}"; do
        (
            local t
            t=$(now_ms)
            "stop_$s"
            say "$s: stopped in $(elapsed "$t")"
        ) &
        stopping+=($!)
    done
    wait "${stopping[@]}" || true
    rm -rf "$SERVICES_DIR"
    say "all stopped and $SERVICES_DIR removed in $(elapsed "$start")"
}

main() {
    local cmd=${1:-}
    case $cmd in
        up | down | env | status) ;;
        *)
            echo "usage: $0 up|down|env|status" >&2
            exit 2
            ;;
    esac
    if [[ $cmd == down ]]; then
        require_root down
        take_lock
    fi
    case $cmd in
        up) cmd_up ;;
        down) cmd_down ;;
        env) print_env ;;
        status) cmd_status ;;
    esac
}

main "$@"
