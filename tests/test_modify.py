"""Modification, anonymization, split and merge: the pure functions, then a running server.

The functions are exercised on pydicom's test files and on small datasets
built here (nested sequences, private blocks, every transfer syntax pydicom
reads); the server tests check what the REST API stores and answers. The
comparison with the reference Orthanc is in tests/differential/.
"""

import io
import json
import re
import time
from pathlib import Path

import httpx
import pydicom
import pytest
from pydicom.datadict import keyword_for_tag
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from fastpacs.dicom.anonymization import PROFILES, Action, profile
from fastpacs.dicom.ids import Level
from fastpacs.dicom.modification import Modification, modify
from fastpacs.dicom.modification_request import (
    merge_modification,
    parse_anonymize_request,
    parse_modify_request,
    split_modification,
    with_patient_name,
)
from fastpacs.dicom.parse import read_dataset, summarize, transfer_syntax_of
from fastpacs.dicom.values import python_encodings
from fastpacs.dicom.writer import DatasetWriter, part10_file
from fastpacs.errors import ErrorCode, OrthancError
from fastpacs.services.ingest import Origin
from fastpacs.services.modification_jobs import (
    ModificationWork,
    ResourceModificationJob,
    RunState,
    SourceInstance,
)
from fastpacs.storage.blobs import StoredBlob
from tests.conftest import pydicom_file
from tests.differential.data import CHARSET_FILES, TEST_FILES

NEW_UID = re.compile(r"^2\.25\.\d{1,39}$")
UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
CT = "CT_small.dcm"
CT_STUDY_UID = "1.3.6.1.4.1.5962.1.2.1.20040119072730.12322"
CT_SERIES_UID = "1.3.6.1.4.1.5962.1.3.1.1.20040119072730.12322"
CT_SOP_UID = "1.3.6.1.4.1.5962.1.1.1.1.1.20040119072730.12322"


def read(data: bytes) -> Dataset:
    return pydicom.dcmread(io.BytesIO(data))


def modified(name_or_data: str | bytes, modification: Modification) -> Dataset:
    data = pydicom_file(name_or_data).read_bytes() if isinstance(name_or_data, str) else name_or_data
    return read(modify(modification, data, "Latin1").data)


def modification(body: dict, level: Level | None = None) -> Modification:
    return parse_modify_request(body, level)


def anonymization(body: dict | None = None) -> Modification:
    request = parse_anonymize_request(body or {})
    if request.needs_patient_name:
        return with_patient_name(request.modification, "Anonymized7")
    return request.modification


def error_of(call) -> OrthancError:
    with pytest.raises(OrthancError) as caught:
        call()
    return caught.value


def encoded(dataset: Dataset) -> bytes:
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


# -- the profiles


def test_profile_tables_name_each_attribute_by_its_dictionary_keyword() -> None:
    source = Path(__import__("fastpacs.dicom.anonymization", fromlist=["x"]).__file__).read_text()
    rows = re.findall(r"^([0-9a-f]{4}),([0-9a-f]{4})  [.XZU]  [.XZU]  [.XZU]  (\w+)$", source, re.MULTILINE)
    assert len(rows) > 400
    for group, element, keyword in rows:
        assert keyword_for_tag(int(group + element, 16)) == keyword


def test_profiles_have_the_sizes_of_orthanc_1_10_1_tables() -> None:
    sizes = {version: {action: len(p.tags(action)) for action in Action} for version, p in PROFILES.items()}
    assert sizes["2008"] == {Action.REMOVE: 39, Action.EMPTY: 0, Action.NEW_UID: 8}
    assert sizes["2017c"] == {Action.REMOVE: 216, Action.EMPTY: 20, Action.NEW_UID: 31}
    assert sizes["2021b"] == {Action.REMOVE: 317, Action.EMPTY: 85, Action.NEW_UID: 47}


def test_the_default_profile_is_2021b_and_unknown_versions_are_refused() -> None:
    assert profile(None).version == "2021b"
    error = error_of(lambda: profile("1999"))
    assert (error.code, error.details) == (
        ErrorCode.PARAMETER_OUT_OF_RANGE,
        "Unknown specific version of the DICOM standard: 1999",
    )


# -- reading requests


