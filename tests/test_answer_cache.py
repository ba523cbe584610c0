"""The fast lane's cache of index answers: kept for one index version, bounded in bytes."""

from fastpacs.api.answer_cache import AnswerCache


def test_answers_are_given_while_the_version_stays() -> None:
    cache: AnswerCache[tuple[str, bytes]] = AnswerCache()
    assert cache.get(7, "a") is None
    cache.put(7, "a", ("headers", b"answer"))
    assert cache.get(7, "a") == ("headers", b"answer")
    assert cache.get(8, "a") is None  # a write happened: everything is dropped
    assert cache.get(7, "a") is None
    cache.put(7, "a", ("headers", b"late"))  # computed for a version no longer current: not kept
    assert cache.get(8, "a") is None


def test_the_cache_is_bounded_in_bytes() -> None:
    cache: AnswerCache[tuple[str, bytes]] = AnswerCache(max_bytes=10)
    cache.get(1, "a")
    cache.put(1, "a", ("", b"123456"))
    cache.put(1, "b", ("", b"1234"))
    assert cache.get(1, "a") is not None and cache.get(1, "b") is not None
    cache.put(1, "c", ("", b"1"))  # over the limit: the cache starts again with this answer
    assert (cache.get(1, "a"), cache.get(1, "b"), cache.get(1, "c")) == (None, None, ("", b"1"))
    cache.put(1, "d", ("", b"12345678901"))  # larger than the limit: never kept
    assert cache.get(1, "d") is None
