"""Caps and passes over the spellings and aliases of one file (docs/security.md, "Caps and passes:
the cap boundary and pass replay"): whatever spelling a request uses (case, a trailing slash, a
compressed copy, an index file), the price table charges it as the file, so its cap group and
passes must be the file's own or none. Before, a spelling the first matching cap refused as
spelled fell through to a later cap (`/NEWS/a.html` of a `/news/*` cap read at a reached whole-site
cap's 0), and a compressed copy or a folder form was matched by its own name only."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from channel_node.core.spending import Cap, Pass, parse_period
from channel_node.server.prices import Price, PriceTable, SpendingTable

PATTERNS = ["/news/*", "/news/*.html", "*.html", "/news/a.html", "/opinion/*", "/*/a.*", "*/b*", None]
SEGMENT = st.text(alphabet="abnews", min_size=1, max_size=5)
FILE = st.builds(lambda folders, name, ext: "/" + "/".join([*folders, name + ext]),
                 st.lists(st.sampled_from(["news", "opinion", "a", "b"]), min_size=1, max_size=2),
                 SEGMENT, st.sampled_from([".html", ".htm", ".txt", ""]))  # fmt: skip


def _table(pattern_ids: list[int]) -> SpendingTable:
    caps = [Cap(f"c{i}", 10 + i, parse_period("month"), PATTERNS[p]) for i, p in enumerate(pattern_ids)]
    passes = [Pass(f"p{i}", 5, 3600, pattern=PATTERNS[p]) for i, p in enumerate(pattern_ids) if PATTERNS[p]]
    return SpendingTable(caps, passes)


def _flip_case(text: str, flips: list[bool]) -> str:
    return "".join(ch.upper() if flip else ch for ch, flip in zip(text, flips + [False] * len(text), strict=False))


@settings(max_examples=200, deadline=None)
@given(
    path=FILE,
    pattern_ids=st.lists(st.integers(0, len(PATTERNS) - 1), min_size=1, max_size=4),
    flips=st.lists(st.booleans(), max_size=40),
    slash=st.booleans(),
    compressed=st.sampled_from(["", ".gz", ".BR", ".zst"]),
    static=st.booleans(),
)
def test_no_spelling_of_a_file_reaches_another_cap_or_pass(path, pattern_ids, flips, slash, compressed, static):
    prices = PriceTable([Price(path="/*", amount=100)], [])
    table = _table(pattern_ids)
    price = prices.price_of(path, path, folders_known=static)
    assert price is not None
    own, own_scripts = prices.names_of(path, path, folders_known=static), prices.scripts_of(path, static)
    own_cap, own_passes = table.cap_of(own, price, own_scripts), set(table.passes_of(own, price, own_scripts))

    spelled = _flip_case(path, flips) + compressed + ("/" if slash else "")
    assert prices.price_of(spelled, spelled, folders_known=static) == price  # charged as the file
    names, scripts = prices.names_of(spelled, spelled, folders_known=static), prices.scripts_of(spelled, static)
    cap = table.cap_of(names, price, scripts)
    assert cap is None or cap == own_cap, (spelled, cap, own_cap)
    assert set(table.passes_of(names, price, scripts)) <= own_passes


def test_a_case_spelling_outside_its_cap_is_not_read_at_a_later_reached_cap():
    """The reported shape: a `/news/*` cap before a whole-site cap; `/NEWS/a.html` is the news
    article on a case-insensitive source, so it is uncapped (list price), not in the site's cap."""
    prices = PriceTable([Price(path="/news/*", amount=100)], [])
    news, site = Cap("news", 1000, parse_period("month"), "/news/*"), Cap("site", 10, parse_period("month"))
    table = SpendingTable([news, site])
    price = prices.price_of("/NEWS/a.html", "/NEWS/a.html")
    assert table.cap_of(prices.names_of("/NEWS/a.html", "/NEWS/a.html"), price) is None
    assert table.cap_of(prices.names_of("/news/a.html", "/news/a.html"), price) == news
    # A compressed copy and a trailing slash of the article are the article: its cap, not the site's.
    table = SpendingTable([Cap("news", 1000, parse_period("month"), "/news/*.html"), site])
    for alias in ("/news/a.html.gz", "/news/a.html/"):
        assert table.cap_of(prices.names_of(alias, alias), price, prices.scripts_of(alias)).name == "news"
    # A name only the copy has (`a.gz` of `/news/a`) gets no discount the file itself does not get.
    table = SpendingTable([Cap("gz", 1, parse_period("month"), "/*/a.*"), site])
    assert table.cap_of(prices.names_of("/news/a.gz", "/news/a.gz"), price, prices.scripts_of("/news/a.gz")) is None


