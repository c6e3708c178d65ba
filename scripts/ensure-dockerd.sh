#!/usr/bin/env bash
# Start dockerd when none answers. No bridge and no iptables: containers use host networking,
# and traffic stays on loopback.
set -euo pipefail
if docker info >/dev/null 2>&1; then
  exit 0
fi
if ! command -v dockerd >/dev/null; then
  echo "error: dockerd not found; install it: apt-get install docker.io" >&2
  exit 2
fi
log=${DOCKERD_LOG:-/var/log/conduitctl-dockerd.log}
nohup dockerd --bridge=none --iptables=false >"$log" 2>&1 &
for _ in $(seq 1 60); do
  docker info >/dev/null 2>&1 && exit 0
  sleep 0.5
done
echo "error: dockerd did not start within 30 s; see $log" >&2
exit 1
