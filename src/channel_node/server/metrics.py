"""Prometheus metrics for one node (own registry, so several nodes can live in one test process)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

if TYPE_CHECKING:
    from channel_node.chain.outbox import OutboxSender
    from channel_node.chain.watcher import Watcher

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.unlocks = Counter("channel_node_unlocks", "Paid requests served", ["kind"], registry=self.registry)
        # Prometheus values are floats: exact revenue lives in the store, this is for dashboards.
        self.revenue = Counter(
            "channel_node_revenue", "Charged, in the token's smallest unit", registry=self.registry
        )
        self.rejections = Counter("channel_node_rejections", "Refused payments by code", ["code"], registry=self.registry)
        self.latency = Histogram(
            "channel_node_paid_request_seconds", "Latency of priced requests", ["outcome"],
            buckets=LATENCY_BUCKETS, registry=self.registry,
        )  # fmt: skip
        # x402 `exact` sales (docs/protocol.md, "The `exact` scheme (node)").
        self.exact_sales = Counter("channel_node_exact_sales", "Requests sold under exact (transfer confirmed)",
                                   registry=self.registry)  # fmt: skip
        self.exact_failures = Counter("channel_node_exact_failures", "Exact payments refused or failed, by code", ["code"],
                                      registry=self.registry)  # fmt: skip
        self.channels = Gauge("channel_node_channels", "Channels loaded by the node since it started", registry=self.registry)
        # Label lookups cost a lock and a dict probe: resolve the hot ones once.
        self.paid_unlocks = self.unlocks.labels("paid")
        self.free_refetches = self.unlocks.labels("free_refetch")
        self.accepted_latency = self.latency.labels("accepted")
        self.rejected_latency = self.latency.labels("rejected")

    def render(self) -> bytes:
        return generate_latest(self.registry)


def add_exact_gauges(metrics: Metrics, held: Callable[[], int], gas_last_hour: Callable[[], int],
                     sender: OutboxSender | None) -> None:  # fmt: skip
    """The `exact` guards' figures: transfers in flight, gas spent in the last hour, our transfers."""
    in_flight = Gauge("channel_node_exact_in_flight", "Exact transfers held, not final", registry=metrics.registry)
    in_flight.set_function(held)
    gas = Gauge("channel_node_exact_gas_last_hour", "Gas our exact transfers used in the last hour",
                registry=metrics.registry)  # fmt: skip
    gas.set_function(gas_last_hour)
    if sender is not None:
        sent = Gauge("channel_node_exact_transfers_sent", "transferWithAuthorization transactions signed",
                     registry=metrics.registry)  # fmt: skip
        sent.set_function(lambda: sender.stats.exact_sent)


def add_chain_gauges(metrics: Metrics, watcher: Watcher, sender: OutboxSender | None) -> None:
    """Gauges read from the watcher's and sender's live figures at every scrape."""
    lag = Gauge("channel_node_watcher_lag_blocks", "Confirmed blocks not yet applied", registry=metrics.registry)
    lag.set_function(lambda: watcher.stats.lag)
    head = Gauge("channel_node_chain_head", "Latest block seen", registry=metrics.registry)
    head.set_function(lambda: watcher.stats.head)
    if sender is None:
        return
    open_rows = Gauge("channel_node_outbox_open", "Outbox rows not yet confirmed", registry=metrics.registry)
    open_rows.set_function(lambda: sender.stats.open_rows)
    balance = Gauge("channel_node_gas_balance", "Claim key balance (smallest unit; float)", registry=metrics.registry)
    balance.set_function(lambda: sender.stats.balance)
    gas_ok = Gauge("channel_node_gas_ok", "1 when the claim key can pay the open rows' gas", registry=metrics.registry)
    gas_ok.set_function(lambda: 1 if sender.stats.gas_ok else 0)
