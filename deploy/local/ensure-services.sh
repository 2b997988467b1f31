#!/usr/bin/env bash
# Makes sure the local RabbitMQ (127.0.0.1:5672) and Redis (127.0.0.1:6379) that Switchboard and
# its tests use are running. Idempotent: checks first, starts only what is down, then waits.
# The start commands are those of this machine kind (Debian packages, run as root).
set -euo pipefail

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for() { # name port seconds
  local i
  for ((i = 0; i < $3 * 10; i++)); do
    port_open "$2" && return 0
    sleep 0.1
  done
  echo "ensure-services: $1 did not come up on port $2 within $3 s" >&2
  return 1
}

if ! port_open 6379; then
  echo "ensure-services: starting Redis" >&2
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  wait_for Redis 6379 30
fi

if ! port_open 5672; then
  echo "ensure-services: starting RabbitMQ" >&2
  rabbitmq-server -detached
  wait_for RabbitMQ 5672 90
  # The port opens before the broker is fully booted; wait for it to say so.
  timeout 60 rabbitmqctl await_startup >/dev/null 2>&1 || true
fi
