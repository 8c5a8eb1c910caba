"""``tl-engine status | tail | outcome | kill | resume``: ask a running engine over its control
server.

Where the engine is: ``--url``, else ``TL_ENGINE_URL``, else the ``control_host``/``control_port``
of ``--config``, else ``http://127.0.0.1:8787``. The token: ``--token``, else
``TL_ENGINE_CONTROL_TOKEN``, else (for the read commands) ``TL_ENGINE_READ_TOKEN``, else the
``control_token`` / ``control_read_token`` reference of ``--config`` resolved like the engine does
(``env:`` and ``file:``). With TLS on a self-signed certificate give ``--cafile`` (or
``TL_ENGINE_CAFILE``). Every failure is one line saying what to do; nothing here prints a token.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import ssl
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

import aiohttp
import orjson

DEFAULT_URL = "http://127.0.0.1:8787"
# Always shown in the rate budget; other routes only while in use.
ORDER_ROUTES = frozenset({"PLACE_ORDER", "MODIFY_ORDER", "MODIFY_POSITION", "CANCEL_ORDER"})


class RemoteError(Exception):
    """One line for the operator; the command exits 1 (2 for a usage mistake)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class Target:
    url: str
    token: str | None
    cafile: str | None


def _from_config(path: str, control: bool) -> tuple[str | None, str | None]:
    """(url, token) from a config file; the token reference resolved from env or file."""
    from engine.app.config import load_config
    from engine.model.errors import EngineError
    from engine.secrets.store import EnvFileStore

    try:
        cfg = load_config(path)
    except EngineError as exc:
        raise RemoteError(f"config error: {exc}", 2) from None
    c = cfg.control
    scheme = "https" if c.tls_cert else "http"
    host = "127.0.0.1" if c.host in ("0.0.0.0", "::", "") else c.host
    url = f"{scheme}://{host}:{c.port}" if c.port else None
    refs = [c.token] if control else [c.token, c.read_token]
    for ref in refs:
        if ref is None or ref.startswith("vault:"):
            continue
        try:
            secret = asyncio.run(EnvFileStore().resolve(ref))
        except EngineError as exc:
            raise RemoteError(f"cannot read the token {ref}: {exc}", 2) from None
        return url, secret.reveal()
    return url, None


def target(args: argparse.Namespace, control: bool) -> Target:
    cfg_url: str | None = None
    cfg_token: str | None = None
    if args.config:
        cfg_url, cfg_token = _from_config(args.config, control)
    url = args.url or os.environ.get("TL_ENGINE_URL") or cfg_url or DEFAULT_URL
    token = args.token or os.environ.get("TL_ENGINE_CONTROL_TOKEN")
    if not token and not control:
        token = os.environ.get("TL_ENGINE_READ_TOKEN")
    token = token or cfg_token
    if not url.startswith(("http://", "https://")):
        raise RemoteError(f"--url {url!r}: give http://HOST:PORT or https://HOST:PORT", 2)
    return Target(url.rstrip("/"), token, args.cafile or os.environ.get("TL_ENGINE_CAFILE"))


def _session(t: Target, timeout: float | None = 30.0) -> aiohttp.ClientSession:
    ctx: ssl.SSLContext | bool = True
    if t.cafile:
        ctx = ssl.create_default_context(cafile=t.cafile)
    headers = {"Authorization": f"Bearer {t.token}"} if t.token else {}
    return aiohttp.ClientSession(
        headers=headers,
        connector=aiohttp.TCPConnector(ssl=ctx),
        timeout=aiohttp.ClientTimeout(total=timeout, sock_connect=10),
    )


async def _fail(t: Target, resp: aiohttp.ClientResponse, control: bool) -> RemoteError:
    try:
        body = await resp.json(content_type=None)
        said = body.get("error") if isinstance(body, dict) else None
    except (ValueError, aiohttp.ClientError):
        said = None
    said = said or f"HTTP {resp.status}"
    if resp.status in (401, 403):
        env = "TL_ENGINE_CONTROL_TOKEN" if control else "TL_ENGINE_READ_TOKEN"
        what = "the control token" if control else "the read or the control token"
        if not t.token:
            return RemoteError(f"the engine wants {what}: pass --token, set {env}, or --config")
        return RemoteError(f"the engine refused the token ({said}): give {what}")
    return RemoteError(f"the engine answered {resp.status}: {said}")


