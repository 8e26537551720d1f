#!/bin/bash
# edge-console: run the Greengrass V2 nucleus in Docker with the runbook's env file.
# No credentials file is written: the container uses the instance profile through IMDSv2 (the
# instance allows two metadata hops so a container can reach it), and the nucleus provisions the
# thing with those credentials. Restarting needs nothing more than running this script again.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
image="${GREENGRASS_IMAGE:-amazon/aws-iot-greengrass:latest}"
# shellcheck disable=SC1091
source "$here/env"

docker rm -f greengrass >/dev/null 2>&1 || true
docker run -d --name greengrass --restart unless-stopped --network host \
    --env-file "$here/env" \
    -v "$GGC_ROOT_PATH:$GGC_ROOT_PATH" \
    "$image"
echo "edge-console: greengrass started for thing $THING_NAME in group $THING_GROUP_NAME"
