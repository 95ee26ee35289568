#!/usr/bin/env bash
# Runs `npx jest <args>` where the machine's standard PostgreSQL (5432), Redis
# (6379) and NATS (4222) cannot be reached, so the run depends only on the
# private servers testing/global-setup.ts starts from the installed binaries:
# the situation of a machine that has only the Debian packages. As root with
# unshare(1) and ip(8): in a new network namespace (only its own loopback).
# Elsewhere: IOT_TEST_STANDARD_SERVICES=off, which makes the setup ignore the
# standard servers (a test that hard-codes one could still reach it there).
set -euo pipefail
cd "$(dirname "$0")/.."
unset TEST_DATABASE_URL TEST_REDIS_URL TEST_NATS_URL DATABASE_URL REDIS_URL NATS_URL
if [ "$(id -u)" -eq 0 ] && command -v unshare >/dev/null && command -v ip >/dev/null && unshare -n true 2>/dev/null; then
  echo "jest in a network namespace of its own: the standard servers are out of reach" >&2
  exec unshare -n bash -c 'ip link set lo up && exec npx jest "$@"' bash "$@"
fi
echo "no network namespace here: IOT_TEST_STANDARD_SERVICES=off" >&2
IOT_TEST_STANDARD_SERVICES=off exec npx jest "$@"
