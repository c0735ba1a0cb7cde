"""Revenue insights for publishers: every 402 offer and paid unlock, recorded compactly (recorder,
writer, schema, payers), queried by resource, tag and time (queries), shown on the admin listener
(the figures and page in dashboard; served by server/admin/dashboard.py) and in the terminal
(report). Nothing here speaks HTTP or knows the admin token."""

from channel_node.insights.payers import PayerUnion, encode_ids
from channel_node.insights.recorder import Recorder
from channel_node.insights.schema import OFFER, UNLOCK, connect, split, week_of
from channel_node.insights.writer import Event, InsightsWriter, RecorderStats, WriterThread

__all__ = [
    "OFFER", "UNLOCK", "Event", "InsightsWriter", "PayerUnion", "Recorder", "RecorderStats", "WriterThread",
    "connect", "encode_ids", "split", "week_of",
]  # fmt: skip