@pytest.mark.parametrize(
    ("body", "level", "code", "details"),
    [
        ({"Replace": {"PatientID": "X"}}, None, ErrorCode.BAD_REQUEST,
         'Marking tag "PatientID" as to be replaced requires the "Force" option to be set to true'),
        ({"Keep": ["SOPInstanceUID"]}, None, ErrorCode.BAD_REQUEST,
         'Marking tag "SOPInstanceUID" as to be kept requires the "Force" option to be set to true'),
        ({"Remove": ["0020,000d"]}, None, ErrorCode.BAD_REQUEST,
         'Marking tag "0020,000d" as to be removed requires the "Force" option to be set to true'),
        ({"Remove": ["PatientID"], "Force": True}, None, ErrorCode.BAD_REQUEST, None),
        ({"Replace": {"NoSuchTag": "x"}}, None, ErrorCode.UNKNOWN_DICOM_TAG, None),
        ({"Replace": {"OtherPatientIDsSequence[*].NoSuch": "x"}}, None, ErrorCode.UNKNOWN_DICOM_TAG, None),
        ({"Replace": "x"}, None, ErrorCode.BAD_REQUEST, None),
        ({"Remove": ["PatientName", 5]}, None, ErrorCode.BAD_REQUEST, None),
        ({"Force": "yes"}, None, ErrorCode.BAD_FILE_FORMAT, 'Member "Force" should be a Boolean value'),
        ({"PrivateCreator": 5}, None, ErrorCode.BAD_FILE_FORMAT,
         "String value expected in field: PrivateCreator"),
        ({"Replace": {"Rows": "abc"}}, None, ErrorCode.BAD_FILE_FORMAT,
         'While creating a DICOM instance, tag (0028,0010) has out-of-range value: "abc"'),
        ({"Replace": {"Rows": "70000"}}, None, ErrorCode.BAD_FILE_FORMAT,
         'While creating a DICOM instance, tag (0028,0010) has out-of-range value: "70000"'),
        ({"Replace": {"OtherPatientIDsSequence": "x"}}, None, ErrorCode.BAD_FILE_FORMAT,
         'While creating a DICOM instance, tag (0010,1002) has out-of-range value: "x"'),
        ({"Replace": {"PatientName": 12}}, None, ErrorCode.BAD_PARAMETER_TYPE,
         "Bad Parameter type for tag 0010,0010"),
        ({"Replace": {"PatientName": ["a"]}}, None, ErrorCode.BAD_PARAMETER_TYPE,
         "Bad Parameter type for tag 0010,0010"),
        ({"Replace": {"PatientName": "X"}}, Level.PATIENT, ErrorCode.BAD_REQUEST,
         "When modifying a patient, her PatientID is required to be modified"),
        ({"Replace": {"PatientID": "X"}, "Force": True}, Level.STUDY, ErrorCode.BAD_REQUEST,
         "When modifying a study, the parent PatientID cannot be manually modified"),
        ({"Replace": {"StudyInstanceUID": "1.2"}, "Force": True}, Level.SERIES, ErrorCode.BAD_REQUEST,
         "When modifying a series, the parent StudyInstanceUID cannot be manually modified"),
    ],
)  # fmt: skip
def test_bad_modify_requests_get_orthanc_errors(
    body: dict, level: Level | None, code: ErrorCode, details
) -> None:
    error = error_of(lambda: parse_modify_request(body, level))
    assert (error.code, error.details) == (code, details)


def test_bad_anonymize_requests_get_orthanc_errors() -> None:
    error = error_of(lambda: parse_anonymize_request({"DicomVersion": 2017}))
    assert error.code == ErrorCode.BAD_FILE_FORMAT
    error = error_of(lambda: parse_anonymize_request({"Replace": {"PatientID": "A"}}))
    assert (
        error.details
        == 'Marking tag "PatientID" as to be replaced requires the "Force" option to be set to true'
    )


def test_the_level_of_an_instance_modification_follows_the_replaced_identifiers() -> None:
    assert modification({}).level == Level.INSTANCE
    assert modification({"Replace": {"SeriesInstanceUID": "1.2"}, "Force": True}).level == Level.SERIES
    assert modification({"Replace": {"StudyInstanceUID": "1.2"}, "Force": True}).level == Level.STUDY
    assert modification({"Replace": {"PatientID": "P"}, "Force": True}).level == Level.PATIENT


def test_a_generated_patient_name_is_needed_only_when_the_request_leaves_it() -> None:
    assert parse_anonymize_request({}).needs_patient_name
    assert not parse_anonymize_request({"Replace": {"PatientName": "A"}}).needs_patient_name
    assert not parse_anonymize_request({"Keep": ["PatientName"]}).needs_patient_name
    assert not parse_anonymize_request({"Remove": ["PatientName"]}).needs_patient_name


# -- modifying files