def _unreachable(t: Target, exc: BaseException) -> RemoteError:
    if isinstance(exc, aiohttp.ClientConnectorCertificateError | ssl.SSLError):
        return RemoteError(
            f"TLS to {t.url} failed ({exc.__class__.__name__}): for a self-signed certificate "
            "give its CA with --cafile"
        )
    if isinstance(exc, TimeoutError):
        return RemoteError(f"the engine at {t.url} did not answer in time")
    reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return RemoteError(
        f"cannot reach the engine at {t.url} ({reason}): is `tl-engine run` running there? "
        "(--url or TL_ENGINE_URL)"
    )


async def _call(t: Target, method: str, path: str, control: bool, body: Any = None) -> Any:
    try:
        async with _session(t) as http:
            async with http.request(method, t.url + path, json=body) as resp:
                if resp.status == 404 and path.startswith("/outcomes/"):
                    return None
                if resp.status == 500 and path == "/kill":
                    # Engaged, but not every account was stopped cleanly: the report says which.
                    return await resp.json(content_type=None)
                if resp.status >= 400:
                    raise await _fail(t, resp, control)
                return await resp.json(content_type=None)
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        raise _unreachable(t, exc) from None


# -- rendering -------------------------------------------------------------------------------------


def _num(v: Any, signed: bool = False) -> str:
    if v is None:
        return "-"
    if isinstance(v, int | float):
        return f"{v:+,.2f}" if signed else f"{v:,.2f}"
    return str(v)


def render_status(st: dict[str, Any]) -> str:
    h = st.get("health", {})
    kill = st.get("kill_switch", {})
    lines = [
        "engine: "
        + ("draining" if st.get("draining") else ("healthy" if h.get("healthy") else "NOT healthy"))
        + " | kill switch: "
        + (f"ENGAGED ({kill.get('reason')})" if kill.get("engaged") else "off")
        + f" | up {st.get('uptime_s', 0):.0f} s | queue {st.get('signal_queue_depth', 0)}"
    ]
    accounts: dict[str, Any] = (st.get("engine") or {}).get("accounts", {})
    haccounts: dict[str, Any] = h.get("accounts", {})
    names = sorted(set(accounts) | set(haccounts))
    lines.append("")
    lines.append(
        f"{'account':<12}{'state':<13}{'balance':>14}{'equity':>14}{'day P&L':>12}"
        f"{'pos':>5}{'ord':>5}{'in flight':>11}  source"
    )
    pos_lines, ord_lines = [], []
    for a in names:
        x = accounts.get(a, {})
        state = "healthy" if haccounts.get(a, {}).get("healthy") else "not healthy"
        if x.get("enabled") is False:
            state = "disabled"
        positions, orders = x.get("positions", []), x.get("orders", [])
        lines.append(
            f"{a:<12}{state:<13}{_num(x.get('balance')):>14}{_num(x.get('equity')):>14}"
            f"{_num(x.get('day_pnl'), True):>12}{len(positions):>5}{len(orders):>5}"
            f"{x.get('in_flight', 0):>11}  {x.get('source', '')}"
            + (f"  ({x['error']})" if x.get("error") else "")
        )
        for p in positions:
            pnl = f"  P&L {_num(p['pnl'], True)}" if p.get("pnl") is not None else ""
            pos_lines.append(
                f"  {a:<10} {p['id']:<20} {p['symbol']:<10} {p['side']:<5}"
                f"{p['lots']:>8} @ {p.get('open_price')}{pnl}"
            )
        for o in orders:
            ord_lines.append(
                f"  {a:<10} {o['id']:<20} {o['symbol']:<10} {o['side']:<5}"
                f"{o['qty']:>8} @ {o.get('price')}  {o.get('status', '')}"
            )
    lines += ["", "positions:", *(pos_lines or ["  none"])]
    lines += ["", "working orders:", *(ord_lines or ["  none"])]
    lines += ["", "health:"]
    for a in sorted(haccounts):
        comps = haccounts[a].get("components", {})
        parts = [f"{c} {s['state']}" + ("" if s["healthy"] else " (!)") for c, s in comps.items()]
        lines.append(f"  {a:<10} " + " | ".join(parts))
        for c, s in comps.items():
            if not s["healthy"] and s.get("detail"):
                lines.append(f"  {'':<10}   {c}: {s['detail']}")
    if not haccounts:
        lines.append("  " + h.get("reason", "no account has reported yet"))
    lines += ["", "rate budget (order routes, and any other in use):"]
    budget, idle = [], 0
    for a in names:
        for r in accounts.get(a, {}).get("rate_budget", []):
            if not (r["route"] in ORDER_ROUTES or r["utilisation"] or r.get("queued")):
                idle += 1
                continue
            budget.append(
                f"  {a:<10} {r['route']:<24} {r['utilisation']:>5.0%} of {r.get('capacity')}"
                + (f", {r['queued']} queued" if r.get("queued") else "")
                + (f", {r['shed']} shed" if r.get("shed") else "")
            )
    lines += budget or ["  none published"]
    if idle:
        lines.append(f"  ({idle} other routes idle; --json shows them)")
    lat = st.get("latency", {})
    lines += [
        "",
        f"latency (us)  {'stage':<22}{'count':>8}{'p50':>10}{'p90':>10}{'p99':>10}"
        f"{'p99.9':>10}{'max':>10}",
    ]
    for stage, s in lat.items():
        lines.append(
            f"              {stage:<22}{s['count']:>8}"
            + "".join(f"{s[k]:>10.1f}" for k in ("p50_us", "p90_us", "p99_us", "p999_us", "max_us"))
        )
    if not lat:
        lines.append("              no samples yet")
    return "\n".join(lines)


