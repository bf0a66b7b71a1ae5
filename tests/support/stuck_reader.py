"""A documents reader that never ends on some files, made in a child process by `Isolated` (this
module is small, so the child starts quickly)."""

from __future__ import annotations

import time

from patchbay.helpers.builtin.documents import DocumentReader
from patchbay.schemas.helpers import ToText


class StuckReader(DocumentReader):
    """Never ends on a file that starts with STUCK, as a crafted PDF can keep a parser busy."""

    def convert(self, data: bytes, media_type: str) -> ToText:
        if data.startswith(b"STUCK"):
            time.sleep(3600)
        return super().convert(data, media_type)
