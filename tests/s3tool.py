"""An S3 client independent of Parley's code (boto3), for the file tests.

Usage: s3tool.py COMMAND ARGS...; S3 settings from PARLEY_TEST_S3_*.
  create-bucket NAME
  keys BUCKET                 -> one key per line
  sha256 BUCKET KEY           -> hex digest of the object
  put-url URL FILE [H=V...]   -> PUT the file to a presigned URL
  get-url URL OUT             -> GET a presigned URL into a file
"""
import hashlib
import os
import sys
import urllib.request

import boto3


def client():
    return boto3.client(
        "s3",
        endpoint_url=os.environ["PARLEY_TEST_S3_ENDPOINT"],
        region_name=os.environ["PARLEY_TEST_S3_REGION"],
        aws_access_key_id=os.environ["PARLEY_TEST_S3_KEY"],
        aws_secret_access_key=os.environ["PARLEY_TEST_S3_SECRET"],
    )


def main(cmd, *args):
    if cmd == "create-bucket":
        client().create_bucket(Bucket=args[0])
    elif cmd == "keys":
        pages = client().get_paginator("list_objects_v2").paginate(Bucket=args[0])
        for page in pages:
            for obj in page.get("Contents", []):
                print(obj["Key"])
    elif cmd == "sha256":
        body = client().get_object(Bucket=args[0], Key=args[1])["Body"]
        h = hashlib.sha256()
        for chunk in iter(lambda: body.read(1 << 20), b""):
            h.update(chunk)
        print(h.hexdigest())
    elif cmd == "put-url":
        with open(args[1], "rb") as f:
            data = f.read()
        req = urllib.request.Request(args[0], data=data, method="PUT")
        for hv in args[2:]:
            k, v = hv.split("=", 1)
            req.add_header(k, v)
        with urllib.request.urlopen(req) as r:
            print(r.status)
    elif cmd == "get-url":
        with urllib.request.urlopen(args[0]) as r, open(args[1], "wb") as out:
            out.write(r.read())
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main(*sys.argv[1:])