def test_modify_replaces_removes_and_gives_a_new_sop_instance_uid() -> None:
    dataset = modified(
        CT,
        modification(
            {"Replace": {"PatientName": "New^Name", "0008,1030": "Hex"}, "Remove": ["InstitutionName"]}
        ),
    )
    assert dataset.PatientName == "New^Name"
    assert dataset.StudyDescription == "Hex"
    assert "InstitutionName" not in dataset
    assert NEW_UID.match(dataset.SOPInstanceUID)
    assert dataset.file_meta.MediaStorageSOPInstanceUID == dataset.SOPInstanceUID
    assert (dataset.StudyInstanceUID, dataset.SeriesInstanceUID) == (CT_STUDY_UID, CT_SERIES_UID)
    original = pydicom.dcmread(pydicom_file(CT))
    assert dataset.PixelData == original.PixelData
    assert dataset.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID


def test_replacing_patient_id_regenerates_study_and_series_uids() -> None:
    dataset = modified(CT, modification({"Replace": {"PatientID": "NEWID"}, "Force": True}))
    assert dataset.PatientID == "NEWID"
    assert NEW_UID.match(dataset.StudyInstanceUID) and NEW_UID.match(dataset.SeriesInstanceUID)
    assert dataset.FrameOfReferenceUID == "1.3.6.1.4.1.5962.1.4.1.1.20040119072730.12322"


@pytest.mark.parametrize("level", list(Level))
def test_each_level_regenerates_its_identifier_and_those_below(level: Level) -> None:
    body = {"Replace": {"PatientID": "P"}, "Force": True} if level == Level.PATIENT else {}
    dataset = modified(CT, modification(body, None if level == Level.INSTANCE else level))
    regenerated = [
        NEW_UID.match(dataset[keyword].value) is not None
        for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")
    ]
    assert regenerated == [level <= Level.STUDY, level <= Level.SERIES, True]


def test_keep_with_force_keeps_the_sop_instance_uid() -> None:
    dataset = modified(CT, modification({"Keep": ["SOPInstanceUID"], "Force": True}))
    assert dataset.SOPInstanceUID == CT_SOP_UID


def test_values_are_cast_to_the_vr_of_their_attribute() -> None:
    dataset = modified(
        CT,
        modification(
            {"Replace": {"Rows": "128", "PixelSpacing": "1\\2", "PatientWeight": "70.5", "PatientName": None}}
        ),
    )
    assert dataset.Rows == 128
    assert list(dataset.PixelSpacing) == [1, 2]
    assert dataset.PatientWeight == 70.5
    assert dataset.PatientName == ""


def test_data_uri_values_are_decoded() -> None:
    dataset = modified(
        CT, modification({"Replace": {"PatientName": "data:application/octet-stream;base64,QUJD"}})
    )
    assert dataset.PatientName == "ABC"


def test_text_is_written_in_the_character_set_of_the_file() -> None:
    data = pydicom_file("MR_small.dcm").read_bytes()
    source = read(data)
    source.SpecificCharacterSet = "ISO_IR 100"
    dataset = modified(encoded(source), modification({"Replace": {"StudyDescription": "Étude à Zürich"}}))
    assert dataset.StudyDescription == "Étude à Zürich"
    assert (
        dataset["StudyDescription"].value.encode("latin-1")
        in modify(
            modification({"Replace": {"StudyDescription": "Étude à Zürich"}}), encoded(source), "Latin1"
        ).data
    )


def test_sequences_are_replaced_by_items_and_reached_by_paths() -> None:
    dataset = modified(CT, modification({"Replace": {"OtherPatientIDsSequence": [{"PatientID": "SEQ1"}]}}))
    assert [item.PatientID for item in dataset.OtherPatientIDsSequence] == ["SEQ1"]
    dataset = modified(CT, modification({"Replace": {"OtherPatientIDsSequence[1].PatientID": "B"}}))
    assert [item.PatientID for item in dataset.OtherPatientIDsSequence] == ["ABCD1234", "B"]
    dataset = modified(CT, modification({"Replace": {"OtherPatientIDsSequence[*].TypeOfPatientID": "RFID"}}))
    assert [item.TypeOfPatientID for item in dataset.OtherPatientIDsSequence] == ["RFID", "RFID"]
    dataset = modified(CT, modification({"Remove": ["OtherPatientIDsSequence[0].PatientID"]}))
    assert "PatientID" not in dataset.OtherPatientIDsSequence[0]
    dataset = modified(CT, modification({"Replace": {"OtherPatientIDsSequence[5].PatientID": "B"}}))
    assert [item.PatientID for item in dataset.OtherPatientIDsSequence] == ["ABCD1234", "1234ABCD"]


