"""Prometheus metrics: live counters kept in memory, the rest read from the store per scrape.

What can be derived from the durable records (commands, runs, verdicts, the outbox) is
derived at scrape time, so the numbers survive restarts and no core module carries metric
calls; only the edges count what leaves no record (deliveries refused at the door, SSH
connection errors, queue waits).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
WAIT_BUCKETS = (1.0, 10.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0)
VERDICT_BUCKETS = (60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0)


@dataclass(frozen=True)
class Snapshot:
    """What the store says, gathered (async) before a scrape."""

    commands: Sequence[tuple[str, str, int]]  # (name, state, count)
    runs: Sequence[tuple[str, str, int]]  # (kind, state, count)
    verdicts: Sequence[tuple[str, str, int]]  # (outcome, cause, count)
    verdict_seconds: Sequence[float]  # command accepted → verdict saved
    outbox: Mapping[str, int]  # pending, sent, dead, retries
    queue_depth: int
    queue_waits: Sequence[float]
    ssh_errors: Mapping[str, int]  # host → connection errors


def _histogram(
    name: str, doc: str, values: Iterable[float], buckets: Sequence[float]
) -> HistogramMetricFamily:
    vals = sorted(values)
    cumulative = [(str(b), float(sum(1 for v in vals if v <= b))) for b in buckets]
    cumulative.append(("+Inf", float(len(vals))))
    return HistogramMetricFamily(name, doc, buckets=cumulative, sum_value=sum(vals))


def _commands(s: Snapshot) -> Metric:
    commands = CounterMetricFamily(
        "redfix_commands", "Commands by name and how they ended", labels=["name", "result"]
    )
    for name, state, n in s.commands:
        commands.add_metric([name, state], n)
    return commands


def _runs(s: Snapshot) -> Metric:
    runs = GaugeMetricFamily(
        "redfix_runs", "Harness runs by kind and state", labels=["kind", "state"]
    )
    for kind, state, n in s.runs:
        runs.add_metric([kind, state], n)
    return runs


def _verdicts(s: Snapshot) -> tuple[Metric, Metric]:
    """The verdicts by outcome and cause, and the classification rate they give."""
    verdicts = CounterMetricFamily(
        "redfix_verdicts",
        "Isolation verdicts by outcome and cause",
        labels=["outcome", "cause"],
    )
    judged = explained = 0
    for outcome, cause, n in s.verdicts:
        verdicts.add_metric([outcome, cause], n)
        if outcome != "inconclusive":
            judged += n
            explained += n if cause != "unknown" else 0
    rate = GaugeMetricFamily(
        "redfix_classification_rate",
        "Share of conclusive isolation verdicts whose cause is not unknown",
        value=explained / judged if judged else 0.0,
    )
    return verdicts, rate


def _outbox(s: Snapshot) -> tuple[Metric, Metric, Metric]:
    """The outbox's depth, retries and dead items."""
    depth = GaugeMetricFamily(
        "redfix_outbox_depth",
        "Messages waiting in the outbox",
        value=s.outbox.get("pending", 0),
    )
    retries = CounterMetricFamily(
        "redfix_outbox_retries",
        "Failed delivery attempts retried",
        value=s.outbox.get("retries", 0),
    )
    dead = CounterMetricFamily(
        "redfix_outbox_dead",
        "Messages given up (a 4xx that cannot succeed)",
        value=s.outbox.get("dead", 0),
    )
    return depth, retries, dead


def _hosts(s: Snapshot) -> tuple[Metric, Metric]:
    """The run queue's depth and each host's SSH connection errors."""
    queue = GaugeMetricFamily(
        "redfix_queue_depth", "Runs waiting for a host slot", value=s.queue_depth
    )
    ssh = CounterMetricFamily(
        "redfix_ssh_connection_errors", "SSH connection failures by host", labels=["host"]
    )
    for host, n in s.ssh_errors.items():
        ssh.add_metric([host], n)
    return queue, ssh


class _StoreCollector(Collector):
    def __init__(self, snap: Snapshot) -> None:
        self._snap = snap

    def collect(self) -> Iterable[Metric]:
        # The families in the order a scrape has always listed them.
        s = self._snap
        yield _commands(s)
        yield _runs(s)
        yield from _verdicts(s)
        yield from _outbox(s)
        yield from _hosts(s)
        yield _histogram(
            "redfix_queue_wait_seconds",
            "Time runs waited for a host slot (recent)",
            s.queue_waits,
            WAIT_BUCKETS,
        )
        yield _histogram(
            "redfix_time_to_verdict_seconds",
            "From an accepted isolate command to its verdict",
            s.verdict_seconds,
            VERDICT_BUCKETS,
        )


class Metrics:
    """The live counters of one bot, and the scrape that joins them with the store's."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.deliveries = Counter(
            "redfix_deliveries",
            "Webhook deliveries by event and result",
            ["event", "result"],
            registry=self.registry,
        )

    def delivery(self, event: str, result: str) -> None:
        # Unknown events are attacker-chosen strings: keep the label set bounded.
        known = event if event in ("issue_comment", "pull_request", "push", "status") else "other"
        self.deliveries.labels(known, result).inc()

    def render(self, snap: Snapshot) -> bytes:
        scrape = CollectorRegistry()
        scrape.register(_StoreCollector(snap))
        return generate_latest(self.registry) + generate_latest(scrape)
