"""A local stand-in for the AWS Lambda Python 3.13 base image, for offline builds and tests.

``public.ecr.aws/lambda/python:3.13`` cannot be pulled where only PyPI and Debian are
reachable, so the image lane builds the same layout from Debian trixie (whose Python is 3.13,
glibc 2.41 ≥ the base's 2.34, so the manylinux_2_34 lock installs unchanged):

- ``debootstrap --variant=minbase`` of trixie with python3, pip and the CA bundle;
- ``awslambdaric`` (the runtime interface client) and ``boto3`` in ``/var/runtime``, as the
  AWS base ships them (``boto3`` is there so the lock must not shadow it);
- ``/var/task`` as ``LAMBDA_TASK_ROOT`` and working directory, ``/var/lang/bin/python3``,
  ``/var/runtime/bootstrap`` and ``/lambda-entrypoint.sh`` taking the handler as its one
  argument (the image CMD), exactly the entry point contract of the AWS base.

The root filesystem tarball is cached outside the repository (``~/.cache/modelfn/base/``,
``$XDG_CACHE_HOME`` honoured) under a key of every input, and the image is tagged with the
same key, so a second run costs one ``image exists`` call. The host's CA bundle is copied in
because pip inside the builds must trust what the host trusts (a proxy CA, for instance).

``python -m infra.image.standin [--engine podman]`` builds it and prints its tag.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from infra.image.engine import Engine, EngineError, find_engine

SUITE = "trixie"
MIRROR = "http://deb.debian.org/debian"
PACKAGES = ("python3", "python3-pip", "ca-certificates")
#: What the AWS base image carries in /var/runtime (versions as of its late-2026 builds).
RUNTIME_PINS = ("awslambdaric==4.2.2", "boto3==1.44.8")
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
IMAGE_NAME = "localhost/modelfn-lambda-python-standin"

ENTRYPOINT_SH = """#!/bin/sh
# The AWS base image's entry point contract: the handler is the one argument (the CMD).
if [ $# -ne 1 ]; then
  echo "entrypoint requires the handler name to be the first argument" 1>&2
  exit 142
fi
export _HANDLER="$1"
if [ -z "${AWS_LAMBDA_RUNTIME_API}" ]; then
  echo "AWS_LAMBDA_RUNTIME_API is not set: run this image under a Runtime API (the local stack, the SAM CLI or Lambda)" 1>&2
  exit 1
fi
exec /var/runtime/bootstrap
"""

BOOTSTRAP_SH = """#!/bin/sh
export PYTHONPATH="/var/runtime${PYTHONPATH:+:$PYTHONPATH}"
exec /var/lang/bin/python3 -m awslambdaric "$_HANDLER"
"""

CONTAINERFILE = """FROM {rootfs}
RUN mkdir -p /var/task /var/runtime /var/lang/bin \\
    && ln -sf /usr/bin/python3 /var/lang/bin/python3 \\
    && ln -sf /usr/bin/python3 /var/lang/bin/python3.13 \\
    && rm -f /usr/lib/python3*/EXTERNALLY-MANAGED \\
    && python3 -m pip install --no-cache-dir --target /var/runtime {pins}
COPY lambda-entrypoint.sh /lambda-entrypoint.sh
COPY bootstrap /var/runtime/bootstrap
RUN chmod 0755 /lambda-entrypoint.sh /var/runtime/bootstrap
ENV LANG=en_US.UTF-8 TZ=:/etc/localtime \\
    PATH=/var/lang/bin:/usr/local/bin:/usr/bin:/bin \\
    LAMBDA_TASK_ROOT=/var/task LAMBDA_RUNTIME_DIR=/var/runtime
WORKDIR /var/task
ENTRYPOINT ["/lambda-entrypoint.sh"]
"""


def cache_dir() -> Path:
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return root / "modelfn"


def _ca_bundle() -> bytes:
    return HOST_CA_BUNDLE.read_bytes() if HOST_CA_BUNDLE.is_file() else b""


def rootfs_key() -> str:
    """Key of the debootstrapped root filesystem: suite, mirror, packages, CA bundle."""
    h = hashlib.sha256()
    for part in (SUITE, MIRROR, *PACKAGES):
        h.update(part.encode() + b"\0")
    h.update(_ca_bundle())
    return h.hexdigest()[:12]


def image_key() -> str:
    """Key of the stand-in image: the root filesystem's key plus everything layered on it."""
    h = hashlib.sha256(rootfs_key().encode())
    for part in (*RUNTIME_PINS, ENTRYPOINT_SH, BOOTSTRAP_SH, CONTAINERFILE):
        h.update(part.encode() + b"\0")
    return h.hexdigest()[:12]


def image_tag() -> str:
    return f"{IMAGE_NAME}:{image_key()}"


def rootfs_tarball(log=print) -> Path:
    """The cached trixie root filesystem tarball, debootstrapped when missing."""
    dest = cache_dir() / "base" / f"trixie-rootfs-{rootfs_key()}.tar"
    if dest.is_file():
        return dest
    if shutil.which("debootstrap") is None:
        raise EngineError("debootstrap is not installed; install it with "
                          "`apt-get install debootstrap` (make test does this itself)")
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="modelfn-rootfs-", dir=dest.parent) as tmp:
        root = Path(tmp) / "root"
        log(f"debootstrap {SUITE} (minbase + {', '.join(PACKAGES)}) …")
        subprocess.run(["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}",
                        SUITE, str(root), MIRROR], check=True, stdout=subprocess.DEVNULL)
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc",
                     "usr/share/man", "usr/share/locale"):
            shutil.rmtree(root / junk, ignore_errors=True)
        bundle = _ca_bundle()
        if bundle:
            (root / "etc/ssl/certs").mkdir(parents=True, exist_ok=True)
            (root / "etc/ssl/certs/ca-certificates.crt").write_bytes(bundle)
        partial = dest.with_suffix(".partial")
        subprocess.run(["tar", "--numeric-owner", "-C", str(root), "-cf", str(partial), "."],
                       check=True)
        partial.rename(dest)  # whole or absent: an interrupted run leaves no half tarball
    return dest


def ensure_standin(engine: Engine, log=print) -> str:
    """Build the stand-in base image with ``engine`` unless it exists; return its tag."""
    tag = image_tag()
    if engine.image_exists(tag):
        return tag
    rootfs_tag = f"{IMAGE_NAME}-rootfs:{rootfs_key()}"
    if not engine.image_exists(rootfs_tag):
        engine.import_tarball(rootfs_tarball(log), rootfs_tag)
    with tempfile.TemporaryDirectory(prefix="modelfn-standin-") as tmp:
        ctx = Path(tmp)
        (ctx / "lambda-entrypoint.sh").write_text(ENTRYPOINT_SH)
        (ctx / "bootstrap").write_text(BOOTSTRAP_SH)
        (ctx / "Dockerfile").write_text(CONTAINERFILE.format(rootfs=rootfs_tag,
                                                             pins=" ".join(RUNTIME_PINS)))
        log(f"building the Lambda base stand-in {tag} …")
        engine.build(context=ctx, tag=tag, platform="linux/amd64")
    return tag


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m infra.image.standin", description=__doc__.split("\n")[0])
    p.add_argument("--engine", choices=("docker", "podman", "buildah"), default=None)
    args = p.parse_args(argv)
    try:
        engine = find_engine(args.engine)
        print(ensure_standin(engine, log=lambda m: print(m, file=sys.stderr)))
    except (EngineError, subprocess.CalledProcessError) as exc:
        print(f"stand-in base: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
