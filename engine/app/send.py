"""``tl-engine send``: hand signals (JSON lines from a file or stdin) to a running engine.

Two ways in, the same two the daemon listens on:

* ``--http URL``: the control server's authenticated ``POST /signals``; the bearer key is read
  from the environment variable named by ``--key-env`` (never from the command line, where it
  would show in ``ps`` and shell history).
* ``--kafka BOOTSTRAP``: produced to the signals topic, keyed by the signal's ``account`` so one
  account's signals stay in one partition and in order.

Lines are checked to be JSON objects before anything is sent, so a typo fails here with the line
number instead of as a rejected signal later. The engine still validates everything itself.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable
from pathlib import Path

import orjson


def _read_lines(path: str) -> list[bytes]:
    data = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    lines: list[bytes] = []
    for number, raw in enumerate(data.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith(b"#"):
            continue
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise SystemExit(f"line {number}: not JSON ({exc})") from None
        if not isinstance(obj, dict):
            raise SystemExit(f"line {number}: a signal is a JSON object, got {type(obj).__name__}")
        lines.append(line)
    return lines


async def _send_http(url: str, key: str, lines: list[bytes]) -> int:
    import aiohttp

    endpoint = url.rstrip("/") + "/signals"
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/x-ndjson"}
    async with (
        aiohttp.ClientSession() as session,
        session.post(endpoint, data=b"\n".join(lines), headers=headers) as resp,
    ):
        body = await resp.text()
        print(f"{resp.status} {body.strip()}")
        return 0 if resp.status < 300 else 1


async def _send_kafka(bootstrap: str, topic: str, lines: list[bytes]) -> int:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=1)
    await producer.start()
    try:
        for line in lines:
            account = orjson.loads(line).get("account")
            key = account.encode() if isinstance(account, str) else None
            await producer.send(topic, line, key=key)
        await producer.flush()
    finally:
        await producer.stop()
    print(f"produced {len(lines)} signal(s) to {topic}")
    return 0


def cli(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    parser.add_argument("file", help="JSON lines of signals, or - for stdin")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--http", metavar="URL", help="control server, e.g. http://127.0.0.1:8787")
    target.add_argument("--kafka", metavar="BOOTSTRAP", help="Kafka bootstrap, e.g. 127.0.0.1:9092")
    parser.add_argument("--topic", default="tl.signals", help="signals topic (with --kafka)")
    parser.add_argument(
        "--key-env",
        default="TL_ENGINE_CONTROL_TOKEN",
        help="environment variable holding the control server's API key (with --http)",
    )

    def run(args: argparse.Namespace) -> int:
        lines = _read_lines(args.file)
        if not lines:
            print("no signals to send", file=sys.stderr)
            return 1
        if args.http:
            key = os.environ.get(args.key_env)
            if not key:
                print(f"set {args.key_env} to the control server's API key", file=sys.stderr)
                return 2
            return asyncio.run(_send_http(args.http, key, lines))
        return asyncio.run(_send_kafka(args.kafka, args.topic, lines))

    return run
