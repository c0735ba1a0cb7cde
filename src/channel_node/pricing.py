"""A price entry: what one listed path costs (docs/protocol.md section 6).

Why a module of its own: two parts agree on it and neither should import the other. `config.py`
parses the `[[paywall.prices]]` entries of the settings file (`PriceRule`, its schema and
validation) into `Price`s; `server/prices.py` matches request paths against them (`PriceTable`,
which also refuses a non-positive amount). The settings layer knowing the paywall's matcher, or the
paywall knowing the settings file, would be an arrow the wrong way; this value, pure and without
imports of ours, is what both need."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Price:
    path: str
    amount: int  # in the token's smallest unit
    once: bool = True  # bought once per channel (an article) rather than per request (an API call)
    description: str = ""
    tags: dict[str, str] = field(default_factory=dict, hash=False, compare=False)
    # Offer x402's `exact` beside `channel` for this entry: None follows the site's `exact.enabled`.
    exact: bool | None = None
