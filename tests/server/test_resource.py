"""The canonical resource (server/resource.py), the price table's matching of it, and the teaser:
pure properties over generated targets, no server."""

from __future__ import annotations

from urllib.parse import quote, unquote

from hypothesis import given, settings
from hypothesis import strategies as st

from channel_node.server.browser import TEASER_CHARS, TEASER_FRACTION, teaser_from_html
from channel_node.server.prices import Price, PriceTable
from channel_node.server.resource import BAD_ENCODING, BAD_PATH, BAD_TARGET, RefusedPath, Resource, canonical_resource

CODES = {BAD_TARGET, BAD_PATH, BAD_ENCODING}

# Pieces of hostile paths: dot segments in every spelling, encoded slashes and backslashes, double
# encoding, NULs and controls, overlong and invalid UTF-8, fullwidth dots, path parameters, case.
ATOMS = [
    "articles", "1.html", "a.html", "static", "free", "ARTICLES", "Articles", "A.HTML", "index.html",
    ".", "..", "", "%2e", "%2E", "%2e%2e", ".%2e", "%2E.", "%2f", "%2F", "..%2f", "%252e%252e", "%252f",
    "%25", "%5c", "%5C", "\\", "..\\", "%00", "%0a", "%0d", "%09", "%7f", "%c2%85", "%c0%ae%c0%ae", "%c0%af",
    "%e0%80%ae", "%ed%a0%80", "%ff", "%e2%80%ae", "%e2%80%8b", "%ef%bc%8e%ef%bc%8e", "%ef%bc%8f", "%c5%bf",
    "e%cc%81", "caf%C3%A9", ";", ";x=1", "a;b", "%3b", "a.", "...", "%20", "a%20", "%", "%2", "%zz", "~", "@", ":",
]  # fmt: skip
SEPARATORS = ["/", "//", "///", "/./", "/%2e/"]


TABLE = PriceTable(
    [Price("/articles/*", 10), Price("/premium.html", 99), Price("/api/*", 1, once=False)],
    ["/", "/static/*", "/articles/index.html"],
)



def _encoded(text: str, levels: int) -> str:
    for _ in range(levels):
        text = quote(text, safe="")
    return text


segment = st.one_of(
    st.sampled_from(ATOMS),
    st.builds(_encoded, st.text(max_size=6), st.integers(0, 2)),
    st.builds(_encoded, st.sampled_from([".", "..", "/", "\\", "\x00", "%"]), st.integers(1, 3)),
)


@st.composite
def targets(draw) -> str:
    parts = draw(st.lists(segment, max_size=7))
    path = ""
    for part in parts:
        path += draw(st.sampled_from(SEPARATORS)) + part
    path = path or "/"
    if draw(st.booleans()):
        path += "/"
    prefix = draw(st.sampled_from(["", "", "", "http://h", "https://Evil.example:8443", "http://u@h"]))
    query = draw(st.sampled_from(["", "", "?", "?x=1", "?a=%2e%2e/b", "?q=%zz", "?p=1#frag", "#frag"]))
    return prefix + path + query


def origin_resolve(target: str, decodes: int = 1, backslash: bool = False, keep_slash: bool = False) -> str:
    """What a typical origin or file system reads for a target: percent-decoded (once, or twice
    for a careless one), backslashes as slashes (IIS), repeated slashes merged, dot segments
    resolved (nginx, Apache, aiohttp's static handler all do as much). `keep_slash`: a folder
    keeps its trailing slash (RFC 3986); without it the origin ignores trailing slashes."""
    path = target.split("?", 1)[0].split("#", 1)[0]
    if path.lower().startswith(("http://", "https://")):
        path = "/" + path.split("://", 1)[1].partition("/")[2]
    for _ in range(decodes):
        path = unquote(path, errors="surrogateescape")
    if backslash:
        path = path.replace("\\", "/")
    segments: list[str] = []
    parts = path.split("/")
    for part in parts:
        if part == "..":
            if segments:
                segments.pop()
        elif part not in ("", "."):
            segments.append(part)
    folder = keep_slash and segments and parts[-1] in ("", ".", "..")
    return "/" + "/".join(segments) + ("/" if folder else "")


@settings(max_examples=600, deadline=None)
@given(targets())
def test_every_target_is_one_canonical_resource_or_a_coded_refusal(target):
    result = canonical_resource(target)
    if isinstance(result, RefusedPath):
        assert result.code in CODES and result.detail
        assert target not in result.detail or len(target) < 3  # the detail never quotes the target
        return
    assert isinstance(result, Resource)
    path = result.path
    assert path.startswith("/") and "//" not in path
    assert not any(part in (".", "..") for part in path.split("/"))
    assert "\x00" not in path and "\\" not in path and "%" not in path and ";" not in path
    # Every way an origin could read the request's own target, and what the node forwards, is the
    # path the node priced: a careless origin decoding twice or turning backslashes into slashes too.
    for decodes in (1, 2):
        for backslash in (False, True):
            assert origin_resolve(target, decodes, backslash, keep_slash=True) == path, (target, decodes, backslash)
            assert origin_resolve(result.target, decodes, backslash, keep_slash=True) == path
            # an origin that ignores trailing slashes reads nothing the table prices differently
            loose = origin_resolve(target, decodes, backslash)
            if TABLE.match(loose) is not None:
                assert TABLE.match(path) is not None
    # The forwarded target is itself canonical and means the same resource.
    assert canonical_resource(result.target) == result
    assert unquote(result.encoded_path, errors="strict") == path


