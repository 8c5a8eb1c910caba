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
import contextlib
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

import orjson


class SendError(Exception):
    """A user mistake or an unreachable target: one line, with the fix."""


def _read_lines(path: str) -> list[bytes]:
    try:
        data = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    except FileNotFoundError:
        raise SendError(
            f"{path}: no such file (give a file of JSON lines, or - for stdin)"
        ) from None
    except IsADirectoryError:
        raise SendError(f"{path} is a directory: give a file of JSON lines") from None
    except OSError as exc:
        raise SendError(f"{path}: cannot read it ({exc.strerror})") from None
    lines: list[bytes] = []
    for number, raw in enumerate(data.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith(b"#"):
            continue
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise SendError(f"line {number}: not JSON ({exc}); nothing was sent") from None
        if not isinstance(obj, dict):
            raise SendError(
                f"line {number}: a signal is a JSON object, got {type(obj).__name__}; "
                "nothing was sent"
            )
        lines.append(line)
    return lines


async def _send_http(
    url: str, key: str, lines: list[bytes], key_env: str, cafile: str | None = None
) -> int:
    import ssl

    import aiohttp
    from yarl import URL

    try:
        parsed = URL(url)
    except ValueError:
        parsed = None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
        raise SendError(f"--http {url!r} is not a URL: give e.g. http://127.0.0.1:8787")
    endpoint = url.rstrip("/") + "/signals"
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/x-ndjson"}
    timeout = aiohttp.ClientTimeout(total=30)
    connector = None
    if cafile:
        try:
            ctx = ssl.create_default_context(cafile=cafile)
        except (OSError, ssl.SSLError) as exc:
            raise SendError(
                f"--cafile {cafile}: cannot load it ({getattr(exc, 'strerror', None) or exc}): "
                "give the PEM file of the CA that signed the engine's control certificate"
            ) from None
        connector = aiohttp.TCPConnector(ssl=ctx)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout, connector=connector) as session,
            session.post(endpoint, data=b"\n".join(lines), headers=headers) as resp,
        ):
            body = (await resp.text()).strip()
    except (aiohttp.ClientConnectorCertificateError, aiohttp.ClientSSLError) as exc:
        raise SendError(
            f"TLS to {url} failed ({type(exc).__name__}): for a self-signed certificate give "
            "its CA with --cafile (or TL_ENGINE_CAFILE); nothing was sent"
        ) from None
    except aiohttp.ClientConnectorError as exc:
        raise SendError(
            f"cannot reach {url} ({exc.os_error.strerror or exc.os_error}): is the engine "
            "running (tl-engine run) and is this its control_host:control_port?"
        ) from None
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise SendError(
            f"{url}: no answer ({type(exc).__name__}); nothing is known to be queued: check "
            "the engine's log before sending again (a resent id is answered, never run twice)"
        ) from None
    print(f"{resp.status} {body}")
    if resp.status == 401:
        raise SendError(f"refused: {key_env} does not hold the engine's control_token")
    return 0 if resp.status < 300 else 1


async def _send_kafka(bootstrap: str, topic: str, lines: list[bytes]) -> int:
    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import KafkaError

    # Its connection errors are logged as well as raised: this command says them once.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=1, request_timeout_ms=15_000
    )
    try:
        await producer.start()
    except (KafkaError, OSError, ValueError) as exc:
        with contextlib.suppress(Exception):
            await producer.stop()
        raise SendError(
            f"cannot reach Kafka at {bootstrap} ({type(exc).__name__}): check --kafka HOST:PORT"
        ) from None
    try:
        for line in lines:
            account = orjson.loads(line).get("account")
            key = account.encode() if isinstance(account, str) else None
            await producer.send(topic, line, key=key)
        await producer.flush()
    except KafkaError as exc:
        raise SendError(
            f"Kafka at {bootstrap}: sending to {topic} failed ({type(exc).__name__}); some "
            "signals may have been produced: resending is safe (a decided id is not run twice)"
        ) from None
    finally:
        with contextlib.suppress(Exception):
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
        "--cafile",
        help="CA certificate of a self-signed TLS control server (with --http; default: "
        "TL_ENGINE_CAFILE)",
    )
    parser.add_argument(
        "--key-env",
        default="TL_ENGINE_CONTROL_TOKEN",
        help="environment variable holding the control server's API key (with --http)",
    )

    def run(args: argparse.Namespace) -> int:
        try:
            lines = _read_lines(args.file)
            if not lines:
                print("no signals to send", file=sys.stderr)
                return 1
            if args.http:
                key = os.environ.get(args.key_env)
                if not key:
                    print(f"set {args.key_env} to the control server's API key", file=sys.stderr)
                    return 2
                cafile = args.cafile or os.environ.get("TL_ENGINE_CAFILE")
                return asyncio.run(_send_http(args.http, key, lines, args.key_env, cafile))
            return asyncio.run(_send_kafka(args.kafka, args.topic, lines))
        except SendError as exc:
            print(f"tl-engine send: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("tl-engine send: interrupted", file=sys.stderr)
            return 130

    return run