def test_remove_private_tags_keeps_the_private_tags_named_in_keep() -> None:
    dataset = modified(CT, modification({"RemovePrivateTags": True, "Keep": ["0009-1001"]}))
    assert [int(element.tag) for element in dataset if element.tag.is_private] == [0x00091001]


def test_replacing_a_private_attribute_uses_the_vr_of_the_file() -> None:
    dataset = modified(CT, modification({"Replace": {"0009,1001": "NEW"}}))
    assert dataset[0x00091001].VR == "LO" and dataset[0x00091001].value == "NEW"


def test_a_private_value_that_does_not_fit_its_vr_is_refused() -> None:
    error = error_of(lambda: modified(CT, modification({"Replace": {"0009,10e7": "abc"}})))  # UL in the file
    assert error.details == 'While creating a DICOM instance, tag (0009,10e7) has out-of-range value: "abc"'


@pytest.mark.parametrize("path", [*TEST_FILES, *CHARSET_FILES], ids=lambda path: path.name)
def test_every_readable_file_keeps_its_content_and_transfer_syntax(path: Path) -> None:
    data = path.read_bytes()
    try:
        summarize(data, "Latin1")
    except OrthancError:
        return  # refused at upload: never stored, never modified
    output = modify(modification({"Keep": ["SOPInstanceUID"], "Force": True}), data, "Latin1").data
    before, after = pydicom.dcmread(io.BytesIO(data), force=True), read(output)
    assert transfer_syntax_of(after) == transfer_syntax_of(before)
    assert content(before) == content(after)


def content(dataset: Dataset) -> dict:
    """The elements of the dataset proper, without the group lengths a modification drops (retired)."""
    return {e.tag: e.value for e in dataset if e.tag >> 16 > 2 and e.tag & 0xFFFF}


def test_the_writer_round_trips_big_endian_and_implicit_files() -> None:
    for name in ("ExplVR_BigEndNoMeta.dcm", "rtplan.dcm", "MR_small_bigendian.dcm"):
        data = pydicom_file(name).read_bytes()
        dataset = read_dataset(data)
        implicit_vr, little_endian = dataset.original_encoding
        writer = DatasetWriter(implicit_vr, little_endian, python_encodings(None, "ISO_IR 100"))
        output = part10_file(
            str(dataset.SOPClassUID),
            str(dataset.SOPInstanceUID),
            transfer_syntax_of(dataset),
            writer.dataset(dataset),
        )
        assert [(e.tag, e.value) for e in read(output)] == [
            (e.tag, e.value) for e in pydicom.dcmread(io.BytesIO(data), force=True)
        ]


# -- anonymizing files


def nested_dataset() -> bytes:
    """MR_small with identifying data inside sequences, private blocks, overlay comments."""
    dataset = read(pydicom_file("MR_small.dcm").read_bytes())
    dataset.PatientID = "NEST1"
    item = Dataset()
    item.PatientName = "Inner^Name"
    item.PatientID = "NEST1"
    item.StudyDate = "20010101"
    item.InstitutionName = "Inner Inst"
    item.ReferencedSOPInstanceUID = dataset.SOPInstanceUID
    item.StudyInstanceUID = dataset.StudyInstanceUID
    item.add_new(0x00090010, "LO", "ACME")
    item.add_new(0x00091001, "LO", "private")
    deeper = Dataset()
    deeper.ReferencedSOPInstanceUID = dataset.StudyInstanceUID
    deeper.InstitutionName = "deep"
    item.ReferencedImageSequence = Sequence([deeper])
    dataset.RelatedSeriesSequence = Sequence([item])
    dataset.ReferencedStudySequence = Sequence([Dataset()])
    dataset.add_new(0x60004000, "LT", "overlay comment")
    dataset.add_new(0x00090010, "LO", "ACME")
    dataset.add_new(0x00091001, "LO", "private")
    return encoded(dataset)


def test_anonymization_applies_the_profile_at_the_top_level() -> None:
    source = read(nested_dataset())
    dataset = modified(nested_dataset(), anonymization())
    assert dataset.PatientName == "Anonymized7"
    assert UUID4.match(dataset.PatientID)
    assert dataset.PatientIdentityRemoved == "YES"
    assert dataset.DeidentificationMethod.endswith(" - PS 3.15-2021b Table E.1-1 Basic Profile")
    assert dataset.DeidentificationMethod.startswith("fastpacs ")
    assert dataset.StudyDate == "" and dataset.PatientSex == ""
    assert "InstitutionName" not in dataset and "ReferencedStudySequence" not in dataset
    assert 0x60004000 not in dataset  # overlay comments (Orthanc 1.10.1 keeps them at the top level)
    assert not [element for element in dataset if element.tag.is_private]
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID"):
        assert NEW_UID.match(dataset[keyword].value) and dataset[keyword].value != source[keyword].value


