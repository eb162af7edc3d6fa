"""Clients for a deployed modelfn API: SigV4 signing for ``auth: iam`` models.

``SigV4Signer`` (botocore only) signs any HTTP request; ``SigV4Plugin`` plugs it into
``tritonclient.http`` (imported on first use, so tritonclient stays optional).
"""

from __future__ import annotations

from typing import Any

from infra.client.sigv4 import SERVICE, NoCredentials, SigV4Signer, region_from_url

__all__ = ["SERVICE", "NoCredentials", "SigV4Plugin", "SigV4Signer", "region_from_url"]


def __getattr__(name: str) -> Any:
    if name == "SigV4Plugin":
        from infra.client.triton import SigV4Plugin

        return SigV4Plugin
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
