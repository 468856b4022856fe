#!/usr/bin/env python3
"""Minimal SigV4-signed S3 requests (stdlib only) for the integration scripts and tests.

  s3_admin.py mkbucket BUCKET        create the bucket (ok if it exists and is ours)
  s3_admin.py ready                  exit 0 once the server answers a signed ListBuckets
  s3_admin.py ls BUCKET [PREFIX]     print the keys under PREFIX
  s3_admin.py get BUCKET KEY         write the object's bytes to stdout

Reads S3_ENDPOINT, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION from the environment.
Path-style addressing, as S3-compatible servers on an IP address need.
"""

import datetime
import hashlib
import hmac
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET


def sign(method, url, body=b""):
    """SigV4 headers; the URL's path is already URI-encoded (as S3 canonicalizes it)."""
    key_id = os.environ["AWS_ACCESS_KEY_ID"]
    secret = os.environ["AWS_SECRET_ACCESS_KEY"]
    region = os.environ.get("AWS_REGION", "us-east-1")
    u = urllib.parse.urlsplit(url)
    now = datetime.datetime.now(datetime.timezone.utc)
    amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    payload = hashlib.sha256(body).hexdigest()
    query = "&".join(
        f"{urllib.parse.quote(k, safe='-_.~')}={urllib.parse.quote(v, safe='-_.~')}"
        for k, v in sorted(urllib.parse.parse_qsl(u.query, keep_blank_values=True))
    )
    headers = {"host": u.netloc, "x-amz-content-sha256": payload, "x-amz-date": amz_date}
    signed = ";".join(sorted(headers))
    canonical = "\n".join([
        method, u.path or "/", query,
        "".join(f"{k}:{headers[k]}\n" for k in sorted(headers)), signed, payload])
    scope = f"{day}/{region}/s3/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope,
                         hashlib.sha256(canonical.encode()).hexdigest()])
    k = ("AWS4" + secret).encode()
    for part in (day, region, "s3", "aws4_request"):
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()
    sig = hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = (f"AWS4-HMAC-SHA256 Credential={key_id}/{scope}, "
                                f"SignedHeaders={signed}, Signature={sig}")
    return headers


def request(method, path, query="", body=b""):
    url = os.environ["S3_ENDPOINT"].rstrip("/") + path + (("?" + query) if query else "")
    req = urllib.request.Request(url, data=body if method == "PUT" else None, method=method,
                                 headers=sign(method, url, body))
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def main():
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    if cmd == "ready":
        try:
            status, body = request("GET", "/")
        except OSError as e:
            sys.exit(f"s3 not answering: {e}")
        sys.exit(0 if status == 200 else f"s3 answered {status}: {body[:200]!r}")
    if cmd == "mkbucket":
        bucket = sys.argv[2]
        status, body = request("PUT", f"/{bucket}")
        if status == 200 or b"BucketAlreadyOwnedByYou" in body:
            return
        sys.exit(f"creating bucket {bucket} failed: {status} {body[:300]!r}")
    if cmd == "ls":
        bucket, prefix = sys.argv[2], (sys.argv[3] if len(sys.argv) > 3 else "")
        token = None
        while True:
            q = "list-type=2&prefix=" + urllib.parse.quote(prefix, safe="")
            if token:
                q += "&continuation-token=" + urllib.parse.quote(token, safe="")
            status, body = request("GET", f"/{bucket}", q)
            if status != 200:
                sys.exit(f"listing {bucket} failed: {status} {body[:300]!r}")
            root = ET.fromstring(body)
            ns = root.tag.split("}")[0] + "}" if root.tag.startswith("{") else ""
            for c in root.iter(f"{ns}Contents"):
                print(c.find(f"{ns}Key").text)
            token_el = root.find(f"{ns}NextContinuationToken")
            if token_el is None or not token_el.text:
                return
            token = token_el.text
    if cmd == "get":
        status, body = request("GET", f"/{sys.argv[2]}/{urllib.parse.quote(sys.argv[3], safe='/-_.~')}")
        if status != 200:
            sys.exit(f"get failed: {status} {body[:300]!r}")
        sys.stdout.buffer.write(body)
        return
    sys.exit(__doc__)


if __name__ == "__main__":
    main()
