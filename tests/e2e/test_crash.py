"""Crash safety (scripts/crash_test.py): the node is SIGKILLed under paid load on anvil, restarted,
lost answers are retried with the same paymentId, and its database is audited against the receipts
the clients got. Plus: the audit itself catches lost, double and unsigned charges."""

from __future__ import annotations

import importlib.util
import random
import sqlite3
import sys
from pathlib import Path

from channel_node.signing import (
    ChannelConfig,
    Domain,
    address_of_key,
    channel_id,
    keccak256,
    sign_digest,
    voucher_digest,
)

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "crash_test.py"
spec = importlib.util.spec_from_file_location("crash_test", SCRIPT)
crash_test = importlib.util.module_from_spec(spec)
sys.modules["crash_test"] = crash_test  # dataclasses look their module up there
spec.loader.exec_module(crash_test)
PRICE = crash_test.PRICE


async def test_kill_restart_retry_loses_and_double_charges_nothing():
    result = await crash_test.run(cycles=3, channels=3, window=(0.2, 0.6), seed=6)
    assert result["failures"] == []
    assert result["lost"] == 0 and result["double_charged"] == 0
    assert result["unlocks"] > 50, result
    assert result["killed_in_flight"] >= 1, "no kill hit the node with requests in flight"
    assert result["retried"] == result["retried_free"] + result["retried_charged"]


def _harness(tmp_path: Path):
    """A harness over a hand-made database, no chain: one channel with three acknowledged payments."""
    harness = crash_test.Harness(None, tmp_path, 1, lambda m: None, random.Random(0))
    harness.domain = Domain(31337, "0x" + "11" * 20)
    key = keccak256(b"audit test key")
    config = ChannelConfig.create("0x" + "22" * 20, address_of_key(key), "0x" + "33" * 20, None, 3600, 1)
    channel = crash_test.Channel(0, key, config, channel_id(harness.domain, config), signed=3 * PRICE)
    for n in (1, 2, 3):
        channel.acked[f"p{n}"] = PRICE
        channel.charged_receipts[f"p{n}"] += 1
    channel.max_ack_ceiling = 3 * PRICE
    harness.channels = [channel]
    harness.database = tmp_path / "node.db"
    db = sqlite3.connect(harness.database)
    db.execute("CREATE TABLE channels (channel_id BLOB, charged TEXT, ceiling TEXT, signature BLOB)")
    db.execute("CREATE TABLE charges (channel_id BLOB, payment_id TEXT, amount TEXT)")
    signature = sign_digest(key, voucher_digest(harness.domain, channel.id, 3 * PRICE))
    db.execute("INSERT INTO channels VALUES (?, ?, ?, ?)", (channel.id, str(3 * PRICE), str(3 * PRICE), signature))
    db.executemany("INSERT INTO charges VALUES (?, ?, ?)", [(channel.id, f"p{n}", str(PRICE)) for n in (1, 2, 3)])
    db.commit()
    return harness, db, channel


def test_audit_passes_a_consistent_database(tmp_path):
    harness, db, _ = _harness(tmp_path)
    assert harness.audit("ok") == {"charges": 3, "lost": 0, "double_charged": 0, "failures": 0}
    assert harness.stats.failures == []


def test_audit_catches_a_lost_charge(tmp_path):
    harness, db, channel = _harness(tmp_path)
    db.execute("DELETE FROM charges WHERE payment_id = 'p3'")
    db.commit()
    assert harness.audit("lost")["lost"] == 1
    assert any("lost" in f for f in harness.stats.failures)
    assert any("charged 3000, sum of charges 2000" in f for f in harness.stats.failures)


def test_audit_catches_double_and_mispriced_charges(tmp_path):
    harness, db, channel = _harness(tmp_path)
    db.execute("INSERT INTO charges VALUES (?, 'p1', ?)", (channel.id, str(PRICE)))
    db.execute("UPDATE charges SET amount = '7' WHERE payment_id = 'p2'")
    db.commit()
    assert harness.audit("double")["double_charged"] == 2
    channel.charged_receipts["p3"] += 1  # the client was told twice that p3 cost something
    assert harness.audit("receipts")["double_charged"] == 3


def test_audit_catches_unasked_charges_and_a_bad_stored_voucher(tmp_path):
    harness, db, channel = _harness(tmp_path)
    db.execute("INSERT INTO charges VALUES (?, 'never', ?)", (channel.id, str(PRICE)))
    other = sign_digest(keccak256(b"someone else"), voucher_digest(harness.domain, channel.id, 3 * PRICE))
    db.execute("UPDATE channels SET signature = ?, charged = ?", (other, str(4 * PRICE)))
    db.commit()
    harness.audit("bad")
    failures = "\n".join(harness.stats.failures)
    assert "never asked for" in failures
    assert "not signed by the channel's key" in failures
    assert "ceiling 3000 below charged 4000" in failures