async def test_a_compressed_copy_is_read_in_its_articles_cap_not_a_reached_site_cap(chain, deployed, parties, channels, tmp_path):
    """End to end: a `news` cap over `/articles/*.html` before a whole-site cap of one price, which
    an API call reaches. The article's gzip copy (the same content, priced as the article) used to
    match only the site's cap and read for 0; it is in the article's cap and charged there."""
    from paywall_helpers import PRICE, Payer, node_settings, receipt, start_node, write_site

    site = write_site(tmp_path / "site")
    (site / "articles" / "1.html.gz").write_bytes(b"\x1f\x8b compressed article")
    settings = node_settings(
        deployed.address, parties.receiver.address, tmp_path / "node.db", content_dir=site,
        caps=[{"name": "news", "pattern": "/articles/*.html", "cap": f"{10 * PRICE}wei", "period": "month"},
              {"name": "site", "cap": f"{PRICE}wei", "period": "month"}],
    )  # fmt: skip
    node = await start_node(chain.tester, settings)
    try:
        payer = Payer(channels, channels.open_eth(100 * PRICE, channels.config()))
        total = 0

        async def get(path: str):
            nonlocal total
            response = await node.client.get(path, headers={"PAYMENT-SIGNATURE": payer.header(total + PRICE, with_config=total == 0)})
            assert response.status == 200, await response.text()
            got = receipt(response)
            total = int(got["chargedTotal"])
            return got

        assert (await get("/api/quote"))["cap"]["name"] == "site"  # the site's cap, now reached
        got = await get("/articles/1.html.gz")
        assert got["chargedAmount"] == str(PRICE) and got["cap"]["name"] == "news"
    finally:
        await node.stop()


SCRIPT_PATTERNS = ["*.html", "*", "/blog/*", "*/a.html", "/premium.php*", "/premium.php", None]


@settings(max_examples=150, deadline=None)
@given(
    pattern_ids=st.lists(st.integers(0, len(SCRIPT_PATTERNS) - 1), min_size=1, max_size=3),
    below=st.lists(st.sampled_from(["blog", "a.html", "x", "b.php"]), min_size=1, max_size=3),
)
def test_a_path_info_path_gets_no_discount_its_script_does_not_get(pattern_ids, below):
    """Reverse-proxy mode: `/premium.php/<rest>` runs the priced script `/premium.php` on a
    PATH_INFO origin. Whatever the rest says (`/premium.php/a.html` under an `*.html` pass), a cap or
    pass covers the read only when it covers the script itself."""
    prices = PriceTable([Price(path="/premium.php", amount=1000), Price(path="/*", amount=10)], [])
    caps = [Cap(f"c{i}", 5, parse_period("month"), SCRIPT_PATTERNS[p]) for i, p in enumerate(pattern_ids)]
    passes = [Pass(f"p{i}", 5, 3600, pattern=SCRIPT_PATTERNS[p]) for i, p in enumerate(pattern_ids) if SCRIPT_PATTERNS[p]]
    table = SpendingTable(caps, passes)
    path = "/premium.php/" + "/".join(below)
    price = prices.price_of(path, path, folders_known=False)
    names, scripts = prices.names_of(path, path, False), prices.scripts_of(path, False)
    assert "/premium.php" in scripts
    script_price = prices.price_of("/premium.php", "/premium.php", folders_known=False)
    for p in table.passes_of(names, price, scripts):
        assert p in table.passes_of(("/premium.php",), script_price), (path, p)
    cap = table.cap_of(names, price, scripts)
    assert cap is None or table._covers(cap.pattern, cap.tags, ("/premium.php",), price, ())
    # A static source reads the file at the path: no script, as before.
    assert prices.scripts_of(path, True) == ()