def test_anonymization_cleans_sequence_items_and_maps_uids_consistently() -> None:
    dataset = modified(nested_dataset(), anonymization())
    item = dataset.RelatedSeriesSequence[0]
    assert item.PatientName == ""  # the profile's Z, inside items too
    assert item.PatientID == dataset.PatientID
    assert item.StudyDate == ""
    assert "InstitutionName" not in item
    assert not [element for element in item if element.tag.is_private]
    assert item.ReferencedSOPInstanceUID == dataset.SOPInstanceUID
    assert item.StudyInstanceUID == dataset.StudyInstanceUID
    # The same original UID as a study and as a referenced instance: two different new UIDs.
    reference = item.ReferencedImageSequence[0].ReferencedSOPInstanceUID
    assert NEW_UID.match(reference) and reference != dataset.StudyInstanceUID


def test_one_request_maps_one_uid_to_one_new_uid_in_every_worker() -> None:
    request = anonymization()
    first = modified(nested_dataset(), request)
    second = modified(nested_dataset(), msgspec_copy(request))
    assert (first.StudyInstanceUID, first.PatientID) == (second.StudyInstanceUID, second.PatientID)
    other_request = modified(nested_dataset(), anonymization())
    assert other_request.StudyInstanceUID != first.StudyInstanceUID


def msgspec_copy(value: Modification) -> Modification:
    """The modification as a worker receives it (pickled across the process boundary)."""
    import pickle  # noqa: PLC0415

    return pickle.loads(pickle.dumps(value))


def test_options_turn_the_plain_profile_into_a_custom_one() -> None:
    source = read(nested_dataset())
    source.DeidentificationMethod = "Original"
    data = encoded(source)
    dataset = modified(data, anonymization({"Keep": ["StudyDescription"], "KeepPrivateTags": True}))
    assert dataset.DeidentificationMethod == "Original"
    assert dataset[0x00091001].value == "private"
    assert dataset.RelatedSeriesSequence[0][0x00091001].value == "private"
    dataset = modified(data, anonymization({"Keep": ["RelatedSeriesSequence"]}))
    assert dataset.RelatedSeriesSequence[0].InstitutionName == "Inner Inst"
    dataset = modified(data, anonymization({"Replace": {"PatientName": "Fixed"}, "Remove": ["Modality"]}))
    assert dataset.PatientName == "Fixed" and "Modality" not in dataset


def test_the_2008_and_2017c_profiles_differ_from_2021b() -> None:
    dataset = modified(CT, anonymization({"DicomVersion": "2008"}))
    assert dataset.DeidentificationMethod.endswith(" - PS 3.15-2008 Table E.1-1")
    assert dataset.StudyDate == "20040119" and "AccessionNumber" not in dataset
    dataset = modified(CT, anonymization({"DicomVersion": "2017c"}))
    assert dataset.DeidentificationMethod.endswith(" - PS 3.15-2017c Table E.1-1 Basic Profile")


def test_split_and_merge_modifications() -> None:
    dataset = modified(CT, split_modification("2.25.1", {"StudyDescription": "Split"}, ["PatientSex"]))
    assert (dataset.StudyInstanceUID, dataset.StudyDescription) == ("2.25.1", "Split")
    assert "PatientSex" not in dataset and NEW_UID.match(dataset.SeriesInstanceUID)
    error = error_of(lambda: split_modification("2.25.1", {"Modality": "MR"}, []))
    assert error.details == (
        "Cannot modify the following tag while splitting a study (not in the patient/study modules): "
        "Modality (0008,0060)"
    )
    dataset = modified(CT, merge_modification({0x00100020: "TARGET", 0x0020000D: "2.25.9"}))
    assert (dataset.PatientID, dataset.StudyInstanceUID) == ("TARGET", "2.25.9")
    assert "PatientName" not in dataset and "StudyDate" not in dataset


# -- through the REST API


@pytest.fixture(scope="module")
def stored(server) -> dict[str, dict]:
    with httpx.Client(base_url=server.base_url, timeout=60) as http:
        return {
            name: http.post("/instances", content=pydicom_file(name).read_bytes()).json()
            for name in (CT, "MR_small.dcm", "rtplan.dcm", "rtdose.dcm", "rtstruct.dcm")
        }


def test_instance_modify_answers_the_file_and_stores_nothing(client: httpx.Client, stored) -> None:
    before = client.get("/statistics").json()
    answer = client.post(f"/instances/{stored[CT]['ID']}/modify", json={"Replace": {"PatientName": "A^B"}})
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/dicom"
    assert read(answer.content).PatientName == "A^B"
    assert client.get("/statistics").json() == before


