"""Property: whatever the dataset, anonymization leaves no identifying attribute with its original value.

Hypothesis builds datasets from the attributes a basic profile names
(removed, emptied or given new UIDs), the identifiers fastpacs always
replaces, private blocks and nested sequences holding more of the same, in
implicit and explicit VR; each is anonymized with one of the three profiles.
Every identifying value of the original must then be gone from the result:
removed attributes absent everywhere, emptied ones empty, UIDs and
identifiers replaced, private attributes removed.
"""

import io
from typing import Any

import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from fastpacs.dicom.anonymization import PROFILES, Action, Profile
from fastpacs.dicom.modification import modify
from fastpacs.dicom.modification_request import parse_anonymize_request, with_patient_name

IDENTIFIERS = (0x00100010, 0x00100020, 0x0020000D, 0x0020000E, 0x00080018)
"""PatientName, PatientID, Study/Series/SOP Instance UIDs: replaced by every profile."""
CONTAINERS = (0x00081140, 0x00081250, 0x00082112, 0x00400260)
"""Sequences the profiles keep (Referenced Image, Related Series, Source Image, Performed Protocol
Code): what they hold is cleaned item by item."""
_TEXT = (
    st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789^ ", min_size=1, max_size=12)
    .map(str.strip)
    .filter(bool)
)
_VALUES = {
    "PN": _TEXT, "LO": _TEXT, "SH": _TEXT, "ST": _TEXT, "LT": _TEXT, "UT": _TEXT, "UC": _TEXT, "CS": _TEXT,
    "AE": _TEXT, "UR": st.just("http://hospital.example/x"), "AS": st.just("045Y"),
    "DA": st.dates().map(lambda day: day.strftime("%Y%m%d")), "TM": st.just("101010"),
    "DT": st.just("20200101101010"), "IS": st.integers(1, 999).map(str), "DS": st.just("1.5"),
    "UI": st.integers(1, 10**12).map(lambda number: f"1.2.826.0.1.3680043.8.498.{number}"),
    "US": st.integers(1, 60000), "UL": st.integers(1, 10**6), "SS": st.integers(-100, 100), "SL": st.just(-7),
    "FL": st.just(1.5), "FD": st.just(2.5), "OB": st.binary(min_size=2, max_size=6),
    "OW": st.just(b"\x01\x02"),
}  # fmt: skip


def _vr(tag: int) -> str:
    return dictionary_VR(tag).split(" or ")[0]


def _attributes(profile: Profile) -> list[int]:
    usable = [tag for tag in profile.actions if tag >> 16 > 0x0004 and _vr(tag) in (*_VALUES, "SQ")]
    return sorted(set(usable) | set(IDENTIFIERS) | set(CONTAINERS))


@st.composite
def datasets(draw: st.DrawFn, profile: Profile, depth: int = 0) -> Dataset:
    """A dataset of profile attributes, identifiers, private elements and nested items."""
    dataset = Dataset()
    tags = draw(st.lists(st.sampled_from(_attributes(profile)), min_size=1, max_size=12, unique=True))
    for tag in tags:
        vr = _vr(tag)
        if vr == "SQ":
            if depth < 2:
                items = draw(st.lists(datasets(profile, depth + 1), min_size=1, max_size=2))
                dataset.add_new(tag, "SQ", Sequence(items))
        else:
            dataset.add_new(tag, vr, draw(_VALUES[vr]))
    if draw(st.booleans()):
        dataset.add_new(0x00090010, "LO", "ACME")
        dataset.add_new(0x00091001, "LO", draw(_TEXT))
    return dataset


def file_of(dataset: Dataset, implicit_vr: bool) -> bytes:
    dataset.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    dataset.setdefault("SOPInstanceUID", "1.2.826.0.1.3680043.8.498.1")
    dataset.file_meta = FileMetaDataset()
    dataset.file_meta.MediaStorageSOPClassUID = dataset.SOPClassUID
    dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    dataset.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit_vr else ExplicitVRLittleEndian
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def identifying_values(dataset: Dataset, profile: Profile, path: str = "") -> dict[str, tuple[int, Any]]:
    """Path → (tag, original value) of every identifying element, nested ones included."""
    found = {}
    for element in dataset:
        here = f"{path}{element.tag:08x}"
        tag = int(element.tag)
        if element.VR == "SQ":
            if tag in profile.actions:
                found[here] = (tag, "sequence")
            for index, item in enumerate(element.value):
                found |= identifying_values(item, profile, f"{here}[{index}].")
        elif element.value not in (None, "", b"") and (
            tag in profile.actions or tag in IDENTIFIERS or element.tag.is_private
        ):
            found[here] = (tag, element.value)
    return found


def value_at(dataset: Dataset, path: str) -> Any:
    """The element at a path of :func:`identifying_values` (``None`` if it or an ancestor is gone)."""
    current: Any = dataset
    for step in path.split("."):
        tag_text, _, index = step.partition("[")
        tag = int(tag_text, 16)
        if not isinstance(current, Dataset) or tag not in current:
            return None
        current = current[tag]
        if index:
            items = current.value
            position = int(index.rstrip("]"))
            current = items[position] if position < len(items) else None
    return current


@pytest.mark.slow
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), version=st.sampled_from(sorted(PROFILES)), implicit_vr=st.booleans())
def test_anonymization_leaves_no_identifying_value(
    data: st.DataObject, version: str, implicit_vr: bool
) -> None:
    profile = PROFILES[version]
    original = data.draw(datasets(profile))
    source = file_of(original, implicit_vr)
    original = pydicom.dcmread(io.BytesIO(source))
    request = parse_anonymize_request({"DicomVersion": version})
    anonymized = pydicom.dcmread(
        io.BytesIO(modify(with_patient_name(request.modification, "Anonymized1"), source, "Latin1").data)
    )
    assert anonymized.PatientIdentityRemoved == "YES"
    for path, (tag, before) in identifying_values(original, profile).items():
        element = value_at(anonymized, path)
        action = profile.actions.get(tag)
        if element is None:
            continue  # removed, itself or with its sequence
        assert action != Action.REMOVE and not element.tag.is_private, path
        after = element.value
        if action == Action.EMPTY:
            assert after in (None, "", b"") or (element.VR == "SQ" and len(after) == 0), path
        elif before != "sequence":
            assert after != before, (path, before, after)
