#!/usr/bin/env bash
# Make the database services the test suite needs ready on this machine:
#
#   PostgreSQL  127.0.0.1:5432  trust auth for loopback TCP, database "test"
#   MariaDB     127.0.0.1:3306  root with an empty password, database "test"
#   Redis       127.0.0.1:6379  nothing kept on disk
#
# For each one: check it; install the Debian package (apt-get) if the server
# is missing; start it if it is stopped; fix the login and create the
# database if needed. Idempotent, and quick when everything already runs.
# Run as root on Debian 12 (root is only needed when something must change).
# Prints one line per service; exits non-zero if a service can't be made ready.
set -euo pipefail

WAIT_SECONDS=30     # how long to wait for a server to accept connections

PG_PORT=5432
MY_PORT=3306
REDIS_PORT=6379

export PGCONNECT_TIMEOUT=5

die() { echo "services.sh: $*" >&2; exit 1; }
report() { local who=$1 s; shift; s=$(printf '%s, ' "$@"); echo "$who: ${s%, }"; }
have() { command -v "$1" >/dev/null 2>&1; }
need_root() { [[ $EUID -eq 0 ]] || die "$1: must run as root to $2"; }

# True if something accepts TCP connections on 127.0.0.1:$1.
port_open() { timeout 3 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }

# wait_for SECONDS COMMAND...: run COMMAND until it succeeds or time runs out.
wait_for() {
    local deadline=$((SECONDS + $1)); shift
    until "$@"; do
        ((SECONDS < deadline)) || return 1
        sleep 0.5
    done
}

# start_and_wait WHO READY START: run START, then wait up to WAIT_SECONDS for
# READY, re-running START every 2 s. START must do nothing while the server is
# already up or coming up; the retries cover an old server that was still
# shutting down at the first try. START's output goes to $START_LOG.
start_and_wait() {
    local who=$1 ready=$2 start=$3 deadline=$((SECONDS + WAIT_SECONDS)) next=0
    need_root "$who" "start the server"
    : >"$START_LOG"
    until "$ready"; do
        ((SECONDS < deadline)) || return 1
        if ((SECONDS >= next)); then
            "$start" >>"$START_LOG" 2>&1 || true
            next=$((SECONDS + 2))
        fi
        sleep 0.5
    done
}

# show_log FILE [LABEL]: the end of a log file on stderr (for failure messages).
show_log() {
    if [[ -s $1 ]]; then
        echo "--- last lines of ${2:-$1}:" >&2
        tail -n 20 "$1" >&2 || true
    fi
}

# --- apt ---------------------------------------------------------------------

APT_UPDATED=0
POLICY_RC=/usr/sbin/policy-rc.d
POLICY_RC_OURS=0

START_LOG=$(mktemp)

cleanup() {
    if ((POLICY_RC_OURS)); then rm -f "$POLICY_RC"; fi
    rm -f "$START_LOG"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# apt_install WHO PACKAGE...: install packages; `apt-get update` once per run.
# While installing, package scripts must not start the servers with their
# stock settings (e.g. a Redis that saves to disk): a temporary policy-rc.d
# forbids it, unless the machine already has a policy-rc.d of its own.
# The servers are then started below, the same way as a stopped server.
apt_install() {
    local who=$1; shift
    need_root "$who" "install $*"
    have apt-get || die "$who: $* missing and apt-get is not available"
    if [[ ! -e $POLICY_RC ]]; then
        printf '#!/bin/sh\n# temporary, from scripts/services.sh\nexit 101\n' >"$POLICY_RC"
        chmod 755 "$POLICY_RC"
        POLICY_RC_OURS=1
    fi
    if ((!APT_UPDATED)); then
        apt-get -q -o DPkg::Lock::Timeout=120 update >/dev/null ||
            die "$who: apt-get update failed"
        APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
        -o DPkg::Lock::Timeout=120 "$@" >/dev/null ||
        die "$who: apt-get install -y $* failed"
    if ((POLICY_RC_OURS)); then rm -f "$POLICY_RC"; POLICY_RC_OURS=0; fi
}

# --- PostgreSQL --------------------------------------------------------------

pg_ready() { pg_isready -q -t 3 -h 127.0.0.1 -p "$PG_PORT"; }
pg_sql() { psql -w -X -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 -tA "$@"; }
pg_login() { pg_sql -c 'SELECT 1' >/dev/null 2>&1; }

PG_VER=
PG_NAME=
pg_start() {
    # pg_ctlcluster fails on a cluster that is already running: check first.
    if pg_lsclusters -h | awk -v v="$PG_VER" -v n="$PG_NAME" \
        '$1 == v && $2 == n && $4 ~ /online/ {up = 1} END {exit !up}'; then
        return 0
    fi
    pg_ctlcluster --skip-systemctl-redirect "$PG_VER" "$PG_NAME" start
}

# Prints "VERSION CLUSTER" of the cluster to manage: the one on our port, else
# the newest version's "main" (created if it doesn't exist).
pg_cluster() {
    local c ver
    c=$(pg_lsclusters -h 2>/dev/null | awk -v p="$PG_PORT" '$3 == p {print $1, $2; exit}')
    if [[ -n $c ]]; then echo "$c"; return; fi
    ver=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)
    [[ -n $ver ]] || ver=$(ls /usr/lib/postgresql 2>/dev/null | sort -V | tail -n 1)
    [[ -n $ver ]] || die "postgresql: no PostgreSQL version found under /usr/lib/postgresql"
    echo "$ver main"
}

