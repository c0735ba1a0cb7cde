"""The admin API's published contract: its paths' prefix, the enums and limits it accepts, and the
OpenAPI 3.1 document (`GET /admin/openapi.json`) that describes them.

`api.py` implements this contract and imports it (never the reverse), so a limit the handlers
enforce and the figure the document publishes are one constant.
"""

from __future__ import annotations

from typing import Any

from channel_node.core import ChannelStatus
from channel_node.store import OUTBOX_OPEN, OutboxStatus

JSON = dict[str, Any]  # a JSON object as the document builds it

PREFIX = "/admin"
# The enums the API accepts and answers are the core's and the store's, published in their order.
CHANNEL_STATUSES: tuple[ChannelStatus, ...] = tuple(ChannelStatus)
OUTBOX_STATUSES: tuple[OutboxStatus, ...] = tuple(OutboxStatus)
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MAX_BATCH = 10_000  # channel ids in one POST /admin/close


def _ref(name: str) -> JSON:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: JSON, description: str, headers: JSON | None = None) -> JSON:
    response = {"description": description, "content": {"application/json": {"schema": schema}}}
    if headers:
        response["headers"] = headers
    return response


def _errors(*statuses: int) -> JSON:
    descriptions = {
        400: "malformed_request or malformed_channel_id",
        401: "unauthorized: no or wrong bearer token",
        404: "channel_unknown (or not_found for an unknown path)",
        409: "the core refused: nothing_to_claim, channel_settled, nothing_to_close",
        503: "admin_disabled (no admin_token configured) or store_unavailable",
    }
    out = {}
    for status in (*statuses, 401, 503):
        out[str(status)] = _json(_ref("Error"), descriptions[status])
        if status == 401:
            out["401"]["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"}, "description": "Bearer"}}
    return out


def _param(name: str, where: str, schema: JSON, description: str, required: bool = False) -> JSON:
    return {"name": name, "in": where, "required": required, "schema": schema, "description": description}


_AMOUNT = {"type": "string", "pattern": "^[0-9]{1,78}$", "description": "decimal string, token's smallest unit"}
_CHANNEL_ID = {"type": "string", "pattern": "^(0x)?[0-9a-fA-F]{64}$"}
_ADDRESS = {"type": "string", "pattern": "^0x[0-9a-fA-F]{40}$", "description": "EIP-55 checksum address"}
_TOTAL = {"X-Total-Count": {"schema": {"type": "integer"}, "description": "matching items before paging"}}
_PAGING = [
    _param("limit", "query", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
           "page size"),
    _param("offset", "query", {"type": "integer", "minimum": 0, "default": 0}, "items to skip"),
]
_ID_PARAM = _param("id", "path", _CHANNEL_ID, "the channel id (32 bytes of hex)", required=True)


