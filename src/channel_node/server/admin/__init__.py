"""The admin listener: the operator's API under `/admin` (`api.py`), who may call it (`auth.py`),
its published contract (`openapi.py`), and the revenue dashboard's pages (`dashboard.py`) that the
same listener serves behind the same guard."""

from channel_node.node.operations import NOTHING_TO_CLOSE  # was defined in the old server/admin.py
from channel_node.server.admin.api import (
    ADMIN_API,
    MAX_BODY,
    AdminApi,
    AdminError,
    AdminNode,
    amount_arg,
    batch_json,
    channel_document,
    channel_json,
    channel_status,
    charge_json,
    create_admin_app,
    error_response,
    matching_channels,
    outbox_json,
    parse_channel_id,
    result_json,
    status_document,
)
from channel_node.server.admin.auth import DASHBOARD_COOKIE, DASHBOARD_LOGIN, DASHBOARD_PREFIX, AdminAuth, Admission
from channel_node.server.admin.dashboard import Dashboard, add_dashboard_routes
from channel_node.server.admin.openapi import (
    CHANNEL_STATUSES,
    DEFAULT_LIMIT,
    MAX_BATCH,
    MAX_LIMIT,
    OUTBOX_OPEN,
    OUTBOX_STATUSES,
    PREFIX,
    openapi_document,
)

__all__ = [
    "ADMIN_API", "CHANNEL_STATUSES", "DASHBOARD_COOKIE", "DASHBOARD_LOGIN", "DASHBOARD_PREFIX", "DEFAULT_LIMIT",
    "MAX_BATCH", "MAX_BODY", "MAX_LIMIT", "NOTHING_TO_CLOSE", "OUTBOX_OPEN", "OUTBOX_STATUSES", "PREFIX", "AdminApi",
    "AdminAuth", "AdminError", "AdminNode", "Admission", "Dashboard", "add_dashboard_routes", "amount_arg",
    "batch_json", "channel_document", "channel_json", "channel_status", "charge_json", "create_admin_app",
    "error_response", "matching_channels", "openapi_document", "outbox_json", "parse_channel_id", "result_json",
    "status_document",
]  # fmt: skip