setup_postgresql() {
    local did=() c ver name out hba

    if ! have pg_isready || ! have psql; then
        if port_open "$PG_PORT"; then
            apt_install postgresql postgresql-client
            did+=("installed client")
        else
            apt_install postgresql postgresql postgresql-client
            did+=(installed)
        fi
    fi

    if pg_ready; then
        did+=(running)
    else
        if ! have pg_ctlcluster || ! compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null; then
            apt_install postgresql postgresql
            did+=(installed)
        fi
        need_root postgresql "start the server"
        c=$(pg_cluster)
        read -r PG_VER PG_NAME <<<"$c"
        if [[ ! -f /etc/postgresql/$PG_VER/$PG_NAME/postgresql.conf ]]; then
            out=$(pg_createcluster --port="$PG_PORT" "$PG_VER" "$PG_NAME" 2>&1) ||
                die "postgresql: pg_createcluster $PG_VER $PG_NAME failed: $out"
            did+=("created cluster $PG_VER/$PG_NAME")
        fi
        if ! start_and_wait postgresql pg_ready pg_start; then
            show_log "$START_LOG" "the start command's output"
            show_log "/var/log/postgresql/postgresql-$PG_VER-$PG_NAME.log"
            die "postgresql: not accepting connections on 127.0.0.1:$PG_PORT after ${WAIT_SECONDS}s"
        fi
        did+=("started $PG_VER/$PG_NAME")
    fi

    # Trust auth for loopback TCP, so `psql -h 127.0.0.1 -U postgres` needs no password.
    if ! pg_login; then
        need_root postgresql "edit pg_hba.conf"
        c=$(pg_cluster)
        read -r ver name <<<"$c"
        hba=/etc/postgresql/$ver/$name/pg_hba.conf
        [[ -f $hba ]] || die "postgresql: cannot log in as postgres over TCP, and $hba is missing"
        # The first matching line wins: put ours first.
        sed -i '1i # Added by scripts/services.sh: trust loopback TCP for the test suite.\
host    all             all             127.0.0.1/32            trust\
host    all             all             ::1/128                 trust' "$hba"
        pg_ctlcluster --skip-systemctl-redirect "$ver" "$name" reload >/dev/null 2>&1 ||
            die "postgresql: pg_ctlcluster $ver $name reload failed"
        if ! wait_for 10 pg_login; then
            pg_sql -c 'SELECT 1' >&2 || true
            die "postgresql: still cannot log in as postgres over TCP after editing $hba"
        fi
        did+=("trust auth set in $hba")
    fi

    if [[ $(pg_sql -c "SELECT 1 FROM pg_database WHERE datname='test'") != 1 ]]; then
        pg_sql -c 'CREATE DATABASE test' >/dev/null || die "postgresql: CREATE DATABASE test failed"
        did+=("database test created")
    else
        did+=("database test ready")
    fi
    report postgresql "${did[@]}"
}

# --- MariaDB -----------------------------------------------------------------

MY_ADMIN=
MY_CLIENT=
my_find_clients() {
    MY_ADMIN=$(command -v mariadb-admin || command -v mysqladmin || true)
    MY_CLIENT=$(command -v mariadb || command -v mysql || true)
}
# `ping` succeeds whenever the server answers, even if it refuses the login.
my_ready() { "$MY_ADMIN" --no-defaults --connect-timeout=3 -h 127.0.0.1 -P "$MY_PORT" -uroot ping >/dev/null 2>&1; }
my_sql() { "$MY_CLIENT" --no-defaults --connect-timeout=5 -h 127.0.0.1 -P "$MY_PORT" -uroot -N -B "$@"; }
my_login() { my_sql -e 'SELECT 1' >/dev/null 2>&1; }
# mariadbd refuses to run as root unless told which user to become.
# --oknodo: nothing to do while a mariadbd process exists.
my_start() {
    start-stop-daemon --start --quiet --oknodo --background --output /var/log/mysql/ci.log \
        --exec /usr/sbin/mariadbd -- --user=mysql
}

