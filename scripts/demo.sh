#!/usr/bin/env bash
# The demo on the embedded default (examples/demo.toml): 4 simulator backends as local
# processes behind nginx on high loopback ports, the live status under a short load test,
# then a clean stop. Ctrl-C stops it early; nothing is left running either way.
set -euo pipefail
config=${1:-examples/demo.toml}
bin=.venv/bin

echo "== config check: $config"
$bin/conduitctl config check --config "$config"
echo
echo "== capacity plan for the review's 2 vCPU / 4 GB / 1 Gbps VPS running 8 x 250 clients"
$bin/conduitctl plan --cpus 2 --memory-gb 4 --nic-mbps 1000 --containers 8 --max-clients 250
echo
echo "== the fleet: up, live status under load, down"
$bin/conduitctl demo --config "$config" --clients "${DEMO_CLIENTS:-2000}" --duration "${DEMO_SECONDS:-15}"