def render_event(topic: str, ev: dict[str, Any]) -> str:
    when = time.strftime("%H:%M:%S", time.localtime((ev.get("at_ms") or time.time() * 1000) / 1e3))
    if topic == "outcomes":
        parts = [when, "outcome", ev.get("id") or "?", ev.get("account") or "-", ev["status"]]
        if ev.get("action"):
            parts.insert(3, ev["action"])
        if ev.get("order_id"):
            parts.append(f"order {ev['order_id']}")
        if ev.get("corrects"):
            parts.append(f"(corrects {ev['corrects']})")
        if ev.get("reason") or ev.get("errmsg"):
            parts.append(f"- {ev.get('reason') or ev.get('errmsg')}")
        return " ".join(str(p) for p in parts)
    return f"{when} {topic} " + orjson.dumps(ev).decode()


# -- commands --------------------------------------------------------------------------------------


async def _tail(
    t: Target, topics: str | None, replay: int, as_json: bool, count: int | None, out: TextIO
) -> int:
    query = f"?replay={replay}" + (f"&topics={topics}" if topics else "")
    seen = 0
    try:
        async with _session(t, timeout=None) as http:
            async with http.get(t.url + "/events" + query) as resp:
                if resp.status >= 400:
                    raise await _fail(t, resp, False)
                print(f"following {t.url} (Ctrl-C to stop)", file=sys.stderr, flush=True)
                topic = "message"
                async for raw in resp.content:
                    line = raw.decode().rstrip("\n")
                    if line.startswith("event: "):
                        topic = line[7:]
                    elif line.startswith("data: "):
                        ev = orjson.loads(line[6:])
                        out.write(
                            (
                                orjson.dumps({"topic": topic, **ev}).decode()
                                if as_json
                                else render_event(topic, ev)
                            )
                            + "\n"
                        )
                        out.flush()
                        seen += 1
                        if count is not None and seen >= count:
                            return 0
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        raise _unreachable(t, exc) from None
    raise RemoteError("the engine closed the event stream (it is stopping?)")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", help=f"the control server (default: TL_ENGINE_URL or {DEFAULT_URL})")
    p.add_argument("--token", help="bearer token (default: TL_ENGINE_CONTROL_TOKEN / _READ_TOKEN)")
    p.add_argument("--config", help="read the URL and the token reference from this config file")
    p.add_argument("--cafile", help="CA certificate for a self-signed TLS control server")


