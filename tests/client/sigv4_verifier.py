"""An independent SigV4 verifier (hashlib/hmac, written from AWS's spec, not botocore): what
API Gateway checks, applied to the request exactly as it arrived."""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import parse_qsl, quote

SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"  # AWS's published example key
ACCESS_KEY = "AKIDEXAMPLE"


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def verify(method: str, path: str, query: str, headers: dict[str, str], body: bytes,
           secret: str = SECRET) -> tuple[bool, dict[str, str]]:
    """(valid?, the Authorization fields) for a received request; header names any case."""
    h = {k.lower(): v for k, v in headers.items()}
    auth = h.get("authorization", "")
    if not auth.startswith("AWS4-HMAC-SHA256 "):
        return False, {}
    fields = dict(part.strip().split("=", 1) for part in auth[len("AWS4-HMAC-SHA256 "):].split(","))
    signed = fields["SignedHeaders"].split(";")
    if "host" not in signed or any(name not in h for name in signed):
        return False, fields
    pairs = sorted((quote(k, safe="-_.~"), quote(v, safe="-_.~"))
                   for k, v in parse_qsl(query, keep_blank_values=True))
    canonical = "\n".join([
        method, quote(path, safe="/-_.~"), "&".join(f"{k}={v}" for k, v in pairs),
        "".join(f"{n}:{' '.join(h[n].split())}\n" for n in signed), ";".join(signed),
        hashlib.sha256(body).hexdigest()])
    _, date, region, service, _ = fields["Credential"].split("/")
    amz_date = h["x-amz-date"]
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, f"{date}/{region}/{service}/aws4_request",
                         hashlib.sha256(canonical.encode()).hexdigest()])
    key = _hmac(_hmac(_hmac(_hmac(f"AWS4{secret}".encode(), date), region), service), "aws4_request")
    expected = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, fields["Signature"]) and amz_date[:8] == date, fields