def openapi_document() -> JSON:
    nullable_int = {"type": ["integer", "null"]}
    nullable_amount = {"type": ["string", "null"], "pattern": "^[0-9]{1,78}$"}
    schemas = {
        "Error": {
            "type": "object", "required": ["error", "message"],
            "properties": {"error": {"type": "string", "description": "stable machine-readable code"},
                           "message": {"type": "string", "description": "for people; may change"}},
        },
        "Channel": {
            "type": "object",
            "properties": {
                "channelId": _CHANNEL_ID, "payer": _ADDRESS, "signer": _ADDRESS, "receiver": _ADDRESS,
                "token": _ADDRESS | {"description": "zero address for native ETH"},
                "closeDelay": {"type": "integer", "description": "seconds"}, "salt": _AMOUNT,
                "receiverAuthorizer": _ADDRESS | {"description": "may claim, close and consent for the receiver; zero: nobody"},
                "deposited": _AMOUNT, "claimed": _AMOUNT,
                "maxClaimableAmount": _AMOUNT | {"description": "highest voucher received (the ceiling)"},
                "charged": _AMOUNT | {"description": "total charged for content served"},
                "unclaimed": _AMOUNT | {"description": "charged but not claimed: what a claim would collect now"},
                "credit": _AMOUNT | {"description": "paid for but not yet spent"},
                "closeDeadline": nullable_int | {"description": "unix time a payer's pending close ends"},
                "settled": {"type": "boolean"}, "receiverClosing": {"type": "boolean"},
                "status": {"type": "string", "enum": list(CHANNEL_STATUSES)},
            },
        },
        "Charge": {
            "type": "object",
            "properties": {"resource": {"type": "string"}, "amount": _AMOUNT, "paymentId": {"type": ["string", "null"]},
                           "once": {"type": "boolean"}, "at": {"type": "integer", "description": "unix time"}},
        },
        "OutboxRow": {
            "type": "object",
            "properties": {
                "id": {"type": "integer"}, "channelId": _CHANNEL_ID,
                # transfer_authorization: an x402 exact sale's transfer; its channelId is the
                # authorization's key, keccak256(token || payer || nonce) (docs/protocol.md).
                "kind": {"type": "string", "enum": ["claim", "close", "transfer_authorization"]},
                "amount": _AMOUNT | {"description": "the claimed total to reach: what was charged"},
                "voucherAmount": _AMOUNT | {"description": "the voucher that authorises it"},
                "deadline": nullable_int, "status": {"type": "string", "enum": list(OUTBOX_STATUSES)},
                "txHash": {"type": ["string", "null"]}, "nonce": nullable_int, "maxFee": nullable_amount,
                "priorityFee": nullable_amount, "sentAt": nullable_int, "attempts": {"type": "integer"},
                "note": {"type": ["string", "null"]},
            },
        },
        "ChannelDetail": {
            "allOf": [_ref("Channel"), {"type": "object", "properties": {
                "charges": {"type": "array", "items": _ref("Charge")},
                "outbox": {"type": "array", "items": _ref("OutboxRow"), "description": "open rows (pending, sent)"},
            }}],
        },
        "Queued": {
            "type": "object", "description": "a transaction committed to the outbox",
            "properties": {"channelId": _CHANNEL_ID, "kind": {"type": "string", "enum": ["claim", "close"]},
                           "amount": _AMOUNT, "outboxId": {"type": "integer"}, "status": {"type": "string"},
                           "deadline": nullable_int},
        },
        "Refused": {
            "type": "object",
            "properties": {"channelId": _CHANNEL_ID, "error": {"type": "string"}, "message": {"type": "string"}},
        },
        "Batch": {
            "type": "object",
            "properties": {"queued": {"type": "integer"}, "channels": {"type": "array", "items": _ref("Queued")},
                           "rejected": {"type": "array", "items": _ref("Refused")}},
        },
        "Status": {
            "type": "object",
            "description": "the node's health report (as /healthz) plus totals over every channel",
            "properties": {
                "status": {"type": "string", "enum": ["ok", "degraded"]}, "chainId": {"type": "integer"},
                "contract": _ADDRESS, "receiver": _ADDRESS, "head": {"type": "integer"}, "cursor": {"type": "integer"},
                "lag": {"type": "integer"}, "outbox": {"type": "integer"},
                "problems": {"type": "array", "items": {"type": "string"}},
                "gas": {"type": "object", "properties": {"address": _ADDRESS, "balance": _AMOUNT, "needed": _AMOUNT}},
                "totals": {"type": "object", "properties": {
                    "channels": {"type": "integer"},
                    "channelsByStatus": {"type": "object", "additionalProperties": {"type": "integer"}},
                    "deposited": _AMOUNT, "claimed": _AMOUNT, "revenue": _AMOUNT, "unclaimed": _AMOUNT, "credit": _AMOUNT,
                    "outbox": {"type": "object", "description": "open rows by status", "additionalProperties": {
                        "type": "object", "properties": {"rows": {"type": "integer"}, "amount": _AMOUNT}}},
                }},
            },
        },
    }  # fmt: skip
    claim_or_close = {
        "202": _json(_ref("Queued"), "queued in the outbox; the sender broadcasts it"),
        **_errors(400, 404, 409),
    }
    paths = {
        f"{PREFIX}/channels": {"get": {
            "summary": "List channels (ordered by id)", "operationId": "listChannels",
            "parameters": [
                _param("status", "query", {"type": "string", "enum": list(CHANNEL_STATUSES)}, "only channels in this state"),
                _param("min_unclaimed", "query", _AMOUNT, "only channels with at least this much unclaimed"),
                *_PAGING,
            ],
            "responses": {"200": _json({"type": "array", "items": _ref("Channel")}, "channels", _TOTAL), **_errors(400)},
        }},
        f"{PREFIX}/channels/{{id}}": {"get": {
            "summary": "One channel with its charges and open outbox rows", "operationId": "showChannel",
            "parameters": [_ID_PARAM],
            "responses": {"200": _json(_ref("ChannelDetail"), "the channel"), **_errors(400, 404)},
        }},
        f"{PREFIX}/channels/{{id}}/claim": {"post": {
            "summary": "Claim the best voucher on chain; the channel stays open", "operationId": "claimChannel",
            "parameters": [_ID_PARAM], "responses": claim_or_close,
        }},
        f"{PREFIX}/channels/{{id}}/close": {"post": {
            "summary": "Close on chain with the best voucher; the node stops selling on the channel",
            "operationId": "closeChannel", "parameters": [_ID_PARAM], "responses": claim_or_close,
        }},
        f"{PREFIX}/claim": {"post": {
            "summary": "Claim every channel with at least `min` unclaimed, neither settled nor closing by the receiver",
            "operationId": "claimMany",
            "requestBody": {"required": False, "content": {"application/json": {"schema": {
                "type": "object", "additionalProperties": False,
                "properties": {"min": _AMOUNT | {"default": "1", "description": "at least 1"}}}}}},
            "responses": {"202": _json(_ref("Batch"), "claims queued"), **_errors(400)},
        }},
        f"{PREFIX}/close": {"post": {
            "summary": "Close every open channel with a voucher, or the listed ones", "operationId": "closeMany",
            "requestBody": {"required": True, "content": {"application/json": {"schema": {"oneOf": [
                {"type": "object", "additionalProperties": False, "required": ["all"],
                 "properties": {"all": {"const": True}}},
                {"type": "object", "additionalProperties": False, "required": ["channels"],
                 "properties": {"channels": {"type": "array", "items": _CHANNEL_ID, "minItems": 1, "maxItems": MAX_BATCH}}},
            ]}}}},
            "responses": {"202": _json(_ref("Batch"), "closes queued; unknown or settled channels in `rejected`"),
                          **_errors(400)},
        }},
        f"{PREFIX}/status": {"get": {
            "summary": "Health and totals", "operationId": "status",
            "responses": {"200": _json(_ref("Status"), "the node's state")} | _errors(),
        }},
        f"{PREFIX}/outbox": {"get": {
            "summary": "Outbox rows of every status, newest first", "operationId": "listOutbox",
            "parameters": [
                _param("status", "query", {"type": "string", "enum": list(OUTBOX_STATUSES)}, "only rows in this status"),
                _param("channel", "query", _CHANNEL_ID, "only rows of this channel"),
                *_PAGING,
            ],
            "responses": {"200": _json({"type": "array", "items": _ref("OutboxRow")}, "rows", _TOTAL), **_errors(400)},
        }},
        f"{PREFIX}/openapi.json": {"get": {
            "summary": "This document", "operationId": "openapi",
            "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1")} | _errors(),
        }},
    }  # fmt: skip
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "channel-node admin API",
            "version": "1",
            "description": (
                "Operator API of a channel-node, served on its own listener (127.0.0.1 by default). "
                "Every call needs `Authorization: Bearer <admin_token>`. Amounts are decimal strings in the "
                "token's smallest unit. Errors are `{\"error\": code, \"message\": text}`; clients switch on `error`. "
                "Claims and closes are committed to the node's outbox and sent by its sender; every call that "
                "changes something is logged as `admin_action`."
            ),
        },
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "the node's admin_token"}},
            "schemas": schemas,
        },
    }


__all__ = [
    "CHANNEL_STATUSES", "DEFAULT_LIMIT", "MAX_BATCH", "MAX_LIMIT", "OUTBOX_OPEN", "OUTBOX_STATUSES", "PREFIX",
    "openapi_document",
]  # fmt: skip
