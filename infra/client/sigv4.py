"""SigV4 request signing for a deployed modelfn API (``auth: iam``, the default).

API Gateway's IAM authorization checks a Signature Version 4 signature for the
``execute-api`` service over the method, path, query string, signed headers and the
sha256 of the body. :class:`SigV4Signer` computes it with botocore's ``SigV4Auth``, using
the credentials botocore's default chain finds (environment, ``AWS_PROFILE`` /
``~/.aws``, SSO, container or instance role), refreshed on every request when they are
temporary. The region is the one in an ``<id>.execute-api.<region>.amazonaws.com`` URL,
else the one passed, else the configured default.

``modelfn invoke`` and the tritonclient plugin (:mod:`infra.client.triton`) both sign
through this class.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

SERVICE = "execute-api"
#: ``<api-id>.execute-api.<region>.amazonaws.com[.cn]`` (the default endpoint of an API)
_EXECUTE_API_HOST = re.compile(r"^[a-z0-9]+\.execute-api\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?$")
#: headers a previous signature may have left; they are replaced, never signed
AUTH_HEADERS = ("authorization", "x-amz-date", "x-amz-security-token", "x-amz-content-sha256")


class NoCredentials(RuntimeError):
    """botocore's credential chain found nothing to sign with."""


def region_from_url(url: str) -> str | None:
    """The region of an API's default ``execute-api`` endpoint; None for other hosts."""
    match = _EXECUTE_API_HOST.match((urlsplit(url).hostname or "").lower())
    return match.group(1) if match else None


class SigV4Signer:
    """Signs HTTP requests for ``service`` (default ``execute-api``).

    ``credentials`` (botocore ``Credentials``) and ``region`` are optional: without them,
    botocore's default chain and region are used (custom domains need ``region`` or a
    configured default; an ``execute-api`` URL names its own).
    """

    def __init__(self, *, region: str | None = None, service: str = SERVICE,
                 credentials: Any | None = None, session: Any | None = None) -> None:
        self.region = region
        self.service = service
        self._credentials = credentials
        self._session = session

    def _botocore_session(self):
        if self._session is None:
            import botocore.session

            self._session = botocore.session.get_session()
        return self._session

    def credentials(self):
        """The credentials to sign with (looked up once; temporary ones refresh themselves)."""
        if self._credentials is None:
            self._credentials = self._botocore_session().get_credentials()
        if self._credentials is None:
            raise NoCredentials(
                "no AWS credentials to sign the request with (auth: iam needs SigV4): set "
                "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or run `aws sso login`; "
                "a model with auth: none needs no signature")
        return self._credentials

    def region_for(self, url: str) -> str:
        return (region_from_url(url) or self.region
                or self._botocore_session().get_config_variable("region") or "us-east-1")

    def sign(self, method: str, url: str, body: bytes | str | None = b"",
             headers: Mapping[str, str] | None = None) -> dict[str, str]:
        """``headers`` plus ``Authorization``, ``X-Amz-Date`` (and ``X-Amz-Security-Token`` for
        temporary credentials) for this exact request. Send the body and every returned header
        unchanged: they are what the signature covers."""
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        data = body.encode() if isinstance(body, str) else bytes(body or b"")
        clean = {k: str(v) for k, v in (headers or {}).items() if k.lower() not in AUTH_HEADERS}
        request = AWSRequest(method=method.upper(), url=url, data=data, headers=clean)
        frozen = self.credentials().get_frozen_credentials()
        SigV4Auth(frozen, self.service, self.region_for(url)).add_auth(request)
        return dict(request.headers.items())