def test_instance_modify_transcodes(client: httpx.Client, stored) -> None:
    answer = client.post(f"/instances/{stored[CT]['ID']}/modify", json={"Transcode": "1.2.840.10008.1.2"})
    assert read(answer.content).file_meta.TransferSyntaxUID == "1.2.840.10008.1.2"
    answer = client.post(f"/instances/{stored[CT]['ID']}/modify", json={"Transcode": "1.2.3"})
    assert (answer.status_code, answer.json()["Details"]) == (400, "Unknown transfer syntax: 1.2.3")


def test_errors_of_the_instance_routes(client: httpx.Client, stored) -> None:
    answer = client.post("/instances/nonexistent/modify", json={})
    assert (answer.status_code, answer.json()["OrthancStatus"]) == (404, 17)
    answer = client.post(f"/instances/{stored[CT]['ID']}/modify", content=b"{")
    assert (answer.status_code, answer.json()["OrthancStatus"]) == (400, 15)
    answer = client.post(f"/instances/{stored[CT]['ID']}/anonymize", json={"DicomVersion": "1999"})
    assert (answer.status_code, answer.json()["OrthancStatus"]) == (400, 3)
    answer = client.post(f"/instances/{stored[CT]['ID']}/modify", json={"Replace": {"NoSuchTag": "x"}})
    assert (answer.status_code, answer.json()["OrthancStatus"]) == (500, 27)


def test_study_modify_stores_a_new_study_with_its_provenance(client: httpx.Client, stored) -> None:
    source = stored["MR_small.dcm"]
    answer = client.post(
        f"/studies/{source['ParentStudy']}/modify", json={"Replace": {"StudyDescription": "New"}}
    )
    assert answer.status_code == 200
    content = answer.json()
    assert set(content) == {
        "Description", "FailedInstancesCount", "ID", "InstancesCount", "IsAnonymization", "Path", "PatientID",
        "Type",
    }  # fmt: skip
    assert (content["Type"], content["InstancesCount"], content["IsAnonymization"]) == ("Study", 1, False)
    assert content["PatientID"] == source["ParentPatient"]  # same patient: the Orthanc ID of the parent
    study = client.get(content["Path"]).json()
    assert study["MainDicomTags"]["StudyDescription"] == "New"
    assert client.get(f"{content['Path']}/metadata/ModifiedFrom").text == source["ParentStudy"]
    instance = client.get(f"{content['Path']}/instances").json()[0]["ID"]
    assert client.get(f"/instances/{instance}/metadata/ModifiedFrom").text == source["ID"]
    assert client.get(f"/studies/{source['ParentStudy']}").status_code == 200  # KeepSource defaults to true


def test_series_modify_without_keep_source_moves_the_series(client: httpx.Client, stored) -> None:
    source = stored["rtdose.dcm"]
    answer = client.post(
        f"/series/{source['ParentSeries']}/modify",
        json={"Replace": {"SeriesDescription": "Moved"}, "KeepSource": False},
    )
    assert answer.status_code == 200
    assert client.get(f"/series/{source['ParentSeries']}").status_code == 404
    assert client.get(answer.json()["Path"]).json()["MainDicomTags"]["SeriesDescription"] == "Moved"


def test_patient_anonymize_generates_names_and_ids(client: httpx.Client, stored) -> None:
    first = client.post(f"/patients/{stored[CT]['ParentPatient']}/anonymize", json={}).json()
    second = client.post(f"/patients/{stored[CT]['ParentPatient']}/anonymize", json={}).json()
    names = [client.get(answer["Path"]).json()["MainDicomTags"]["PatientName"] for answer in (first, second)]
    numbers = [int(name.removeprefix("Anonymized")) for name in names]
    assert numbers[1] == numbers[0] + 1
    patient = client.get(first["Path"]).json()
    assert UUID4.match(patient["MainDicomTags"]["PatientID"])
    assert first["ID"] == first["PatientID"] and first["IsAnonymization"] is True
    assert client.get(f"{first['Path']}/metadata/AnonymizedFrom").text == stored[CT]["ParentPatient"]


