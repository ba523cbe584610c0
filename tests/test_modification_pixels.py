"""Modifying a file whose pixels end it reads only its header (dicom/modification.py ``_read``): the
new file is byte for byte the one made from pydicom's reading of the whole file."""

import io
from pathlib import Path

import pydicom
import pytest

from fastpacs.dicom import modification
from fastpacs.dicom.ids import Level
from fastpacs.dicom.modification import Modification, modify
from fastpacs.dicom.modification_request import (
    parse_anonymize_request,
    parse_modify_request,
    with_patient_name,
)
from fastpacs.dicom.parse import header_prefix, read_header
from fastpacs.errors import OrthancError
from tests.differential.data import ALL_FILES

REQUESTS = {
    "anonymize": lambda: with_patient_name(parse_anonymize_request({}).modification, "Anonymized1"),
    "anonymize-keep-private": lambda: parse_anonymize_request({"KeepPrivateTags": True}).modification,
    "modify": lambda: parse_modify_request(
        {"Replace": {"PatientName": "Ünïcode^Name", "InstitutionName": "X"}, "Remove": ["StudyDate"]},
        Level.SERIES,
    ),
    "remove-pixels": lambda: parse_modify_request({"Remove": ["PixelData"], "Force": True}, Level.INSTANCE),
    "replace-pixels": lambda: parse_modify_request(
        {"Replace": {"PixelData": "AAAA"}, "Force": True}, Level.INSTANCE
    ),
    "after-pixels": lambda: parse_modify_request({"Replace": {"FFFC,FFFC": "0000"}}, Level.INSTANCE),
}


def _whole_file_read(data: bytes) -> pydicom.Dataset:
    return pydicom.dcmread(io.BytesIO(data), force=True)


def _files_read_by_header() -> list[Path]:
    found = []
    for path in ALL_FILES:
        data = path.read_bytes()
        prefix = header_prefix(data)
        if prefix is not None and read_header(prefix, len(data)) is not None:
            found.append(path)
    return found


HEADER_FILES = _files_read_by_header()


def _modified_both_ways(
    monkeypatch: pytest.MonkeyPatch, request: Modification, data: bytes
) -> tuple[bytes | str, bytes | str]:
    def outcome() -> bytes | str:
        try:
            return modify(request, data, "Latin1").data
        except OrthancError as error:
            return f"{error.code}: {error.details}"

    by_header = outcome()
    with monkeypatch.context() as patched:
        patched.setattr(modification, "_read", _whole_file_read)
        whole = outcome()
    return by_header, whole


def test_most_images_are_read_by_their_header() -> None:
    assert len(HEADER_FILES) >= 50


@pytest.mark.parametrize("name", sorted(REQUESTS))
def test_the_new_file_is_the_same_whichever_way_the_source_is_read(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    request = REQUESTS[name]()
    for path in HEADER_FILES:
        by_header, whole = _modified_both_ways(monkeypatch, request, path.read_bytes())
        assert by_header == whole, path.name
