"""``tl_latency_seconds`` is written as text by the engine (prometheus-client's per-sample
formatting took 0.8 s per scrape with 300 accounts): the text must be what prometheus-client
itself writes for the same histograms, byte for byte, secrets masked."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.utils import floatToGoString

from engine.observability.metrics import REDACTED, Metrics, Registry


def _reference(m: Metrics) -> str:
    """The family as prometheus-client renders it (the engine's exporter before the change)."""
    fam = HistogramMetricFamily(
        "tl_latency_seconds",
        "pipeline stage latency per account (docs/latency.md names the stages)",
        labels=["stage", "account"],
    )
    for (stage, account), h in sorted(m.hists.items()):
        buckets = [(floatToGoString(b), float(n)) for b, n in h.cumulative()]
        fam.add_metric([stage, m.registry.safe_label(account)], buckets, h.total / 1e9)

    class One:
        def collect(self):  # type: ignore[no-untyped-def]
            yield fam

    reg = CollectorRegistry(auto_describe=False)
    reg.register(One())  # type: ignore[arg-type]
    return generate_latest(reg).decode()


def _family(text: str) -> str:
    lines = text.splitlines(keepends=True)
    start = lines.index(
        "# HELP tl_latency_seconds pipeline stage latency per account "
        "(docs/latency.md names the stages)\n"
    )
    end = start + 2
    while end < len(lines) and lines[end].startswith("tl_latency_seconds"):
        end += 1
    return "".join(lines[start:end])


def test_the_latency_text_is_prometheus_clients_own() -> None:
    registry = Registry(process=False)
    registry.forbid("tl-SECRETSECRETSECRET99")
    m = Metrics(registry=registry)
    assert _family(m.render_prometheus()) == _reference(m)  # no samples yet: HELP and TYPE

    accounts = ["a1", "b-2", 'odd "alias" \\ with\nnewline', "acct-tl-SECRETSECRETSECRET99"]
    for n, account in enumerate(accounts):
        for i in range(50):
            arrived = 1_000
            on_wire = arrived + 3_000 * (n + 1) + 977 * i
            m.record_stamps(account, 0, 0, arrived, arrived + 500, arrived + 900, on_wire,
                            on_wire + 70_000_000 + 13_337 * i)  # fmt: skip
    m.fold()
    m.hists[("engine_share", "a1")].buckets[2] += 1_234_567  # a count past a million
    text = m.render_prometheus()
    assert _family(text) == _reference(m)
    assert "SECRETSECRET" not in text
    fam = next(f for f in text_string_to_metric_families(text) if f.name == "tl_latency_seconds")
    accounts_seen = {s.labels["account"] for s in fam.samples}
    assert REDACTED in accounts_seen
    assert 'odd "alias" \\ with\nnewline' in accounts_seen  # escaped and read back intact

    # A secret learnt after the labels were cached is masked from the next scrape on.
    registry.forbid("b-2")
    text = m.render_prometheus()
    assert 'account="b-2"' not in _family(text)
    assert _family(text) == _reference(m)