def test_resource_level_errors(client: httpx.Client, stored) -> None:
    answer = client.post("/studies/00000000-00000000-00000000-00000000-00000000/modify", json={})
    assert (answer.status_code, answer.json()["OrthancStatus"]) == (404, 17)
    answer = client.post(
        f"/patients/{stored[CT]['ParentPatient']}/modify", json={"Replace": {"PatientName": "X"}}
    )
    assert answer.json()["Details"] == "When modifying a patient, her PatientID is required to be modified"
    answer = client.post(f"/studies/{stored[CT]['ParentStudy']}/modify", json={"KeepSource": "x"})
    assert (answer.status_code, answer.json()["Details"]) == (
        400,
        "Boolean value expected in field: KeepSource",
    )


def test_modifications_log_only_the_new_resources(client: httpx.Client, stored) -> None:
    last = client.get("/changes", params={"last": ""}).json()["Last"]
    answer = client.post(f"/studies/{stored['rtplan.dcm']['ParentStudy']}/modify", json={}).json()
    changes = client.get("/changes", params={"since": str(last), "limit": "100"}).json()["Changes"]
    changes = [change for change in changes if not change["ChangeType"].startswith("Stable")]  # StableAge 1
    assert [change["ChangeType"] for change in changes] == ["NewInstance", "NewSeries", "NewStudy"]
    assert changes[-1]["ID"] == answer["ID"]


def test_split_and_merge_move_series_between_studies(client: httpx.Client, stored) -> None:
    ct = stored[CT]
    answer = client.post(
        f"/studies/{ct['ParentStudy']}/split", json={"Series": [ct["ParentSeries"]], "KeepSource": True}
    ).json()
    assert set(answer) == {
        "Description",
        "FailedInstancesCount",
        "InstancesCount",
        "TargetStudy",
        "TargetStudyUID",
    }
    target = client.get(f"/studies/{answer['TargetStudy']}").json()
    assert target["MainDicomTags"]["StudyInstanceUID"] == answer["TargetStudyUID"]
    assert target["ParentPatient"] == ct["ParentPatient"]
    merged = client.post(
        f"/studies/{ct['ParentStudy']}/merge", json={"Resources": [answer["TargetStudy"]]}
    ).json()
    assert merged == {
        "Description": "REST API", "FailedInstancesCount": 0, "InstancesCount": 1,
        "TargetStudy": ct["ParentStudy"],
    }  # fmt: skip
    assert client.get(f"/studies/{answer['TargetStudy']}").status_code == 404
    assert len(client.get(f"/studies/{ct['ParentStudy']}").json()["Series"]) == 2


def test_split_and_merge_errors(client: httpx.Client, stored) -> None:
    ct, mr = stored[CT], stored["MR_small.dcm"]
    answer = client.post(f"/studies/{ct['ParentStudy']}/split", json={})
    assert answer.json()["Details"] == 'Both the "Series" and the "Instances" fields are missing'
    answer = client.post(f"/studies/{ct['ParentStudy']}/split", json={"Series": [mr["ParentSeries"]]})
    assert (answer.status_code, answer.json()["Details"]) == (
        404, f"This series does not belong to the study to be split: {mr['ParentSeries']}"
    )  # fmt: skip
    answer = client.post("/studies/nope/split", json={"Series": []})
    assert (answer.status_code, answer.json()["Details"]) == (404, "Cannot split unknown study nope")
    answer = client.post(f"/studies/{ct['ParentStudy']}/merge", json={"Resources": [ct["ParentStudy"]]})
    assert answer.json()["Details"] == f"Cannot merge a study into the same study: {ct['ParentStudy']}"
    answer = client.post(f"/studies/{ct['ParentStudy']}/merge", json={"Resources": [ct["ParentPatient"]]})
    assert answer.status_code == 404
    answer = client.post(f"/studies/{ct['ParentStudy']}/merge", json={})
    assert (answer.status_code, answer.json()["Details"]) == (
        400,
        "List of strings expected in field: Resources",
    )
    answer = client.post(f"/studies/{ct['ParentStudy']}/merge", json={"Resources": []})
    assert answer.json()["InstancesCount"] == 0


def test_the_anonymized_file_is_valid_json_free_dicom(client: httpx.Client, stored) -> None:
    answer = client.post(f"/instances/{stored['rtstruct.dcm']['ID']}/anonymize", json={})
    dataset = read(answer.content)
    assert dataset.PatientIdentityRemoved == "YES"
    assert json.dumps(dataset.to_json_dict())  # every element decodes


# -- as jobs


def job_when_done(client: httpx.Client, job_id: str) -> dict:
    deadline = time.monotonic() + 30
    while (job := client.get(f"/jobs/{job_id}").json())["State"] not in ("Success", "Failure"):
        assert time.monotonic() < deadline, job
        time.sleep(0.05)
    return job