@settings(max_examples=300, deadline=None)
@given(st.text(min_size=1, max_size=12))
def test_any_text_segment_round_trips_or_is_refused(text):
    result = canonical_resource("/articles/" + quote(text, safe=""))
    if isinstance(result, Resource):
        assert result.path in ("/articles/" + text, "/articles/", "/") or text in (".", "..")
        assert canonical_resource(result.target) == result
    else:
        assert result.code in CODES


def test_the_reported_examples():
    for target in ["//articles/a.html", "/./articles/a.html", "/static/../articles/a.html", "/static/%2e%2e/articles/a.html",
                   "http://h/articles/a.html", "/x/%2E%2e/%2e/articles//a.html"]:  # fmt: skip
        assert canonical_resource(target) == Resource("/articles/a.html"), target
    refused = {
        "/static/..%2farticles/a.html": BAD_PATH, "/free/%252e%252e/articles/a.html": BAD_ENCODING,
        "/articles/a.html%00": BAD_PATH, "/static/%5c../articles/a.html": BAD_PATH, "/a\\b": BAD_PATH,
        "/articles;x=1/a.html": BAD_PATH, "/%c0%ae%c0%ae/articles/a.html": BAD_ENCODING, "*": BAD_TARGET,
        "h:443": BAD_TARGET, "/a#b": BAD_TARGET, "/a%2": BAD_ENCODING, "/%ef%bc%8e%ef%bc%8e/a": BAD_PATH,
        "/articles/a.html.": BAD_PATH, "/articles/a.html%20": BAD_PATH, "/" + "a" * 5000: BAD_TARGET,
    }  # fmt: skip
    for target, code in refused.items():
        result = canonical_resource(target)
        assert isinstance(result, RefusedPath) and result.code == code, (target, result)
    assert canonical_resource("/a/b/..?x=%2F") == Resource("/a/", "x=%2F")
    assert Resource("/caf\u00e9 x", "q=1").target == "/caf%C3%A9%20x?q=1"


# ------------------------------------------------------------------ price table

def _case_variants(text: str):
    return st.lists(st.booleans(), min_size=len(text), max_size=len(text)).map(
        lambda flips: "".join(c.upper() if f else c.lower() for c, f in zip(text, flips, strict=True))
    )


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["/articles/1.html", "/premium.html", "/api/quote", "/articles/deep/x"]).flatmap(_case_variants),
       st.sampled_from(["", "/", "//"]))  # fmt: skip
def test_case_and_slash_variants_of_a_priced_path_are_priced(path, slash):
    resource = canonical_resource(path + slash)
    price = TABLE.match(resource.path)
    assert price is not None and price == TABLE.match(path.lower()), path


def test_free_only_when_free_as_spelled_and_folded():
    assert TABLE.match("/static/site.css") is None and TABLE.match("/") is None
    assert TABLE.match("/articles/index.html") is None  # the exact free path as spelled
    assert TABLE.match("/articles/1.html").amount == 10
    assert TABLE.match("/PREMIUM.HTML").amount == 99
    assert TABLE.match("/elsewhere") is None


# ------------------------------------------------------------------ teaser

words = st.lists(st.text(st.characters(min_codepoint=97, max_codepoint=122), min_size=1, max_size=9), min_size=1, max_size=60)


@settings(max_examples=200, deadline=None)
@given(st.text(st.characters(min_codepoint=65, max_codepoint=90), max_size=20), st.lists(words, min_size=1, max_size=3))
def test_the_teaser_never_gives_the_page_away(title, paragraphs):
    texts = [" ".join(p) for p in paragraphs]
    body = "".join(f"<p>{t}</p>" for t in texts)
    page = f"<html><head><title>{title}</title></head><body><h1>{title}</h1>{body}</body></html>"
    teaser = teaser_from_html(page)
    total = len(" ".join(" ".join([title, title, *texts]).split()))
    taken = teaser.removesuffix(" ...")
    assert len(taken) <= total * TEASER_FRACTION[0] // TEASER_FRACTION[1] + 2  # ". " between title and words
    shown = taken.split(". ", 1)[-1] if title and taken.startswith(title.rstrip(".")) else taken
    assert len(shown) <= TEASER_CHARS
    if len(texts) == 1 and texts[0]:
        assert texts[0] not in teaser or len(texts[0]) * 4 <= total, "a one-paragraph page is never given whole"
    for later in texts[1:]:
        assert later not in teaser or later in texts[0]


def test_a_short_page_keeps_its_text():
    assert teaser_from_html("<h1>Article 1</h1>") == ""  # nothing to spare: the price's description shows
    short = teaser_from_html("<p>The whole short article is this one sentence.</p>")
    assert short == "The whole ..." and "sentence" not in short


@settings(max_examples=600, deadline=None)
@given(st.lists(st.text(alphabet="aZ09_~-./%2e", max_size=6), max_size=5).map(lambda parts: "/" + "/".join(parts)))
def test_the_plain_target_shortcut_agrees_with_the_full_rules(target):
    """A target that looks plain is answered without decoding: it must be exactly what the full
    rules give (the alphabet is biased to the dots, slashes and escapes that make a target not plain)."""
    from channel_node.server.resource import _canonical

    assert canonical_resource(target) == _canonical(target)
