"""Configuration errors as one line naming the field, the value and the fix (docs/operations.md,
"When something goes wrong"), for the class of mistakes: any typo'd key at any depth, any wrong
value from the file or the environment, any broken TOML; and the command line's URL checks."""

from __future__ import annotations

import string

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from channel_node.cli.urls import check_url
from channel_node.config import Paywall, PriceRule, Settings, SettingsError, load_settings, public_endpoint
from channel_node.errors import ConfigError, UsageError

SITE = {"content_dir": "/tmp"}
TOP = sorted(Settings.model_fields)
NESTED = {"paywall": sorted(Paywall.model_fields), "price": sorted(PriceRule.model_fields)}


def one_line(exc: SettingsError) -> str:
    text = str(exc)
    assert "\n" not in text and "pydantic" not in text and "https://errors" not in text and "[type=" not in text
    return text


def typo(word: str, data: st.DataObject) -> str:
    """One edit of `word`: a letter dropped, doubled, swapped with the next or replaced."""
    i = data.draw(st.integers(0, len(word) - 1))
    kind = data.draw(st.sampled_from(["drop", "double", "swap", "replace"]))
    if kind == "drop":
        return word[:i] + word[i + 1 :]
    if kind == "double":
        return word[:i] + word[i] + word[i:]
    if kind == "swap" and i < len(word) - 1:
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    return word[:i] + data.draw(st.sampled_from(string.ascii_lowercase)) + word[i + 1 :]


@settings(max_examples=150, deadline=None)
@given(data=st.data(), where=st.sampled_from(["top", "paywall", "price"]))
def test_a_typod_key_is_named_with_a_real_suggestion(data, where):
    fields = TOP if where == "top" else NESTED[where]
    word = data.draw(st.sampled_from([f for f in fields if len(f) > 3]))
    wrong = typo(word, data)
    assume(wrong not in fields)
    paywall = dict(SITE)
    top: dict[str, object] = {}
    if where == "top":
        top[wrong] = 1
    elif where == "paywall":
        paywall[wrong] = 1
    else:
        paywall["prices"] = [{"path": "/a", "price": 1, wrong: 1}]
    with pytest.raises(SettingsError) as caught:
        load_settings(paywall=paywall, **top)
    line = one_line(caught.value)
    assert f"unknown setting `{wrong}`" in line
    suggested = line.split("did you mean `")[1].split("`")[0] if "did you mean" in line else None
    assert suggested is None or suggested in fields, "only a real key is suggested"
    if len(word) >= 6:
        assert suggested is not None, f"{wrong!r} is one edit from {word!r}: {line}"


INT_FIELDS = ["port", "confirmations", "admin_port", "close_margin", "claim_batch_size"]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(INT_FIELDS), value=st.text(min_size=1, max_size=12).filter(lambda v: not v.strip().lstrip("+-").isdigit()))
@example(field="port", value="0.0")  # pydantic alone reads it as 0: found by this test
def test_a_wrong_value_from_the_environment_names_the_variable(field, value, monkeypatch):
    assume("\x00" not in value)
    variable = f"CHANNEL_NODE_{field.upper()}"
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as caught:
        load_settings(paywall=SITE)
    line = one_line(caught.value)
    assert f"{variable}=" in line and "must be" in line


@settings(max_examples=100, deadline=None)
@given(secret=st.one_of(st.integers(), st.lists(st.integers(), max_size=3), st.booleans()))
def test_a_secret_of_the_wrong_type_is_never_echoed(secret):
    for field in ("claim_key", "admin_token"):
        with pytest.raises(SettingsError) as caught:
            load_settings(paywall=SITE, **{field: secret})
        line = one_line(caught.value)
        assert field in line and "(hidden)" in line
        assert repr(secret) not in line.replace("(hidden)", "") or str(secret) in field


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(alphabet='ab =[]"\'\n.#1{},', max_size=40))
def test_any_broken_toml_is_one_line_with_its_position(text, tmp_path):
    path = tmp_path / "node.toml"
    path.write_text(text)
    try:
        load_settings(path)
    except SettingsError as exc:
        line = one_line(exc)
        if "TOML syntax error" in line:
            assert line.startswith(f"{path}: TOML syntax error at ")
            assert (", column " in line) or ("at the end of the file" in line), line
    # anything else escaping (a tomllib or pydantic exception) fails the test


def test_the_one_check_across_fields_is_one_line():
    with pytest.raises(ConfigError, match=r"^invalid configuration: \[paywall\]: set exactly one of"):
        load_settings(paywall={"content_dir": "/tmp", "upstream": "http://x"})
    with pytest.raises(SettingsError, match="did you mean `confirmations`"):
        load_settings(paywall=SITE, confirmation=2)


@settings(max_examples=200, deadline=None)
@given(url=st.one_of(st.text(max_size=40), st.builds(lambda h, p: f"{h}:{p}/x", st.text(max_size=10), st.integers(-5, 99999))))
def test_check_url_accepts_or_says_how_to_write_it(url):
    try:
        assert check_url(url, "the URL") == url
    except UsageError as exc:
        assert "\n" not in str(exc).strip() or "\n" in url
        assert str(exc).startswith("the URL ")


@settings(max_examples=100, deadline=None)
@given(key=st.text(alphabet=string.ascii_letters + string.digits, min_size=8, max_size=40))
def test_an_rpc_urls_key_is_never_shown(key):
    for url in (f"https://rpc.example/v3/{key}", f"https://rpc.example/?apikey={key}", f"rpc.example/v3/{key}"):
        assert key not in public_endpoint(url)
        try:
            check_url(url, "--rpc-url", secret=True)
        except UsageError as exc:
            assert key not in str(exc)
