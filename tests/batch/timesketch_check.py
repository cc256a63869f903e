"""Read a Timesketch file as Timesketch's own import client does (timesketch-import-client's
ImportStreamer), with the upload replaced by keeping the events."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def timesketch_parse(path: Path) -> list[dict[str, Any]]:
    """The events Timesketch's import client would upload from ``path`` (its own file
    parsing and field fixing, with the upload replaced by keeping the events)."""
    from timesketch_import_client import importer

    events: list[dict[str, Any]] = []

    class Offline(importer.ImportStreamer):  # type: ignore[misc]
        def _upload_data_buffer(self, end_stream: bool, data_lines: Any = None,
                                retry_count: int = 0) -> None:
            events.extend(data_lines if data_lines is not None else self._data_lines)

        def _upload_data_frame(self, data_frame: Any, end_stream: bool,
                               retry_count: int = 0) -> None:
            events.extend(data_frame.to_dict(orient="records"))

    streamer = Offline()
    streamer._sketch = object()  # no server: nothing is sent
    streamer.add_file(str(path))
    streamer.flush()
    return events
