#!/usr/bin/env bash
# Make sure the services the integration tests use are running: Redis and PostgreSQL.
set -euo pipefail
log() { printf '[services] %s\n' "$*" >&2; }
export DEBIAN_FRONTEND=noninteractive

if ! command -v redis-server >/dev/null; then
  log "installing redis-server"; apt-get update -q >&2; apt-get install -y -q redis-server >&2
fi
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  log "starting Redis on 127.0.0.1:6379"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
fi

if ! command -v pg_ctlcluster >/dev/null; then
  log "installing postgresql"; apt-get update -q >&2; apt-get install -y -q postgresql >&2
fi
if ! pg_isready -q -h 127.0.0.1 -p 5432; then
  log "starting PostgreSQL"
  ver=$(ls /etc/postgresql | sort -V | tail -n 1)
  pg_ctlcluster --skip-systemctl-redirect "$ver" main start || true
fi
for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
pg_isready -h 127.0.0.1 -p 5432 >&2
# The tests connect as user postgres without a password (trust auth on 127.0.0.1).
if ! psql -h 127.0.0.1 -U postgres -c 'select 1' >/dev/null 2>&1; then
  log "PostgreSQL on 127.0.0.1 does not accept user postgres without a password;"
  log "enabling trust auth for 127.0.0.1 in pg_hba.conf"
  hba=$(ls /etc/postgresql/*/main/pg_hba.conf | tail -n 1)
  sed -i '1i host all all 127.0.0.1/32 trust' "$hba"
  ver=$(ls /etc/postgresql | sort -V | tail -n 1)
  pg_ctlcluster --skip-systemctl-redirect "$ver" main reload
fi
redis-cli -h 127.0.0.1 ping >&2
