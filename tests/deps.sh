#!/usr/bin/env bash
# deps.sh - installs the Debian packages larder needs that are missing.
#
#   tests/deps.sh          what building and running larder needs
#   tests/deps.sh --test   that, plus what the test suite drives (curl, node, aws)
#
# Uses apt-get directly as root, otherwise through sudo. Installs nothing that
# is already present, so it is quick on a prepared machine.
set -euo pipefail

build_packages=(build-essential cmake pkg-config libh2o-evloop-dev libcurl4-openssl-dev libssl-dev
                liblmdb-dev libjansson-dev)
test_packages=(python3 curl openssl ca-certificates procps)

packages=("${build_packages[@]}")
if [[ "${1:-}" == "--test" ]]; then
    packages+=("${test_packages[@]}")
    # Clients may come from elsewhere (node from nodesource, aws from pip):
    # only fall back to Debian's packages when the command is absent.
    command -v node >/dev/null || packages+=(nodejs)
    command -v npm >/dev/null || packages+=(npm)
    command -v aws >/dev/null || packages+=(awscli)
    # promtool checks /_larder/metrics (tests/integration/test_metrics.py); Debian ships it with prometheus.
    command -v promtool >/dev/null || packages+=(prometheus)
fi

missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

echo "deps.sh: installing ${missing[*]}" >&2
if [[ $(id -u) -eq 0 ]]; then
    sudo=()
elif command -v sudo >/dev/null; then
    sudo=(sudo)
else
    echo "deps.sh: need root or sudo to install: ${missing[*]}" >&2
    exit 1
fi
"${sudo[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
