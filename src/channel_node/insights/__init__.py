"""Revenue insights for publishers: every 402 offer and paid unlock, recorded compactly (recorder),
queried by resource, tag and time (queries), shown on the admin listener (dashboard) and in the
terminal (report)."""

from channel_node.insights.recorder import InsightsWriter, Recorder

__all__ = ["InsightsWriter", "Recorder"]
