"""A strict reader of the Prometheus text exposition format (0.0.4), for tests.

A second, stricter reading beside ``prometheus_client.parser`` (which is lenient): this follows
the format's grammar closely enough to fail on what a real scraper would reject: samples before
their TYPE, bad names, unescaped quotes, non-numeric values, summaries without quantile labels.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'
_SAMPLE_RE = re.compile(
    rf"^(?P<name>{_NAME})(?:\{{(?P<labels>(?:{_LABEL})(?:,{_LABEL})*)?\}})? "
    r"(?P<value>[-+]?(?:\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|Inf|NaN))$"
)
_LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"')
_KINDS = {"counter", "gauge", "summary", "histogram", "untyped"}


@dataclass
class Family:
    name: str
    kind: str
    help: str = ""
    samples: list[tuple[str, dict[str, str], float]] = field(default_factory=list)


def parse(text: str) -> dict[str, Family]:
    families: dict[str, Family] = {}
    helps: dict[str, str] = {}
    assert text.endswith("\n"), "exposition must end with a newline"
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line:
            continue
        if line.startswith("# HELP "):
            name, _, help_text = line[7:].partition(" ")
            assert re.fullmatch(_NAME, name), f"line {lineno}: bad HELP name {name!r}"
            helps[name] = help_text
            continue
        if line.startswith("# TYPE "):
            name, _, kind = line[7:].partition(" ")
            assert re.fullmatch(_NAME, name), f"line {lineno}: bad TYPE name {name!r}"
            assert kind in _KINDS, f"line {lineno}: unknown type {kind!r}"
            assert name not in families, f"line {lineno}: second TYPE for {name}"
            families[name] = Family(name, kind, helps.get(name, ""))
            continue
        if line.startswith("#"):
            continue
        m = _SAMPLE_RE.match(line)
        assert m, f"line {lineno}: not a valid sample: {line!r}"
        name = m["name"]
        base = re.sub(r"_(sum|count|bucket)$", "", name)
        fam = families.get(name) or families.get(base)
        assert fam is not None, f"line {lineno}: sample {name} before its TYPE line"
        labels = dict(_LABEL_RE.findall(m["labels"] or ""))
        value = float(m["value"].replace("Inf", "inf"))
        if fam.kind == "summary" and name == fam.name:
            assert "quantile" in labels, f"line {lineno}: summary sample without quantile"
        fam.samples.append((name, labels, value))
    return families
