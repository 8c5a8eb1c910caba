"""``tl-engine sim``: run the sandbox until SIGINT/SIGTERM. Its FIRST stdout line is the base URL
(host root; REST is under ``/backend-api``), flushed, so a parent process can read it.

``--profile realistic`` (the default) or ``fast`` sets every switch's default (sandbox.profiles);
the seed file's keys override the profile and the flags below override both."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Callable
from typing import Any

from sandbox.errors import ConfigError
from sandbox.faults import STREAM_ACK_MODES, parse_delay, parse_latency
from sandbox.profiles import PROFILES
from sandbox.seed import RATE_LIMIT_SCOPES, load_seed, parse_clock_start, parse_rate_limit


def _rate_limit(text: str) -> tuple[str, dict[str, Any]]:
    """``PLACE_ORDER=5`` (per second) or ``PLACE_ORDER=5/1/SECONDS``."""
    name, _, value = text.partition("=")
    parts = value.split("/")
    try:
        spec: dict[str, Any] = {"limit": int(parts[0])}
        if len(parts) > 1:
            spec["intervalNum"] = int(parts[1])
        if len(parts) > 2:
            spec["measure"] = parts[2].upper()
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--rate-limit wants TYPE=LIMIT[/INTERVAL[/SECONDS|MINUTES]], got {text!r}"
        ) from None
    return name, spec


def _latency_spec(latency_ms: str, tail: str | None) -> Any:
    """``--latency-ms`` and ``--latency-tail SHARE:LO-HI`` as one fault spec (validated)."""
    if tail is None:
        parse_latency(latency_ms)
        return latency_ms
    share, sep, span = tail.partition(":")
    try:
        spec = {"ms": latency_ms, "tail": {"share": float(share), "ms": span}}
    except ValueError:
        raise ConfigError(
            f"--latency-tail wants SHARE:LO-HI like 0.01:300-1500, got {tail!r}"
        ) from None
    if not sep:
        raise ConfigError(f"--latency-tail wants SHARE:LO-HI like 0.01:300-1500, got {tail!r}")
    parse_delay(spec)
    return spec


def cli(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument(
        "--profile",
        choices=tuple(PROFILES),
        help="defaults of every switch: realistic (latency, tight limits, short tokens; the "
        "default unless the seed names one) or fast (today's kind sandbox)",
    )
    parser.add_argument("--seed-file", help="users/accounts/limits JSON (config/sandbox-seed.json)")
    parser.add_argument(
        "--latency-ms",
        help="venue latency for every REST call: 5 or 50-100 (replaces the "
        "profile's, tail included)",
    )
    parser.add_argument(
        "--latency-tail",
        metavar="SHARE:LO-HI",
        help="with --latency-ms: a share of replies slower, e.g. 0.01:300-1500",
    )
    parser.add_argument(
        "--rate-limit-scope",
        choices=RATE_LIMIT_SCOPES,
        help="count rate limits per account or per login (the venue does not document which)",
    )
    parser.add_argument(
        "--stream-ack",
        choices=STREAM_ACK_MODES,
        help="answer a Streams SUBSCRIBE through the Socket.IO ack, a `subscriptions` event, "
        "or both",
    )
    parser.add_argument(
        "--clock-start",
        metavar="WHEN",
        help="where the venue clock starts: wall, tradingHours (the realistic default: a start "
        "outside market hours runs from the last trading hours) or an ISO 8601 time",
    )
    parser.add_argument(
        "--error-rate", type=float, default=0.0, help="share of REST calls answered 503 (0..1)"
    )
    parser.add_argument(
        "--drop-after-accept",
        type=float,
        default=0.0,
        help="share of order POSTs whose connection is cut after the order exists",
    )
    parser.add_argument(
        "--rate-limit",
        action="append",
        default=[],
        type=_rate_limit,
        metavar="TYPE=LIMIT[/N[/MEASURE]]",
        help="override one rateLimitType",
    )
    parser.add_argument(
        "--price-interval-ms",
        type=float,
        help="random-walk step period (0 = prices move only when told)",
    )
    parser.add_argument("--rng-seed", type=int, help="seed of prices, ids and fault draws")
    parser.add_argument("--access-token-ttl", type=float, help="access token lifetime, seconds")
    parser.add_argument("--refresh-token-ttl", type=float, help="refresh token lifetime, seconds")
    parser.add_argument("--log-level", default="WARNING")

    def run(args: argparse.Namespace) -> int:
        logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr)
        try:
            config = load_seed(args.seed_file, args.profile)
            if args.rng_seed is not None:
                config.rng_seed = args.rng_seed
            if args.access_token_ttl is not None:
                config.access_token_lifetime_s = args.access_token_ttl
            if args.refresh_token_ttl is not None:
                config.refresh_token_lifetime_s = args.refresh_token_ttl
            if args.price_interval_ms is not None:
                config.price_interval_ms = args.price_interval_ms
            for name, spec in args.rate_limit:
                config.rate_limits[name] = parse_rate_limit(name, spec)
            if args.rate_limit_scope is not None:
                config.rate_limit_scope = args.rate_limit_scope
            if args.clock_start is not None:
                config.clock_start = parse_clock_start(args.clock_start, "--clock-start")
            faults: dict[str, Any] = {}
            if args.latency_tail and not args.latency_ms:
                raise ConfigError("--latency-tail needs --latency-ms (the ordinary range)")
            if args.latency_ms:
                faults["latency"] = {"*": _latency_spec(args.latency_ms, args.latency_tail)}
            if args.stream_ack is not None:
                faults["streamAck"] = args.stream_ack
            if args.error_rate:
                faults["error5xx"] = {"*": {"share": args.error_rate}}
            if args.drop_after_accept:
                faults["dropAfterAccept"] = {"PLACE_ORDER": {"share": args.drop_after_accept}}
        except ConfigError as exc:
            print(f"tl-engine sim: {exc}", file=sys.stderr)
            return 2
        with contextlib.suppress(ImportError):
            import uvloop

            uvloop.install()
        return asyncio.run(_serve(config, faults, args.host, args.port))

    return run


async def _serve(config: Any, faults: dict[str, Any], host: str, port: int) -> int:
    from sandbox.server import Sandbox

    try:
        sandbox = Sandbox(config, faults=faults)
    except ConfigError as exc:
        print(f"tl-engine sim: {exc}", file=sys.stderr)
        return 2
    await sandbox.start(host, port)
    print(sandbox.base_url, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await sandbox.stop()
    return 0
