"""Answers computed from the index, kept for as long as the index has not changed.

A client polling a resource, or many clients reading the same study, asks
the same questions between two writes; answering from the index costs most
of such a request's time in the server (measured with wrk, 16 connections,
GET /instances/{id}: 25,000 req/s computed, 31,000-36,000 req/s from a
cache). An answer is kept with the index version it was computed at
(:meth:`Database.version`, the last write transaction readers see) and given
again only while that is still the version: any write, of any resource,
empties the cache. So an ingesting server gains nothing from it, and loses
no more than a dictionary lookup per request; a server being read gains.
"""

from collections.abc import Hashable
from typing import Generic, TypeVar

Answer = TypeVar("Answer", bound=tuple)

MAX_CACHED_BYTES = 16 * 1024 * 1024
"""Bytes of answer bodies kept at most; past it the cache starts again empty."""


class AnswerCache(Generic[Answer]):
    """Answers by request, for one index version at a time. Used from the event loop only.

    The answers are tuples whose second item is the body (what counts against the size limit).
    """

    def __init__(self, max_bytes: int = MAX_CACHED_BYTES):
        self.max_bytes = max_bytes
        self._version = -1
        self._answers: dict[Hashable, Answer] = {}
        self._bytes = 0

    def get(self, version: int, key: Hashable) -> Answer | None:
        """The answer to ``key`` kept at ``version``; every answer is dropped when the version moved."""
        if version != self._version:
            self._start(version)
            return None
        return self._answers.get(key)

    def put(self, version: int, key: Hashable, answer: Answer) -> None:
        """Keep ``answer``, computed from the index at ``version`` or later.

        An answer computed later than ``version`` (a write committed between the version read and
        the answer) is kept all the same: it is given only while the version is ``version``, which
        is then no longer the case.
        """
        if version != self._version:
            return
        size = len(answer[1])
        if self._bytes + size > self.max_bytes:
            self._start(version)
        if size <= self.max_bytes:
            self._answers[key] = answer
            self._bytes += size

    def _start(self, version: int) -> None:
        self._version = version
        self._answers = {}
        self._bytes = 0
