"""README's first command: `channel-node dev` serves a priced site and prints how to pay; following
its printed instructions buys articles."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request

from channel_node.wire.envelope import decode_header


def fetch(url: str, headers: dict | None = None) -> tuple[int, dict, bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def _report_revenue(tmp_path, expected: str | None = None) -> str:
    """The revenue line of `channel-node report` over dev's insights file, without --decimals or
    --symbol; waits (the recorder flushes every second) until it shows `expected`."""
    import time

    deadline = time.monotonic() + 20
    while True:
        done = subprocess.run([sys.executable, "-m", "channel_node.cli.main", "report", "--insights", str(tmp_path / "insights.db")],
                              capture_output=True, text=True, timeout=60)  # fmt: skip
        assert done.returncode == 0, done.stderr
        line = next(line for line in done.stdout.splitlines() if "revenue" in line)
        if expected is None or expected in line or time.monotonic() > deadline:
            return line
        time.sleep(0.5)


def start_dev(tmp_path, *options: str) -> subprocess.Popen:
    command = ["dev", *options, "--port", "0", "--rpc-port", "0", "--data-dir", str(tmp_path)]
    return subprocess.Popen([sys.executable, "-m", "channel_node.cli.main", *command], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def read_until(process: subprocess.Popen, marker: str) -> list[str]:
    """What `dev` printed, up to and including the first line containing `marker`."""
    lines = []
    for line in process.stdout:
        lines.append(line.rstrip("\n"))
        if marker in line:
            return lines
    raise AssertionError("dev stopped early:\n" + "\n".join(lines))


def test_following_what_dev_prints_pays_for_articles(tmp_path):
    process = start_dev(tmp_path)
    try:
        lines = read_until(process, "wallet get")
        text = "\n".join(lines)
        assert "self-check" in text, text
        offer_url = re.search(r"curl -i (http://\S+)$", text, re.M).group(1)
        status, headers, body = fetch(offer_url)
        assert status == 402 and json.loads(body)["accepts"][0]["amount"] == "20000000000000"
        paid = re.findall(r"curl -i -H 'PAYMENT-SIGNATURE: (\S+)' (http://\S+)", text)
        assert len(paid) == 2
        for n, (header, url) in enumerate(paid, start=2):
            status, headers, body = fetch(url, {"PAYMENT-SIGNATURE": header})
            assert status == 200 and b"<h1>" in body
            assert decode_header(headers["PAYMENT-RESPONSE"])["chargedTotal"] == str(n * 20000000000000)
        assert (tmp_path / "node.db").exists()

        # The operator's side: the admin API and the revenue dashboard, with the printed token.
        token, admin_url = re.search(r"CHANNEL_NODE_ADMIN_TOKEN=(\S+) \S*channel-node channels list --admin-url (\S+)", text).groups()
        auth = {"Authorization": f"Bearer {token}"}
        status, _, body = fetch(admin_url + "/admin/channels", auth)
        assert status == 200 and json.loads(body)[0]["charged"] == str(3 * 20000000000000)
        status, _, _ = fetch(admin_url + "/admin/insights", auth)
        assert status == 200

        # The reader's CLI, exactly as printed: it opens its own channel and pays.
        wallet_line = next(l for l in lines if "wallet get" in l).strip()
        env_part, command = wallet_line.split(" ", 1)
        name, value = env_part.split("=", 1)
        args = command.split()[1:]  # drop "channel-node"
        env = {**os.environ, name: value}
        bought = subprocess.run([sys.executable, "-m", "channel_node.cli.main", *args], capture_output=True, text=True, env=env, timeout=60)
        assert bought.returncode == 0, bought.stderr
        assert "<h1>" in bought.stdout and "charged 0.00002 ETH" in bought.stderr, bought.stderr
        assert re.search(r"^opened channel 0x[0-9a-f]{64} with a deposit of 0.001 ETH$", bought.stderr, re.M), bought.stderr
        wallet_args = args[args.index("--wallet") : args.index("--wallet") + 4]  # --wallet DIR --rpc-url URL
        listed = subprocess.run([sys.executable, "-m", "channel_node.cli.main", "wallet", "channels", "--json", *wallet_args],
                                capture_output=True, text=True, env=env, timeout=60)  # fmt: skip
        [channel] = json.loads(listed.stdout)
        assert channel["charged"] == "20000000000000" and channel["asset"] == "ETH"
        token = "0x" + "12" * 20  # a wallet told to pay in a token refuses this site's ETH offer
        refused = subprocess.run([sys.executable, "-m", "channel_node.cli.main", "wallet", "get", offer_url, "--token", token, *wallet_args],
                                 capture_output=True, text=True, env=env, timeout=60)  # fmt: skip
        assert refused.returncode != 0 and refused.stdout == ""
        assert "the offer asks for native ETH; this wallet's policy pays in token" in refused.stderr, refused.stderr
        topped = subprocess.run(
            [sys.executable, "-m", "channel_node.cli.main", "wallet", "topup", channel["channel"], "1000wei", "--json", *wallet_args],
            capture_output=True, text=True, env=env, timeout=60,
        )  # fmt: skip
        assert topped.returncode == 0, topped.stderr
        assert int(json.loads(topped.stdout)["deposited"]) == int(channel["deposited"]) + 1000
        channel["deposited"] = str(int(channel["deposited"]) + 1000)
        base = offer_url.split("/articles/")[0]
        closed = subprocess.run(
            [sys.executable, "-m", "channel_node.cli.main", "wallet", "close", channel["channel"], "--node", base, "--json", *wallet_args],
            capture_output=True, text=True, env=env, timeout=60,
        )  # fmt: skip
        assert closed.returncode == 0, closed.stderr
        result = json.loads(closed.stdout)
        assert result["closed"] == "cooperatively" and int(result["refunded"]) == int(channel["deposited"]) - 20000000000000
        # `report` without --decimals/--symbol: the node recorded its asset, ETH, in the insights file.
        assert "ETH" in _report_revenue(tmp_path), "report shows ETH amounts"
    finally:
        process.terminate()
        assert process.wait(timeout=15) == 0


def test_dev_with_a_token_prices_the_site_in_a_stand_in_stablecoin(tmp_path):
    """`dev --token`: the same site priced in DemoDollar; the printed curl vouchers and the printed
    wallet command (which pays with a permit deposit in the token) both buy articles."""
    process = start_dev(tmp_path, "--token")
    try:
        lines = read_until(process, "Browser:")
        text = "\n".join(lines)
        assert "paying 20000 DUSD units (0.02 DUSD)" in text, text
        token = re.search(r"^token\s+(0x[0-9a-fA-F]{40}) \(DemoDollar", text, re.M).group(1)
        offer_url = re.search(r"curl -i (http://\S+)$", text, re.M).group(1)
        status, _, body = fetch(offer_url)
        [offer] = json.loads(body)["accepts"]
        assert status == 402 and (offer["amount"], offer["asset"]) == ("20000", token)
        header, url = re.findall(r"curl -i -H 'PAYMENT-SIGNATURE: (\S+)' (http://\S+)", text)[0]
        status, headers, _ = fetch(url, {"PAYMENT-SIGNATURE": header})
        assert status == 200 and decode_header(headers["PAYMENT-RESPONSE"])["chargedTotal"] == "40000"

        wallet_line = next(l for l in lines if "wallet get" in l).strip()
        env_part, command = wallet_line.split(" ", 1)
        name, value = env_part.split("=", 1)
        args = command.split()[1:]
        assert args[-2:] == ["--token", token]
        env = {**os.environ, name: value}
        bought = subprocess.run([sys.executable, "-m", "channel_node.cli.main", *args], capture_output=True, text=True, env=env, timeout=60)
        assert bought.returncode == 0, bought.stderr
        assert "<h1>" in bought.stdout and "charged 0.02 DUSD (channel total 0.02 DUSD)" in bought.stderr, bought.stderr
        assert "with a deposit of 1 DUSD" in bought.stderr, bought.stderr
        wallet_args = args[args.index("--wallet") :]  # --wallet DIR --rpc-url URL --token ADDRESS
        balance = subprocess.run([sys.executable, "-m", "channel_node.cli.main", "wallet", "balance", "--json", *wallet_args],
                                 capture_output=True, text=True, env=env, timeout=60)  # fmt: skip
        figures = json.loads(balance.stdout)
        # 1,000 DUSD minted; 2 DUSD in the demo channel, 1 DUSD (50 prices) in the wallet's own.
        assert (figures["token"], figures["balance"]) == (token, str(1_000_000_000 - 2_000_000 - 1_000_000))
        assert figures["unspent_in_channels"] == str(1_000_000 - 20_000)
        # The token's symbol and decimals, read from its contract, in every amount a person reads:
        # the report (no flags), a typed top-up in DUSD, and one refused for more decimals than DUSD has.
        assert "0.06 DUSD" in _report_revenue(tmp_path, "0.06 DUSD")
        channel = json.loads(subprocess.run([sys.executable, "-m", "channel_node.cli.main", "wallet", "channels", "--json",
                                             *wallet_args], capture_output=True, text=True, env=env, timeout=60).stdout)[-1]  # fmt: skip
        topped = subprocess.run([sys.executable, "-m", "channel_node.cli.main", "wallet", "topup", channel["channel"], "0.5DUSD",
                                 "--json", *wallet_args], capture_output=True, text=True, env=env, timeout=60)  # fmt: skip
        assert topped.returncode == 0, topped.stderr
        assert int(json.loads(topped.stdout)["deposited"]) == int(channel["deposited"]) + 500_000
        refused = subprocess.run([sys.executable, "-m", "channel_node.cli.main", "wallet", "topup", channel["channel"], "0.0000001",
                                  *wallet_args], capture_output=True, text=True, env=env, timeout=60)  # fmt: skip
        assert refused.returncode == 2 and refused.stdout == "", refused
        assert len(refused.stderr.strip().splitlines()) == 1 and "more decimals than DUSD has" in refused.stderr
    finally:
        process.terminate()
        assert process.wait(timeout=15) == 0


def test_a_dev_run_names_the_dashboard_and_removes_its_temporary_folder(tmp_path):
    """Issue 15, finding 7: `dev` says where its revenue dashboard is and how to log in, and a run
    without --data-dir leaves no temporary folder behind (unless --keep)."""
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    command = [sys.executable, "-m", "channel_node.cli.main", "dev", "--once", "--port", "0", "--rpc-port", "0"]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    admin = re.search(r"admin API (http://\S+)/admin,", done.stdout).group(1)
    assert f"Dashboard: the revenue insights of this run at {admin}/admin/insights" in done.stdout
    assert f"log in at {admin}/admin/insights/login with the token above" in done.stdout
    assert "removed the temporary folder" in done.stdout
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("channel-node-dev-")] == []
    # Printed commands name a program that runs from here (`channel-node` only when PATH has this one).
    wallet_line = next(l for l in done.stdout.splitlines() if "wallet get" in l)
    program = wallet_line.split()[1]
    assert program == "channel-node" or os.access(program, os.X_OK), wallet_line
    kept = subprocess.run([*command, "--keep"], capture_output=True, text=True, env=env, timeout=120)
    assert kept.returncode == 0 and "kept " in kept.stdout
    [folder] = [p for p in tmp_path.iterdir() if p.name.startswith("channel-node-dev-")]
    assert (folder / "node.db").exists() and (folder / "reader-wallet" / "keystore.json").exists()
