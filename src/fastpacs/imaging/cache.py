"""A least-recently-used cache of rendered answers, bounded in bytes.

Keys name the stored file by its digest (content-addressed, so an entry
can never go stale) plus everything that shapes the answer: frame,
operation, format, quality. Used from the event loop only, so it takes no
lock.
"""

from collections import OrderedDict
from collections.abc import Hashable


class RenderedCache:
    def __init__(self, maximum_bytes: int):
        self.maximum_bytes = maximum_bytes
        self.size = 0
        self._entries: OrderedDict[Hashable, tuple[bytes, str]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Hashable) -> tuple[bytes, str] | None:
        """The body and content type cached under ``key``, now the most recently used."""
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
        return entry

    def put(self, key: Hashable, body: bytes, media_type: str) -> None:
        """Remember an answer, evicting the least recently used ones to stay within the budget."""
        if len(body) > self.maximum_bytes:
            return
        previous = self._entries.pop(key, None)
        if previous is not None:
            self.size -= len(previous[0])
        self._entries[key] = (body, media_type)
        self.size += len(body)
        while self.size > self.maximum_bytes:
            _, (evicted, _) = self._entries.popitem(last=False)
            self.size -= len(evicted)
