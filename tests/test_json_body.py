"""fastpacs.json_body: request bodies read as Orthanc 1.10.1's JsonCpp reader reads them.

The expectations come from the reference Orthanc (tests/differential/test_json_bodies_vs_orthanc.py
compares whole routes); these check the reader alone, case by case.
"""

import pytest

from fastpacs.errors import ErrorCode, OrthancError
from fastpacs.json_body import (
    LENIENT_TOKEN_LIMIT,
    NotJsonError,
    json_body,
    json_object_body,
    read_json,
)

BOM = b"\xef\xbb\xbf"

READ = [
    (b'{"a":1}', {"a": 1}),
    (BOM + b'{"a":1}', {"a": 1}),
    (BOM + b' \r\n\t{"a":1}\n', {"a": 1}),
    (b' \n{"a":1} \n', {"a": 1}),
    (b'// line\n{"a":1}// end', {"a": 1}),
    (b'/* block */{/* inside */"a":/**/1}/* end */', {"a": 1}),
    (b'{"a":[1,2,],}', {"a": [1, 2]}),
    (b'{"a":1}{"b":2}', {"a": 1}),
    (b'{"a":1} xyz', {"a": 1}),
    (b'{"a":1}\x00', {"a": 1}),
    (b'{"a":1}/* unclosed after the document', {"a": 1}),
    (b'{"a":"x\xffy"}', {"a": "x\ufffdy"}),
    (b'{"a":"a\x01b\tc"}', {"a": "a\x01b\tc"}),
    (b'{"a":"\\u00e9\\"\\\\"}', {"a": 'é"\\'}),
    (b'{"a":1,"a":2}', {"a": 2}),
    (b'{"a":01,"b":+1,"c":1.}', {"a": 1, "b": 1, "c": 1.0}),
    (b'"abc" junk', "abc"),
    (b"42", 42),
    (b"1.2.840.10008.1.2", 1.2),
    (b"truex", True),
    (b"null", None),
    (b"[]", []),
    (b"123456789012345678901234567890", 123456789012345678901234567890),
]

REFUSED = [
    b"",
    b" \n",
    BOM,
    BOM + BOM + b"{}",
    b"\xff\xfe{\x00}\x00",
    b"\xfe\xff\x00{\x00}",
    b'{"a":NaN}',
    b'{"a":Infinity}',
    b'{"a":-Infinity}',
    b"{'a':1}",
    b"xyz",
    b"tru",
    b".5",
    b'{"a":1',
    b'{"a":1 /* unclosed',
    b'{"a":[,]}',
    b'{,"a":1}',
    b"[1,,2]",
    b'{"a" 1}',
    b'{"a":"\\x"}',
    b'{"a":truex}',
    b",",
    b"]",
    b"[" * 10_000,
    b"[" * 10_000 + b"]" * 10_000,
    b"// only a comment",
]


@pytest.mark.parametrize(("body", "expected"), READ, ids=[repr(body[:30]) for body, _ in READ])
def test_read_as_orthanc_reads(body: bytes, expected: object) -> None:
    assert read_json(body) == expected


@pytest.mark.parametrize("body", REFUSED, ids=[repr(body[:30]) for body in REFUSED])
def test_refused_as_orthanc_refuses(body: bytes) -> None:
    with pytest.raises(NotJsonError):
        read_json(body)


def test_json_body_raises_the_error_of_its_route() -> None:
    with pytest.raises(OrthancError) as raised:
        json_body(b"xyz", ErrorCode.BAD_REQUEST, "The body must contain a JSON object")
    assert (raised.value.code, raised.value.details) == (
        ErrorCode.BAD_REQUEST,
        "The body must contain a JSON object",
    )
    with pytest.raises(OrthancError) as raised:
        json_body(b"")
    assert (raised.value.code, raised.value.details) == (ErrorCode.BAD_FILE_FORMAT, None)
    assert json_body(b"[1]") == [1]


@pytest.mark.parametrize("body", [b"[]", b'"a"', b"1", b"null", b"xyz"])
def test_json_object_body_refuses_anything_but_an_object(body: bytes) -> None:
    with pytest.raises(OrthancError) as raised:
        json_object_body(body, details="Must provide a JSON object")
    assert (raised.value.code, raised.value.details) == (
        ErrorCode.BAD_FILE_FORMAT,
        "Must provide a JSON object",
    )


def test_json_object_body_reads_a_lenient_object() -> None:
    assert json_object_body(BOM + b'{"Level":"Patient",/* c */"Query":{},}') == {
        "Level": "Patient",
        "Query": {},
    }


def test_long_strings_are_one_token_each() -> None:
    """A large base64 ``Content`` with a comment is read: the token limit counts tokens, not bytes."""
    content = "A" * (4 * LENIENT_TOKEN_LIMIT)
    body = b'// created\n{"Content":"' + content.encode() + b'",}'
    assert read_json(body) == {"Content": content}


def test_lenient_reading_is_bounded() -> None:
    """A body that is not strict JSON is rewritten up to LENIENT_TOKEN_LIMIT tokens, then refused."""
    body = b"[" + b"1," * (5 * LENIENT_TOKEN_LIMIT) + b"]"  # the trailing comma needs the rewrite
    with pytest.raises(NotJsonError, match="too long"):
        read_json(body)
    lenient = b"[" + b"1," * (LENIENT_TOKEN_LIMIT // 4) + b"]"
    assert read_json(lenient) == [1] * (LENIENT_TOKEN_LIMIT // 4)
