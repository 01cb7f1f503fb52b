"""A Web Push service for the tests, on 127.0.0.1: it makes subscriptions
(a browser's P-256 key pair and auth secret), and for each push it checks
the VAPID token (RFC 8292: ES256 over the endpoint's origin, with the key
in `k`) and decrypts the payload with the independent `http_ece` library
(RFC 8291 / RFC 8188). Prints "PORT <n>" once listening.

  GET  /new            -> {"id", "endpoint", "keys": {"p256dh", "auth"}}
  GET  /new?gone=1     -> a subscription whose pushes answer 410 Gone
  POST /push/<id>      -> 201 when the token verifies and the body decrypts
  GET  /received       -> every push seen: {"id", "ok", "payload"|"error"}
"""

import base64
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import http_ece
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

SUBS = {}
RECEIVED = []
LOCK = threading.Lock()


def b64d(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def b64e(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def check_vapid(header, origin):
    if not header.startswith("vapid "):
        raise ValueError("Authorization is not vapid: %r" % header)
    parts = dict(p.strip().split("=", 1) for p in header[len("vapid "):].split(","))
    token, key = parts["t"], parts["k"]
    head, claims, sig = token.split(".")
    if json.loads(b64d(head)) != {"typ": "JWT", "alg": "ES256"}:
        raise ValueError("JWT header %r" % b64d(head))
    raw = b64d(sig)
    if len(raw) != 64:
        raise ValueError("ES256 signature of %d bytes" % len(raw))
    pub = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b64d(key))
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    pub.verify(der, (head + "." + claims).encode(), ec.ECDSA(hashes.SHA256()))
    c = json.loads(b64d(claims))
    now = time.time()
    if c["aud"] != origin:
        raise ValueError("aud %r, expected %r" % (c["aud"], origin))
    if not (now < c["exp"] <= now + 24 * 3600):
        raise ValueError("exp %r out of range" % c["exp"])
    if not (c["sub"].startswith("mailto:") or c["sub"].startswith("https:")):
        raise ValueError("sub %r" % c["sub"])


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def answer(self, status, obj=None):
        body = json.dumps(obj).encode() if obj is not None else b""
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        port = self.server.server_address[1]
        if self.path.startswith("/new"):
            key = ec.generate_private_key(ec.SECP256R1())
            pub = key.public_key().public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
            )
            auth = os.urandom(16)
            sid = b64e(os.urandom(9))
            gone = "gone=1" in self.path
            with LOCK:
                SUBS[sid] = (key, auth, gone)
            self.answer(200, {
                "id": sid,
                "endpoint": "http://127.0.0.1:%d/push/%s" % (port, sid),
                "keys": {"p256dh": b64e(pub), "auth": b64e(auth)},
            })
        elif self.path == "/received":
            with LOCK:
                self.answer(200, list(RECEIVED))
        else:
            self.answer(404, {})

    def do_POST(self):
        port = self.server.server_address[1]
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        sid = self.path.rsplit("/", 1)[-1]
        with LOCK:
            sub = SUBS.get(sid)
        if sub is None:
            return self.answer(404, {})
        key, auth, gone = sub
        if gone:
            with LOCK:
                RECEIVED.append({"id": sid, "ok": False, "error": "gone"})
            return self.answer(410, {})
        try:
            if self.headers.get("Content-Encoding") != "aes128gcm":
                raise ValueError("Content-Encoding %r" % self.headers.get("Content-Encoding"))
            if self.headers.get("TTL") is None:
                raise ValueError("no TTL")
            check_vapid(self.headers.get("Authorization", ""), "http://127.0.0.1:%d" % port)
            plain = http_ece.decrypt(body, private_key=key, auth_secret=auth, version="aes128gcm")
            rec = {"id": sid, "ok": True, "payload": json.loads(plain)}
            status = 201
        except (ValueError, KeyError, InvalidSignature, Exception) as e:  # noqa: BLE001
            rec = {"id": sid, "ok": False, "error": "%s: %s" % (type(e).__name__, e)}
            status = 400
        with LOCK:
            RECEIVED.append(rec)
        self.answer(status, {})


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print("PORT %d" % server.server_address[1], flush=True)
    # Ends with the test: its stdin closes when the test process goes.
    threading.Thread(target=server.serve_forever, daemon=True).start()
    sys.stdin.read()


if __name__ == "__main__":
    main()
