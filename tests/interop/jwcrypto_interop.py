#!/usr/bin/env python3
"""Interoperability check of v3 AuthIDs with Python jwcrypto.

The AuthID contract (docs: SPEC section 2) says any standard JOSE library
holding the private JWK can open an AuthID, and any system holding the
public key can seal one. This script plays that other system:

  open --key PRIVATE_JWK_FILE [--svc SVC] [--rt RT]
      Reads a `v3:` AuthID on stdin, opens it with the key file exactly as
      the broker wrote it, and prints the header and claims (svc, iat, jti,
      and the length of rt) as JSON. With --svc/--rt it exits 1 unless they
      match.

  seal --jwks PUBLIC_JWK_SET_FILE --svc SVC [--kid KID]
      Reads a refresh token on stdin and prints a `v3:` AuthID sealed with
      ECDH-ES+A256KW / A256GCM to the public key (the one named by --kid,
      else the only or first key of the set), with `kid` in the protected
      header.

  check-key PRIVATE_JWK_FILE
      Loads the key file as is (extra members such as `created` included)
      and prints what jwcrypto kept.

Exit status: 0 success, 1 mismatch or refusal, 2 usage or missing jwcrypto.
"""

import argparse
import json
import secrets
import sys
import time

try:
    from jwcrypto import jwe, jwk
    from jwcrypto.common import base64url_decode
except ImportError:  # pragma: no cover - reported to the caller
    sys.stderr.write("jwcrypto is not installed: pip install jwcrypto\n")
    sys.exit(2)

ALG = "ECDH-ES+A256KW"
ENC = "A256GCM"
PREFIX = "v3:"


def fail(message):
    sys.stderr.write(message + "\n")
    sys.exit(1)


def load_private(path):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        return jwk.JWK.from_json(text)
    except Exception as e:  # jwcrypto raises several exception types
        fail(f"jwcrypto refuses the key file {path} as written: {type(e).__name__}: {e}")


def cmd_check_key(args):
    key = load_private(args.key)
    kept = sorted(dict(key).keys())
    print(json.dumps({"members": kept, "has_private": key.has_private, "kid": key.get("kid")}))
    return 0


def cmd_open(args):
    text = sys.stdin.read().strip()
    if not text.startswith(PREFIX):
        fail("the AuthID does not start with v3:")
    compact = text[len(PREFIX):]
    key = load_private(args.key)
    token = jwe.JWE(algs=[ALG, ENC])
    try:
        token.deserialize(compact, key=key)
    except Exception as e:
        fail(f"jwcrypto cannot open the AuthID: {type(e).__name__}: {e}")
    header = json.loads(base64url_decode(compact.split(".")[0]))
    claims = json.loads(token.payload)
    report = {
        "header": {k: header[k] for k in ("alg", "enc", "kid") if k in header},
        "svc": claims.get("svc"),
        "rt_len": len(claims.get("rt", "")),
        "iat": claims.get("iat"),
        "jti": claims.get("jti"),
    }
    print(json.dumps(report, sort_keys=True))
    if header.get("alg") != ALG or header.get("enc") != ENC:
        fail(f"unexpected algorithms in header: {header.get('alg')} / {header.get('enc')}")
    if args.svc is not None and claims.get("svc") != args.svc:
        fail(f"svc mismatch: got {claims.get('svc')!r}, expected {args.svc!r}")
    if args.rt is not None and claims.get("rt") != args.rt:
        fail("rt mismatch")
    return 0


def cmd_seal(args):
    with open(args.jwks, encoding="utf-8") as f:
        jwks = json.load(f)
    keys = jwks.get("keys", [])
    if args.kid is not None:
        keys = [k for k in keys if k.get("kid") == args.kid]
    if not keys:
        fail("no matching public key in the JWK Set")
    public = jwk.JWK(**keys[0])
    if public.has_private:
        fail("the JWK Set holds a private key; sealing needs only the public one")
    kid = public.get("kid")
    rt = sys.stdin.read().strip()
    if not rt:
        fail("no refresh token on stdin")
    claims = {
        "svc": args.svc,
        "rt": rt,
        "iat": int(time.time()),
        "jti": secrets.token_urlsafe(16),
    }
    protected = {"alg": ALG, "enc": ENC, "kid": kid}
    token = jwe.JWE(json.dumps(claims).encode("utf-8"), protected=json.dumps(protected))
    token.add_recipient(public)
    print(PREFIX + token.serialize(compact=True))
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("open")
    p.add_argument("--key", required=True)
    p.add_argument("--svc")
    p.add_argument("--rt")
    p.set_defaults(func=cmd_open)
    p = sub.add_parser("seal")
    p.add_argument("--jwks", required=True)
    p.add_argument("--svc", required=True)
    p.add_argument("--kid")
    p.set_defaults(func=cmd_seal)
    p = sub.add_parser("check-key")
    p.add_argument("key")
    p.set_defaults(func=cmd_check_key)
    args = parser.parse_args()
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
