"""Configuration from TOML and environment; structured logs, metrics and health of a running node."""

from __future__ import annotations

import json

import pytest

from channel_node import logs
from channel_node.config import SettingsError, load_settings
from channel_node.logs import configure
from channel_node.logs import flush as flush_logs
from paywall_helpers import PRICE, Payer, node_settings, start_node, write_site

BASE = {"contract": "0x" + "11" * 20, "receiver": "0x" + "22" * 20}


def test_toml_file_with_environment_overrides(tmp_path, monkeypatch):
    toml = tmp_path / "node.toml"
    toml.write_text(
        f'contract = "{BASE["contract"]}"\nreceiver = "{BASE["receiver"]}"\nport = 9000\n'
        'admin_token = "s3cret-admin-token"\n'
        '[paywall]\nupstream = "http://127.0.0.1:8080"\nfree = ["/static/*"]\n'
        '[[paywall.prices]]\npath = "/articles/*"\nprice = "340282366920938463463374607431768211455"\n'
        'tags = { section = "news" }\n'
    )
    monkeypatch.setenv("CHANNEL_NODE_PORT", "9100")
    monkeypatch.setenv("CHANNEL_NODE_CLOSE_MARGIN", "120")
    settings = load_settings(toml)
    assert (settings.port, settings.close_margin, settings.confirmations) == (9100, 120, 2)
    assert settings.paywall.prices[0].price == 2**128 - 1  # exact, as an integer
    assert settings.paywall.prices[0].tags == {"section": "news"}
    assert "s3cret-admin-token" not in repr(settings) and "s3cret-admin-token" not in str(settings.model_dump())


@pytest.mark.parametrize(
    "change",
    [
        {"paywall": {"content_dir": "/tmp", "prices": [{"path": "/a", "price": 0.5}]}},  # floats never become money
        {"paywall": {"content_dir": "/tmp", "prices": [{"path": "/a", "price": 2**128}]}},
        {"paywall": {"content_dir": "/tmp", "prices": [{"path": "a", "price": 1}]}},  # paths start with /
        {"paywall": {"content_dir": "/tmp", "upstream": "http://x"}},  # one content source
        {"paywall": {}},
        {"paywall": {"content_dir": "/tmp"}, "contract": "0x1234"},
        {"paywall": {"content_dir": "/tmp"}, "rpc_url": "ftp://x"},
        {"paywall": {"content_dir": "/tmp"}, "confirmations": 0},
        {"paywall": {"content_dir": "/tmp"}, "surprise": 1},
    ],
)
def test_invalid_settings_are_refused(change):
    with pytest.raises(SettingsError):  # a ConfigError: one line, exit 2 on the command line
        load_settings(**(BASE | change))


def test_missing_config_file_is_reported(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_settings(tmp_path / "nope.toml")


async def test_one_json_log_line_per_paid_request_and_metrics(chain, deployed, parties, channels, tmp_path, capsys):
    settings = node_settings(deployed.address, parties.receiver.address, tmp_path / "node.db", content_dir=write_site(tmp_path / "site"))
    configure("json")
    running = await start_node(chain.tester, settings)
    try:
        payer = Payer(channels, channels.open_eth(10 * PRICE, channels.config()))
        capsys.readouterr()
        await running.client.get("/articles/1.html", headers={"PAYMENT-SIGNATURE": payer.header(PRICE)})
        await running.client.get("/articles/2.html", headers={"PAYMENT-SIGNATURE": payer.header(PRICE)})
        flush_logs()
        lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert [(l["event"], l["outcome"], l["charged"]) for l in lines] == [
            ("payment", "accepted", str(PRICE)), ("payment", "stale_voucher", "0")
        ]  # fmt: skip
        assert lines[0]["channel"] == "0x" + payer.id.hex() and lines[0]["resource"] == "/articles/1.html"
        metrics = await (await running.client.get("/metrics")).text()
        assert f"channel_node_revenue_total {float(PRICE)}" in metrics
        assert 'channel_node_paid_request_seconds_count{outcome="accepted"} 1.0' in metrics
        assert 'channel_node_rejections_total{code="stale_voucher"} 1.0' in metrics
        assert (await (await running.client.get("/healthz")).json())["status"] == "ok"
    finally:
        configure("console")
        await running.stop()


def test_buffered_log_lines_are_written_in_blocks_and_on_flush(capsys):
    """The node buffers log lines (one write per block, not per line); none may be lost or reordered."""
    import structlog

    capsys.readouterr()
    logs.set_buffering(True)
    try:
        configure("json")
        log = structlog.get_logger()
        for n in range(3):
            log.info("few", n=n)
        flush_logs()  # what a planned exit does; the daemon thread does it within FLUSH_INTERVAL
        for n in range(600):
            log.info("many", n=n)  # blocks written as they fill, and by the daemon thread meanwhile
        flush_logs()
        out = capsys.readouterr().out
    finally:
        logs.set_buffering(False)
        configure("console")
    lines = [json.loads(line) for line in out.splitlines()]
    assert [(line["event"], line["n"]) for line in lines] == [("few", n) for n in range(3)] + [("many", n) for n in range(600)]


async def test_health_and_metrics_report_a_claim_key_that_cannot_pay_gas(chain, deployed, parties, tmp_path):
    settings = load_settings(
        contract=deployed.address, receiver=parties.receiver.address, database=tmp_path / "node.db", confirmations=1,
        claim_key="11" * 32, paywall={"content_dir": write_site(tmp_path / "site"), "prices": []},
    )  # fmt: skip
    running = await start_node(chain.tester, settings)
    try:
        node = running.node
        node.sender.stats.balance, node.sender.stats.needed, node.sender.stats.open_rows = 0, 3 * 10**15, 1
        health = await (await running.client.get("/healthz")).json()
        assert health["status"] == "degraded" and "gas_balance_low" in health["problems"]
        metrics = await (await running.client.get("/metrics")).text()
        assert "channel_node_gas_ok 0.0" in metrics and "channel_node_outbox_open 1.0" in metrics
        node.sender.stats.balance = 10**18
        assert (await (await running.client.get("/healthz")).json())["status"] == "ok"
    finally:
        await running.stop()
