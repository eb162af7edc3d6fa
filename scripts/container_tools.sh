#!/usr/bin/env bash
# What the image lane of `make test` needs, installed when missing (Debian/Ubuntu, as root or
# with sudo): podman + runc to build and run images, debootstrap (+ wget) for the offline
# stand-in of the AWS Lambda base image. Writes /etc/containers/containers.conf only when
# none exists, with the settings a container sandbox like CI's needs (no systemd, cgroup v1,
# no CAP_SYS_RESOURCE): runc, cgroupfs, fixed ulimits. Never fails the build: without root or
# apt the image tests skip and say why.
set -uo pipefail
missing=()
for tool in podman runc debootstrap wget; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
SUDO=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo -n"; else
    [ ${#missing[@]} -eq 0 ] || echo "image lane: ${missing[*]} missing and no root/sudo to install them; the image tests will skip" >&2
    exit 0
  fi
fi
if [ ${#missing[@]} -gt 0 ]; then
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "image lane: ${missing[*]} missing and no apt-get; install them to run the image tests" >&2
    exit 0
  fi
  echo "image lane: installing ${missing[*]} (apt) …" >&2
  $SUDO apt-get update -qq >/dev/null \
    && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
         podman runc debootstrap wget ca-certificates uidmap >/dev/null \
    || echo "image lane: apt-get install failed; the image tests will skip" >&2
fi
conf=/etc/containers/containers.conf
if [ ! -e "$conf" ] && command -v podman >/dev/null 2>&1; then
  $SUDO mkdir -p /etc/containers
  $SUDO tee "$conf" >/dev/null <<'CONF'
# Written by modelfn's image lane (scripts/container_tools.sh) because none existed: the
# settings a container sandbox needs (no systemd, cgroup v1, no CAP_SYS_RESOURCE). Podman,
# buildah and the SAM CLI (through `podman system service`) all read it.
[containers]
default_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
CONF
fi
exit 0