def test_asynchronous_requests_answer_a_job(client: httpx.Client, stored) -> None:
    mr = stored["MR_small.dcm"]
    answer = client.post(
        f"/studies/{mr['ParentStudy']}/anonymize", json={"Asynchronous": True, "Priority": 3}
    ).json()
    assert set(answer) == {"ID", "Path"} and answer["Path"] == f"/jobs/{answer['ID']}"
    job = job_when_done(client, answer["ID"])
    assert (job["Type"], job["State"], job["Priority"], job["Progress"]) == (
        "ResourceModification",
        "Success",
        3,
        100,
    )
    content = job["Content"]
    assert content["IsAnonymization"] is True and content["Type"] == "Study"
    assert client.get(content["Path"]).status_code == 200
    answer = client.post(
        f"/studies/{stored[CT]['ParentStudy']}/split",
        json={"Series": [stored[CT]["ParentSeries"]], "KeepSource": True, "Synchronous": False},
    ).json()
    job = job_when_done(client, answer["ID"])
    assert (job["Type"], set(job["Content"])) == (
        "SplitStudy",
        {"Description", "FailedInstancesCount", "InstancesCount", "TargetStudy", "TargetStudyUID"},
    )


def test_synchronous_requests_leave_their_job_in_the_history(client: httpx.Client, stored) -> None:
    answer = client.post(f"/series/{stored['rtplan.dcm']['ParentSeries']}/modify", json={}).json()
    jobs = client.get("/jobs", params={"expand": ""}).json()
    assert any(job["Type"] == "ResourceModification" and job["Content"] == answer for job in jobs)


def test_bad_job_options_are_refused(client: httpx.Client, stored) -> None:
    study = stored[CT]["ParentStudy"]
    answer = client.post(f"/studies/{study}/modify", json={"Asynchronous": "yes"})
    assert (answer.status_code, answer.json()["Details"]) == (
        400,
        "Boolean value expected in field: Asynchronous",
    )
    answer = client.post(f"/studies/{study}/modify", json={"Priority": "high"})
    assert (answer.status_code, answer.json()["Details"]) == (
        400,
        "Integer value expected in field: Priority",
    )


def test_a_job_saves_what_resumes_it() -> None:
    """The saved state of a job gives back the same job (after a restart, the same UIDs)."""
    request = parse_anonymize_request({"Replace": {"OtherPatientIDsSequence": [{"PatientID": "A"}]}})
    state = RunState(
        sources=[
            SourceInstance(
                ids=(b"p" * 20, b"s" * 20, b"e" * 20, b"i" * 20), blob=StoredBlob(b"d" * 32, 9, 5)
            ),
            SourceInstance(ids=(b"p" * 20, b"s" * 20, b"e" * 20, b"j" * 20), blob=b"d" * 32),  # saved before
        ],
        modification=request.modification,
        origin=Origin(kind="RestApi", remote_ip="127.0.0.1"),
        keep_source=False,
        step_size=16,
        provenance="AnonymizedFrom",
        level=Level.STUDY,
    )
    work = ModificationWork.__new__(ModificationWork)  # never run: no pool, no index
    job = ResourceModificationJob(work, state)
    loaded = ResourceModificationJob.loader(work)(job.save())
    assert loaded.state == state and loaded.total_steps == 1
    assert loaded.content() == {
        "Description": "REST API", "FailedInstancesCount": 0, "InstancesCount": 2, "IsAnonymization": True
    }  # fmt: skip


def test_a_large_series_is_anonymized_in_several_steps_with_one_mapping(client: httpx.Client) -> None:
    """More instances than one step holds: every batch, in every worker, maps each UID alike."""
    source = pydicom.dcmread(pydicom_file(CT))
    source.SeriesInstanceUID = "2.25.77"
    for number in range(1, 61):
        source.SOPInstanceUID = f"2.25.77{number}"
        source.file_meta.MediaStorageSOPInstanceUID = source.SOPInstanceUID
        source.InstanceNumber = number
        answer = client.post("/instances", content=encoded(source)).json()
    content = client.post(f"/series/{answer['ParentSeries']}/anonymize", json={}).json()
    assert (content["InstancesCount"], content["FailedInstancesCount"]) == (60, 0)
    instances = client.get(f"{content['Path']}/instances").json()
    tags = [client.get(f"/instances/{instance['ID']}/simplified-tags").json() for instance in instances]
    assert len({tag["SOPInstanceUID"] for tag in tags}) == 60
    for keyword in (
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "FrameOfReferenceUID",
        "PatientID",
        "PatientName",
    ):
        assert len({tag[keyword] for tag in tags}) == 1, keyword
    assert sorted(int(tag["InstanceNumber"]) for tag in tags) == list(range(1, 61))
