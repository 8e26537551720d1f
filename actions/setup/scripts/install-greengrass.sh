#!/bin/bash
# edge-console: prepare the edge server for the Greengrass V2 nucleus (Amazon Linux 2023 or 2).
# Installs Docker and creates the nucleus root on the host, so component logs stay readable at
# /greengrass/v2/logs on the host (edge-console logs reads them through SSM Run Command).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck disable=SC1091
source "$here/env"

if command -v dnf >/dev/null; then
    dnf install -y docker
else
    yum install -y docker
fi
systemctl enable --now docker
install -d -m 0755 "$GGC_ROOT_PATH"
echo "edge-console: docker $(docker --version | cut -d' ' -f3) ready, root $GGC_ROOT_PATH"