setup_mariadb() {
    local did=() out

    my_find_clients
    if [[ -z $MY_ADMIN || -z $MY_CLIENT ]]; then
        if port_open "$MY_PORT"; then
            apt_install mariadb mariadb-client
            did+=("installed client")
        else
            apt_install mariadb mariadb-server mariadb-client
            did+=(installed)
        fi
        my_find_clients
        [[ -n $MY_ADMIN && -n $MY_CLIENT ]] || die "mariadb: client tools still missing after install"
    fi

    if my_ready; then
        did+=(running)
    else
        if [[ ! -x /usr/sbin/mariadbd ]]; then
            apt_install mariadb mariadb-server mariadb-client
            did+=(installed)
        fi
        need_root mariadb "start the server"
        install -d -o mysql -g mysql -m 0755 /run/mysqld
        [[ -d /var/log/mysql ]] || install -d -o mysql -g adm -m 2750 /var/log/mysql
        if [[ ! -d /var/lib/mysql/mysql ]]; then
            out=$(mariadb-install-db --user=mysql --datadir=/var/lib/mysql 2>&1) ||
                { echo "$out" >&2; die "mariadb: mariadb-install-db failed"; }
            did+=("initialised /var/lib/mysql")
        fi
        if ! start_and_wait mariadb my_ready my_start; then
            show_log "$START_LOG" "the start command's output"
            show_log /var/log/mysql/ci.log
            show_log /var/log/mysql/error.log
            die "mariadb: not accepting connections on 127.0.0.1:$MY_PORT after ${WAIT_SECONDS}s"
        fi
        did+=(started)
    fi

    # root must log in over TCP with an empty password. Fix it as root over the
    # unix socket (Debian's root@localhost allows unix_socket auth). Without
    # skip-name-resolve, TCP from 127.0.0.1 is root@localhost; with it,
    # root@127.0.0.1: set up both.
    if ! my_login; then
        need_root mariadb "fix root's login"
        out=$("$MY_CLIENT" -uroot 2>&1 <<'SQL'
CREATE USER IF NOT EXISTS 'root'@'localhost';
ALTER USER 'root'@'localhost' IDENTIFIED VIA mysql_native_password USING PASSWORD('') OR unix_socket;
CREATE USER IF NOT EXISTS 'root'@'127.0.0.1';
ALTER USER 'root'@'127.0.0.1' IDENTIFIED VIA mysql_native_password USING PASSWORD('');
GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;
FLUSH PRIVILEGES;
SQL
        ) || die "mariadb: root cannot log in over TCP, and fixing it over the unix socket failed: $out"
        if ! my_login; then
            my_sql -e 'SELECT 1' >&2 || true
            die "mariadb: root still cannot log in over TCP with an empty password"
        fi
        did+=("root login fixed")
    fi

    if [[ -z $(my_sql -e "SHOW DATABASES LIKE 'test'") ]]; then
        my_sql -e 'CREATE DATABASE IF NOT EXISTS test CHARACTER SET utf8mb4' ||
            die "mariadb: CREATE DATABASE test failed"
        did+=("database test created")
    else
        did+=("database test ready")
    fi
    report mariadb "${did[@]}"
}

# --- Redis -------------------------------------------------------------------

redis_ping() { timeout 5 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null; }
redis_ready() { [[ $(redis_ping) == PONG ]]; }
redis_start() {
    port_open "$REDIS_PORT" && return 0     # up, or an old one still going down
    mkdir -p /var/lib/redis /var/log/redis
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$REDIS_PORT" \
        --save "" --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log
}

setup_redis() {
    local did=()

    if ! have redis-cli; then
        if port_open "$REDIS_PORT"; then
            apt_install redis redis-tools
            did+=("installed client")
        else
            apt_install redis redis-server redis-tools
            did+=(installed)
        fi
    fi

    if redis_ready; then
        did+=(running)
    else
        if ! have redis-server; then
            apt_install redis redis-server redis-tools
            did+=(installed)
            # If the package started its own instance anyway (stock config,
            # saves to disk), replace it with ours.
            if redis_ready; then
                timeout 10 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
            fi
        fi
        if ! start_and_wait redis redis_ready redis_start; then
            show_log "$START_LOG" "the start command's output"
            show_log /var/log/redis/ci.log
            die "redis: not answering PING on 127.0.0.1:$REDIS_PORT after ${WAIT_SECONDS}s"
        fi
        did+=(started)
    fi
    report redis "${did[@]}"
}

setup_postgresql
setup_mariadb
setup_redis
