#!/usr/bin/env bash
# The demo on the embedded default. Until the fleet can run (next milestone), it shows the
# capacity plan and renders every config for the demo settings, each checked by its real tool.
set -euo pipefail
config=${1:-examples/demo.toml}
bin=.venv/bin
out=.conduitctl-demo/rendered
mkdir -p "$out"

echo "== config check: $config"
$bin/conduitctl config check --config "$config"
echo
echo "== capacity plan for this host, and for the review's 2 vCPU / 4 GB / 1 Gbps VPS"
$bin/conduitctl plan --config "$config"
echo
$bin/conduitctl plan --cpus 2 --memory-gb 4 --nic-mbps 1000 --containers 8 --max-clients 250
echo
echo "== rendered configs (in $out), each checked by its own tool"
for target in nginx haproxy logrotate docker-daemon rsyslog sysctl systemd tc; do
  $bin/conduitctl render "$target" --config "$config" --check -o "$out/$target.out"
done
echo
echo "== the nginx front"
cat "$out/nginx.out"
