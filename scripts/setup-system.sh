#!/usr/bin/env bash
# Install the system packages conduitctl and its tests use, when missing (Debian, as root).
set -euo pipefail
# python3: the system Python, for the test scripts that run as nobody (who cannot reach the venv);
# libcap2-bin: capsh, for a test that drops CAP_SYS_RESOURCE
packages=(nginx libnginx-mod-stream haproxy docker.io debootstrap logrotate rsyslog iproute2 nftables prometheus python3 libcap2-bin)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "error: missing packages: ${missing[*]}; run as root or: sudo apt-get install ${missing[*]}" >&2
  exit 2
fi
echo "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null
# Debian's nginx/haproxy/prometheus packages try to start their services: keep them stopped.
printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
chmod +x /usr/sbin/policy-rc.d
trap 'rm -f /usr/sbin/policy-rc.d' EXIT
apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