def _run(body: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            return body(args)
        except RemoteError as exc:
            print(f"tl-engine {args.command}: {exc}", file=sys.stderr)
            return exc.code
        except KeyboardInterrupt:
            return 130

    return run


def cli_status(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    _common(parser)
    parser.add_argument("--json", action="store_true", help="print /status as JSON")

    def body(args: argparse.Namespace) -> int:
        st = asyncio.run(_call(target(args, False), "GET", "/status", False))
        print(
            orjson.dumps(st, option=orjson.OPT_INDENT_2).decode()
            if args.json
            else render_status(st)
        )
        return 0

    return _run(body)


def cli_tail(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    _common(parser)
    parser.add_argument("--topics", help="comma-separated: outcomes,executions,... (default all)")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument("--count", type=int, help="stop after this many events")
    parser.add_argument(
        "--replay", type=int, default=10, help="first show this many recent outcomes (default 10)"
    )

    def body(args: argparse.Namespace) -> int:
        t = target(args, False)
        with contextlib.suppress(KeyboardInterrupt):
            return asyncio.run(
                _tail(t, args.topics, args.replay, args.json, args.count, sys.stdout)
            )
        return 0

    return _run(body)


def cli_outcome(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    _common(parser)
    parser.add_argument("signal_id", metavar="SIGNAL_ID")
    parser.add_argument("--json", action="store_true")

    def body(args: argparse.Namespace) -> int:
        from urllib.parse import quote

        path = "/outcomes/" + quote(args.signal_id, safe="")
        found = asyncio.run(_call(target(args, False), "GET", path, False))
        if found is None:
            print(f"no outcome for {args.signal_id!r}: the engine has not seen this id")
            return 1
        if args.json:
            print(orjson.dumps(found, option=orjson.OPT_INDENT_2).decode())
            return 0
        for leg in found["legs"]:
            print(render_event("outcomes", leg))
        return 0

    return _run(body)


def cli_kill(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    _common(parser)
    parser.add_argument(
        "--flatten", action="store_true", help="also close every open position on every account"
    )
    parser.add_argument(
        "--keep-orders",
        action="store_true",
        help="only stop taking signals: leave working orders (not with --flatten)",
    )
    parser.add_argument("--reason", default="kill switch engaged by tl-engine kill")

    def body(args: argparse.Namespace) -> int:
        if args.flatten and args.keep_orders:
            raise RemoteError("--flatten cancels orders too: drop --keep-orders", 2)
        req = {
            "cancel_orders": not args.keep_orders,
            "flatten": args.flatten,
            "reason": args.reason,
        }
        t = target(args, True)
        res = asyncio.run(_call(t, "POST", "/kill", True, req))
        print(f"kill switch engaged: {res.get('reason')}")
        for account, what in (res.get("cancelled") or {}).items():
            if isinstance(what, dict):
                what = ", ".join(f"{k}: {v}" for k, v in what.items())
            print(f"  {account}: {what}")
        if res.get("warning"):
            print(f"warning: {res['warning']}")
        if res.get("error"):
            print(f"tl-engine kill: {res['error']}", file=sys.stderr)
            return 1
        return 0

    return _run(body)


def cli_resume(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    _common(parser)
    parser.add_argument(
        "--account",
        help="let this account trade again after a prop-firm guard halted it (POST "
        "/guards/resume), instead of releasing the kill switch",
    )

    def body(args: argparse.Namespace) -> int:
        t = target(args, True)
        if args.account:
            res = asyncio.run(_call(t, "POST", "/guards/resume", True, {"account": args.account}))
            print(
                f"{args.account}: resumed, trading again"
                if res.get("resumed")
                else f"{args.account}: was not halted by a guard (nothing to resume)"
            )
            return 0
        res = asyncio.run(_call(t, "POST", "/resume", True, {}))
        print("kill switch released" if res.get("was_engaged") else "kill switch was not engaged")
        return 0

    return _run(body)
