"""New variants of the reported classes, tried against the running node (docs/security.md, "The
node, attacked again")."""

from __future__ import annotations

import pytest

from channel_node.server.protocol import decode_header
from paywall_helpers import PRICE
from test_edge import PRICES, SECRET, Edge

PREMIUM = f"<h1>Premium</h1><p>{SECRET} premium index</p>"


@pytest.fixture
def folder_edge(chain, deployed, parties, channels, tmp_path):
    """A static site with a priced section whose folder has an index file."""
    prices = [*PRICES, {"path": "/premium/*", "price": PRICE, "description": "premium"}]
    edge = Edge(chain, deployed, parties, channels, tmp_path, "static", prices=prices)
    (tmp_path / "site" / "premium").mkdir()
    (tmp_path / "site" / "premium" / "index.html").write_text(PREMIUM)
    yield edge
    edge.close()


@pytest.mark.parametrize("folder", ["/premium", "/premium/", "/premium/index.html"])
@pytest.mark.parametrize("later", ["/premium", "/premium/", "/premium/index.html", "//premium/./"])
def test_a_folder_read_once_stays_priced_under_every_name(folder_edge, folder, later):
    """A paid read of a priced folder's index must not make any of its names free afterwards."""
    edge = folder_edge
    status, headers, body = edge.send("GET", folder, edge.voucher())
    assert status == 200 and SECRET.encode() in body
    assert decode_header(headers["PAYMENT-RESPONSE"])["chargedAmount"] == str(PRICE)
    status, _, body = edge.send("GET", later)
    assert status == 402 and SECRET.encode() not in body, (folder, later)
    status, headers, _ = edge.send("GET", later, edge.voucher())
    assert status == 200 and decode_header(headers["PAYMENT-RESPONSE"])["chargedAmount"] == "0", "one purchase"


@pytest.mark.parametrize("mode", ["static", "proxy"])
@pytest.mark.parametrize("rule", ["/premium", "/premium/", "/reports/*/"])
def test_an_index_file_named_directly_costs_what_its_folder_costs(chain, deployed, parties, channels, tmp_path, mode, rule):
    folder = "/reports/x/" if rule.startswith("/reports") else "/premium/"
    prices = [*PRICES, {"path": rule, "price": PRICE, "description": "a folder"}]
    edge = Edge(chain, deployed, parties, channels, tmp_path, mode, prices=prices)
    try:
        (tmp_path / "site" / folder.strip("/")).mkdir(parents=True)
        (tmp_path / "site" / folder.strip("/") / "index.html").write_text(PREMIUM)
        edge.origin.behaviour = _serve_folder(folder)
        for target in (folder, folder + "index.html", folder + "INDEX.HTML", folder + "index.htm"):
            status, _, body = edge.send("GET", target)
            assert status in (402, 404) and SECRET.encode() not in body, (target, status)
        # an exact free entry for the index itself still wins (the sample sites list their index free)
        status, _, body = edge.send("GET", "/articles/index.html")
        assert status == 200
    finally:
        edge.close()


def _serve_folder(folder: str):
    from aiohttp import web

    async def behaviour(request):
        path = request.path.lower()
        if path in (folder, folder + "index.html", folder + "index.htm"):
            return web.Response(text=PREMIUM, content_type="text/html")
        if path == "/articles/index.html":
            return web.Response(text="<h1>Article list</h1>", content_type="text/html")
        return web.Response(status=404, text="origin: not found")

    return behaviour
