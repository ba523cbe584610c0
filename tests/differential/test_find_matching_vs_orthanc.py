"""Query matching, probed again: /tools/find and the C-FIND SCP against the reference Orthanc.

tests/differential/test_find_vs_orthanc.py covers the matching rules on its
generated corpus. This module adds what a fresh probe found worth pinning
down, on that corpus plus pydicom's character-set files (``chr*.dcm``: Latin,
Greek, Cyrillic, Arabic, Hebrew, ISO 2022 Japanese and Korean, GB18030) and a
few generated files (multi-valued main tags, DT and TM values, private tags,
a sequence, ``_`` and ``%`` in identifiers):

- ModalitiesInStudy: Orthanc 1.10.1 runs such a study query at series level
  (Modality in its place, every other constraint kept) and answers the
  studies by StudyInstanceUID, so the order, the paging and the series tags
  that take part are checked;
- non-ASCII values from every character set, by REST and by C-FIND;
- malformed ranges and lists, multi-valued main tags, DT ranges, tags named
  in unusual forms, tags that only the files hold;
- the same constraints through the C-FIND SCP (Patient Root and Study Root),
  answers compared as sets (C-FIND answers come in no stable order);
- POST /tools/lookup and C-GET (identifiers compared in Orthanc's normalized form);
- LimitFindResults and LimitFindInstances, on a second pair of servers.
"""

import io
import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom.data
import pytest
from pydicom.dataset import Dataset
from pydicom.filewriter import dcmwrite
from pydicom.sequence import Sequence
from pynetdicom import AE, build_context, build_role, evt
from pynetdicom.sop_class import (
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
)

from tests.differential.conftest import COMMON_OPTIONS
from tests.differential.harness import Call, ServerPair
from tests.differential.test_find_vs_orthanc import UID_ROOT as CORPUS_UID_ROOT
from tests.differential.test_find_vs_orthanc import _file as part10_file
from tests.differential.test_find_vs_orthanc import corpus, find, instance, patient, series, study

pytestmark = pytest.mark.reference

UID_ROOT = "1.2.826.0.1.3680043.10.543.77."
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
CHARSET_FILES = [
    path
    for path in sorted((Path(pydicom.data.__file__).parent / "charset_files").glob("chr*.dcm"))
    if not path.name.startswith("chrSQEncoding")  # no patient, study or series identifiers: refused by both
]
"""pydicom's character-set test files (installed with pydicom: nothing is downloaded)."""
PROBE_AET = "FINDPROBE"
PATIENT_ROOT = PatientRootQueryRetrieveInformationModelFind
STUDY_ROOT = StudyRootQueryRetrieveInformationModelFind
PATIENT_ROOT_GET = PatientRootQueryRetrieveInformationModelGet
STUDY_ROOT_GET = StudyRootQueryRetrieveInformationModelGet


def _file(number: int, charset: str = "ISO_IR 100", **tags: Any) -> bytes:
    dataset = Dataset()
    dataset.SpecificCharacterSet = charset
    dataset.SOPClassUID = CT_IMAGE_STORAGE
    dataset.StudyInstanceUID = tags.pop("StudyInstanceUID", f"{UID_ROOT}{number}")
    dataset.SeriesInstanceUID = tags.pop("SeriesInstanceUID", f"{UID_ROOT}{number}.1")
    dataset.SOPInstanceUID = tags.pop("SOPInstanceUID", f"{UID_ROOT}{number}.1.1")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # malformed values are wanted here
        for keyword, value in tags.items():
            setattr(dataset, keyword, value)
    return part10_file(dataset)


def _referenced_image() -> Sequence:
    item = Dataset()
    item.ReferencedSOPClassUID = CT_IMAGE_STORAGE
    item.ReferencedSOPInstanceUID = "1.2.3"
    return Sequence([item])


def generated_files() -> list[bytes]:
    """Files made for this module, uploaded after the corpus and the character-set files."""
    first = _file(
        1,
        PatientID="XP1",
        PatientName="Smith^Anna^^Dr",
        PatientBirthTime="1200",
        PatientWeight="70.5",
        PatientSex="F",
        OtherPatientIDs="ID1\\ID2",
        StudyDate="20200101",
        StudyTime="101010.5",
        StudyDescription="Brain  MRI",
        Modality="MR",
        SeriesDate="20200101",
        SeriesTime="1010",
        SeriesType="STATIC\\IMAGE",
        AcquisitionDateTime="20200101101010",
        InstanceCreationDate="20200102",
        InstanceCreationTime="235959",
        ImageComments="a comment with spaces ",
        ReferencedImageSequence=_referenced_image(),
    )
    dataset = pydicom.dcmread(io.BytesIO(first))
    dataset.private_block(0x0009, "ACME", create=True).add_new(0x01, "LO", "secret")
    buffer = io.BytesIO()
    dcmwrite(buffer, dataset, enforce_file_format=True)
    return [
        buffer.getvalue(),
        _file(
            2,
            PatientID="XP2",
            PatientName="smith^bob",
            PatientSex="M",
            StudyDate="20201231",
            StudyTime="000000",
            StudyDescription="brain mri",
            Modality="CT",
            SeriesDate="2020-12-31",
            AcquisitionDateTime="20201231235959.123456+0100",
            InstanceCreationDate="20201231",
        ),
        _file(
            3,
            PatientID="xp3",
            PatientName="O'Brien^Seán",
            PatientBirthDate="1980.01.01",
            StudyDate="19991231",
            StudyTime="2359",
            StudyDescription="ÉCHO ÀBDO",
            AccessionNumber="A\\B",
            InstitutionName="Hôpital Saint-Éloi",
            Modality="US",
        ),
        _file(
            4,
            "ISO_IR 192",
            PatientID="XP4",
            PatientName="=山田^太郎",
            StudyDate="20210615",
            StudyDescription="Ünïcödé",
            Modality="MR",
        ),
        _file(  # a second series in the study of XP1
            1,
            PatientID="XP1",
            PatientName="Smith^Anna^^Dr",
            StudyDate="20200101",
            Modality="CT",
            SeriesInstanceUID=f"{UID_ROOT}1.2",
            SOPInstanceUID=f"{UID_ROOT}1.2.1",
            InstanceNumber="7",
        ),
        _file(
            5,
            PatientID="XP5",
            PatientName="Ab_c%d",
            StudyDate="20200101",
            StudyID="ab_c",
            AccessionNumber="ab_c",
            StudyDescription="50% off_sale",
            ReferringPhysicianName="Who^Dr",
            Modality="OT",
        ),
        _file(6, PatientID="", PatientName="Empty^Id", StudyDate="20200101"),
        _file(7, "ISO_IR 192", PatientID="Pàt-Ü_1", PatientName="NonAscii^Id", StudyDate="20200101"),
    ]


@pytest.fixture(scope="module")
def stored(pair: ServerPair) -> ServerPair:
    """Both servers holding the corpus, the character-set files and the generated files, stable,
    each knowing the calling AET of the C-FIND probes as a modality."""
    files = corpus() + [path.read_bytes() for path in CHARSET_FILES] + generated_files()
    _load(pair, files)
    return pair


def _load(pair: ServerPair, files: list[bytes]) -> None:
    """Upload the files to both servers, wait until they are stable, register the probes' modality."""
    pair.upload_all({str(number): data for number, data in enumerate(files)})
    pair.wait_until_stable()
    modality = json.dumps({"AET": PROBE_AET, "Host": "127.0.0.1", "Port": 9}).encode()
    orthanc, fastpacs = pair.send(Call("probe modality", "PUT", "/modalities/probe", body=modality))
    assert orthanc.status == fastpacs.status == 200


MATCHING = [
    # ModalitiesInStudy: a series-level query whose studies come by StudyInstanceUID
    find("mis uid order", study({"ModalitiesInStudy": "OT"})),
    find("mis uid order question", study({"ModalitiesInStudy": "o?"})),
    find("mis list with empty item", study({"ModalitiesInStudy": "CT\\"})),
    find("mis since limit", study({"ModalitiesInStudy": "OT"}, Since=3, Limit=7)),
    find("mis limit only", study({"ModalitiesInStudy": "OT\\MR"}, Limit=4)),
    find("mis since without limit", study({"ModalitiesInStudy": "OT"}, Since=5)),
    find("mis expand", study({"ModalitiesInStudy": "OT"}, Expand=True, Since=1, Limit=4)),
    find("mis and modality", study({"ModalitiesInStudy": "CT", "Modality": "CT"})),
    find("mis and other modality", study({"ModalitiesInStudy": "CT", "Modality": "SR"})),
    find("mis and series description", study({"ModalitiesInStudy": "MR", "SeriesDescription": "T1*"})),
    find(
        "mis and other series' description", study({"ModalitiesInStudy": "CT", "SeriesDescription": "Report"})
    ),
    find("mis and series date", study({"ModalitiesInStudy": "MR\\CT", "SeriesDate": "20200101-"})),
    find("mis and instance number", study({"ModalitiesInStudy": "CT", "InstanceNumber": "1"})),
    find("mis and patient", study({"ModalitiesInStudy": "*", "PatientName": "smith*"})),
    find("mis case-sensitive", study({"ModalitiesInStudy": "ot"}, CaseSensitive=True)),
    find("mis list and empty", study({"ModalitiesInStudy": "\\"})),
    # names in every character set
    *(
        find(f"name {name}", patient({"PatientName": name}))
        for name in (
            "Διονυσιος",
            "ΔΙΟΝΥΣΙΟΣ",
            "διονυσιος",
            "люкceмбypг",
            "ЛЮКCEМБYPГ",
            "Люк*",
            "قباني^لنزار",
            "שרון^דבורה",
            "김희중",
            "*희*",
            "buc^jérôme",
            "BUC^JÉRÔME",
            "äneas*",
            "?neas*",
            "??neas*",
            "hong*",
            "*洪*",
            "*王*",
            "wang*",
            "Yamada*",
            "yamada^tarou=山田^太郎=やまだ^たろう",
            "=山田^太郎",
            "=*",
            "*=*",
            "o'brien^seán",
            "O'BRIEN^SEÁN",
            "o?brien*",
        )
    ),
    find("name case-sensitive lower", patient({"PatientName": "smith*"}, CaseSensitive=True)),
    find("name case-sensitive", patient({"PatientName": "Smith*"}, CaseSensitive=True)),
    find("name greek case-sensitive", patient({"PatientName": "σωκράτης*"}, CaseSensitive=True)),
    find("charset file study", study({"StudyDescription": "chest", "StudyDate": "20080101-20081231"})),
    find("charset file ids", patient({"PatientID": "scs*"})),
    find("charset file dash id", patient({"PatientID": "2008-?"})),
    find("description accents", study({"StudyDescription": "écho àbdo"})),
    find("description accents dropped", study({"StudyDescription": "echo*"})),
    find("description unicode", study({"StudyDescription": "ünïcödé"})),
    find("institution accents", study({"InstitutionName": "hôpital*"})),
    find("description double space", study({"StudyDescription": "brain mri"})),
    find("description star for spaces", study({"StudyDescription": "Brain*MRI"})),
    # what SQL LIKE and the identifier normalization make of _ and %
    *(
        find(f"identifier chars {key} {value}", study({key: value}))
        for key, value in (
            ("StudyDescription", "50%*"),
            ("StudyDescription", "50_*"),
            ("StudyDescription", "*x_sale"),
            ("StudyDescription", "50? off?sale"),
            ("StudyID", "ab_c"),
            ("StudyID", "abxc"),
            ("StudyID", "ab?c"),
            ("StudyID", "ab%c"),
            ("AccessionNumber", "ab c"),
            ("AccessionNumber", "abxc"),
            ("AccessionNumber", "ab?c"),
            ("PatientName", "ab c d"),
            ("PatientName", "ab?c?d"),
        )
    ),
    # multi-valued main tags: a list is not a value's parts
    find("accession with backslash", study({"AccessionNumber": "A\\B"})),
    find("accession one part", study({"AccessionNumber": "A"})),
    find("series type whole", series({"SeriesType": "STATIC\\IMAGE"})),
    find("series type part", series({"SeriesType": "STATIC"})),
    find("series type wildcard", series({"SeriesType": "*IMAGE"})),
    find("other patient ids list", patient({"RETIRED_OtherPatientIDs": "ID1\\ID2"})),
    find("other patient ids wildcard", patient({"0010,1000": "ID1*"})),
    # dates and times, well-formed or not
    find("time fraction", study({"StudyTime": "101010.5"})),
    find("time fraction range", study({"StudyTime": "101010-101011"})),
    find("time exact seconds", study({"StudyTime": "000000-000000"})),
    find("time with colon", study({"StudyTime": "23:59"})),
    find("date with dashes", series({"SeriesDate": "2020-12-31"})),
    find("date with dashes as range", series({"SeriesDate": "2020-12-31-"})),
    find("date with dots", patient({"PatientBirthDate": "1980.01.01"})),
    find("years range", patient({"PatientBirthDate": "1970-1990"})),
    find("three dashes", study({"StudyDate": "2004-2005-2006"})),
    find("double dash", study({"StudyDate": "--"})),
    find("date list empty items", study({"StudyDate": "\\"})),
    find("date list trailing empty", study({"StudyDate": "20040119\\"})),
    find("date ranges in a list", study({"StudyDate": "20040119-\\-19991231"})),
    find("datetime exact", instance({"AcquisitionDateTime": "20200101101010"})),
    find("datetime from", instance({"AcquisitionDateTime": "2020-"})),
    find("datetime range", instance({"AcquisitionDateTime": "20200101-20201231"})),
    find("datetime with zone", instance({"AcquisitionDateTime": "20201231235959.123456+0100"})),
    find("instance creation time", instance({"InstanceCreationTime": "23-"})),
    find("birth time range", patient({"PatientBirthTime": "11-13"})),
    # lists
    find("modality list empty item", series({"Modality": "CT\\"})),
    find("modality list only empty", series({"Modality": "\\"})),
    find("modality leading space", series({"Modality": " CT"})),
    find("uid list trailing empty", study({"StudyInstanceUID": "1.2.826.0.1.3680043.10.543.1.1\\"})),
    find("uid leading space", study({"StudyInstanceUID": " 1.2.826.0.1.3680043.10.543.1.1"})),
    find("numbers list", series({"SeriesNumber": "1\\2"})),
    find("number with zero", series({"SeriesNumber": "01"})),
    # tags the files hold, named in unusual forms
    find("trailing space kept", instance({"ImageComments": "a comment with spaces"})),
    find("comment wildcard", instance({"ImageComments": "A COMMENT*"})),
    find("patient weight", patient({"PatientWeight": "70.5"})),
    find("private creator", instance({"0009,0010": "ACME"})),
    find("private value", instance({"0009,1001": "secret"})),
    find("private value as 8 digits", instance({"00091001": "secret"})),
    find("private value star", instance({"0009,1001": "*"})),
    find("sequence star", instance({"ReferencedImageSequence": "*"})),
    find("tag inside a sequence", instance({"ReferencedSOPInstanceUID": "1.2.3"})),
    find("character set", instance({"SpecificCharacterSet": "ISO_IR 192"})),
    find("character set wildcard", instance({"SpecificCharacterSet": "*192"})),
    find("character set two values", instance({"SpecificCharacterSet": "\\ISO 2022 IR 87"})),
    find("transfer syntax", instance({"TransferSyntaxUID": "1.2.840.10008.1.2.1"})),
    find("media storage class", instance({"MediaStorageSOPClassUID": CT_IMAGE_STORAGE})),
    find("pixel data", instance({"PixelData": "x"})),
    find("query level tag", instance({"QueryRetrieveLevel": "IMAGE"})),
    find("counter tag", series({"NumberOfSeriesRelatedInstances": "1"})),
    find("tag with dash", patient({"0010-0020": "XP1"})),
    find("tag with 0x", patient({"0x0010,0x0020": "XP1"})),
    find("tag short hex", patient({"10,20": "XP1"})),
    find("tag lower-case name", patient({"patientid": "XP1"})),
    find("tag with dot", patient({"0010.0020": "XP1"})),
    find("same tag twice", study({"0010,0020": "FIND-P1", "PatientID": "find-p2"})),
    find("empty key", study({"": "x"})),
    find("empty key and value", study({"": ""})),
    find("requested tags ignored", study({"PatientID": "XP*"}, RequestedTags=["PatientName"])),
]


@pytest.mark.parametrize("call", MATCHING, ids=str)
def test_find(stored: ServerPair, call: Call) -> None:
    check = stored.checker()
    check.compare(call)
    check.verdict()


LOOKUPS = [
    # Orthanc compares identifiers in normalized form (ASCII, upper case, '_' and '%' as spaces, trimmed)
    *("FIND-P1", "find-p1", " find-p1 ", "FIND-P1\t", "FIND_P3", "find p3", "find%p4", "FIND P4"),
    *("xp3", "scsgreek", "2008-4", "ab_c", "ACC_001", "FIND-P1\\FIND_P3", "\\"),
    *(f"{CORPUS_UID_ROOT}1.1", f" {CORPUS_UID_ROOT}1.1.1 ", f"{CORPUS_UID_ROOT}1.1.1.1", "1.2.826.0.1"),
    *("Pàt-Ü_1", "pàt-ü_1", "PT- 1", "pt-_1"),  # non-ASCII letters are dropped
    *("", " ", "FIND?P3", "FIND*", "*", "1.2.*"),  # the empty identifier; wildcards refused
]


@pytest.mark.parametrize("text", LOOKUPS)
def test_lookup(stored: ServerPair, text: str) -> None:
    check = stored.checker()
    check.compare(Call(f"lookup {text!r}", "POST", "/tools/lookup", body=text.encode()))
    check.verdict()


# --- the same through the C-FIND SCP ----------------------------------------------------------------


def c_find(port: int, model: str, keys: dict[str, Any], charset: str | list[str] | None) -> dict[str, Any]:
    """The final status and the answers (sorted: their order is not stable) of one C-FIND."""
    identifier = Dataset()
    if charset is not None:
        identifier.SpecificCharacterSet = charset
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # wildcards and ranges in values pydicom would validate
        for keyword, value in keys.items():
            setattr(identifier, keyword, value)
    assoc = AE(ae_title=PROBE_AET).associate("127.0.0.1", port, [build_context(model)])
    assert assoc.is_established
    answers, status = [], None
    try:
        for reply, answer in assoc.send_c_find(identifier, model):
            status = reply.Status if reply else None
            if status in (0xFF00, 0xFF01) and answer is not None:
                answers.append({element.keyword: str(element.value) for element in answer})
    finally:
        assoc.release()
    return {"Status": status, "Answers": sorted(answers, key=lambda item: sorted(item.items()))}


def _identifiers(result: dict[str, Any]) -> dict[str, Any]:
    """Which resources were found, without the values of the answers (see test_c_find_non_ascii)."""
    names = ("PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")
    found = [{key: answer[key] for key in names if key in answer} for answer in result["Answers"]]
    return {"Status": result["Status"], "Answers": sorted(found, key=lambda item: sorted(item.items()))}


C_FIND = {
    "patients": (PATIENT_ROOT, {"QueryRetrieveLevel": "PATIENT", "PatientID": "FIND?P*", "PatientName": ""}),
    "patients list": (PATIENT_ROOT, {"QueryRetrieveLevel": "PATIENT", "PatientID": "FIND-P1\\FIND_P3"}),
    "patients pn case": (
        PATIENT_ROOT,
        {"QueryRetrieveLevel": "PATIENT", "PatientName": "DOE*", "PatientID": ""},
    ),
    "patients id case": (PATIENT_ROOT, {"QueryRetrieveLevel": "PATIENT", "PatientID": "find-p1"}),
    "patients birth range": (
        PATIENT_ROOT,
        {"QueryRetrieveLevel": "PATIENT", "PatientBirthDate": "19600101-19701231", "PatientID": ""},
    ),
    "patient root studies": (
        PATIENT_ROOT,
        {"QueryRetrieveLevel": "STUDY", "PatientID": "FIND-P1", "StudyInstanceUID": "", "StudyDate": ""},
    ),
    "studies date and time": (
        STUDY_ROOT,
        {
            "QueryRetrieveLevel": "STUDY",
            "StudyDate": "20040119",
            "StudyTime": "07-08",
            "StudyInstanceUID": "",
        },
    ),
    "studies description case": (
        STUDY_ROOT,
        {"QueryRetrieveLevel": "STUDY", "StudyDescription": "E+1", "StudyInstanceUID": ""},
    ),
    "studies mis": (
        STUDY_ROOT,
        {"QueryRetrieveLevel": "STUDY", "ModalitiesInStudy": "OT", "StudyInstanceUID": "", "PatientID": ""},
    ),
    "studies mis counters": (
        STUDY_ROOT,
        {
            "QueryRetrieveLevel": "STUDY",
            "ModalitiesInStudy": "CT\\MR",
            "StudyInstanceUID": "",
            "NumberOfStudyRelatedInstances": "",
        },
    ),
    "studies mis and series tag": (
        STUDY_ROOT,
        {"QueryRetrieveLevel": "STUDY", "ModalitiesInStudy": "MR", "SeriesDescription": "T1*", "StudyID": ""},
    ),
    "studies mis list of empties": (
        STUDY_ROOT,
        {"QueryRetrieveLevel": "STUDY", "ModalitiesInStudy": "\\", "StudyInstanceUID": ""},
    ),
    "studies lower main tags only": (
        STUDY_ROOT,
        {
            "QueryRetrieveLevel": "STUDY",
            "StudyID": "",
            "SeriesDescription": "",
            "Modality": "",
            "InstanceNumber": "",
        },
    ),
    "studies lower main tags and a file tag": (
        STUDY_ROOT,
        {"QueryRetrieveLevel": "STUDY", "StudyID": "", "SeriesDescription": "", "ContentDate": ""},
    ),
    "studies lower main tags and counters": (
        STUDY_ROOT,
        {
            "QueryRetrieveLevel": "STUDY",
            "SeriesDescription": "",
            "ModalitiesInStudy": "",
            "NumberOfStudyRelatedSeries": "",
            "NumberOfPatientRelatedStudies": "",
        },
    ),
    "studies mis and a file tag": (
        STUDY_ROOT,
        {"QueryRetrieveLevel": "STUDY", "ModalitiesInStudy": "CT\\SR", "ContentDate": "", "StudyID": ""},
    ),
    "studies bad level": (STUDY_ROOT, {"QueryRetrieveLevel": "FOO", "StudyInstanceUID": ""}),
    "studies no level": (STUDY_ROOT, {"StudyInstanceUID": ""}),
    "studies wildcard on a date": (STUDY_ROOT, {"QueryRetrieveLevel": "STUDY", "StudyDate": "2004*"}),
    "series": (
        STUDY_ROOT,
        {"QueryRetrieveLevel": "SERIES", "Modality": "C*", "SeriesInstanceUID": "", "SeriesDescription": ""},
    ),
    "series multi-valued": (
        STUDY_ROOT,
        {"QueryRetrieveLevel": "SERIES", "SeriesType": "STATIC*", "SeriesInstanceUID": ""},
    ),
    "images file tags": (
        STUDY_ROOT,
        {"QueryRetrieveLevel": "IMAGE", "ImageType": "ORIGINAL*", "SOPInstanceUID": "", "ContentDate": ""},
    ),
    "images pn from file": (
        STUDY_ROOT,
        {"QueryRetrieveLevel": "IMAGE", "PerformingPhysicianName": "ørsted*", "SOPInstanceUID": ""},
    ),
    "images datetime": (
        STUDY_ROOT,
        {"QueryRetrieveLevel": "IMAGE", "AcquisitionDateTime": "2020-", "SOPInstanceUID": ""},
    ),
    "images sequence": (
        STUDY_ROOT,
        {"QueryRetrieveLevel": "IMAGE", "SOPInstanceUID": f"{UID_ROOT}1.1.1", "ReferencedImageSequence": []},
    ),
    "series sequence and private tag": (
        STUDY_ROOT,
        {
            "QueryRetrieveLevel": "SERIES",
            "PatientID": "XP*",
            "SeriesInstanceUID": "",
            "ReferencedImageSequence": [],
            "ImageComments": "",
        },
    ),
    "images class list": (
        STUDY_ROOT,
        {
            "QueryRetrieveLevel": "IMAGE",
            "SOPClassUID": "1.2.840.10008.5.1.4.1.1.4\\1.2.840.10008.5.1.4.1.1.2",
            "StudyInstanceUID": "1.2.826.0.1.3680043.10.543.1.2",
            "SOPInstanceUID": "",
        },
    ),
}


def _compare_c_find(pair: ServerPair, name: str, model: str, keys: dict[str, str]) -> None:
    """The answers of both DICOM servers to one C-FIND identifier."""
    check = pair.checker()
    check.compare_documents(
        f"c-find {name}",
        c_find(pair.orthanc.dicom_port, model, keys, None),
        c_find(pair.fastpacs.dicom_port, model, keys, None),
    )
    check.verdict()


@pytest.mark.parametrize("name", C_FIND)
def test_c_find(stored: ServerPair, name: str) -> None:
    _compare_c_find(stored, name, *C_FIND[name])


C_FIND_NON_ASCII = [
    ("ISO_IR 126", "ΔΙΟΝΥΣΙΟΣ"),
    ("ISO_IR 192", "Διονυσιος"),
    ("ISO_IR 144", "Люк*"),
    ("ISO_IR 127", "قباني^لنزار"),
    ("ISO_IR 138", "שרון^דבורה"),
    ("ISO_IR 100", "buc^jérôme"),
    ("ISO_IR 192", "?neas*"),
    ("ISO_IR 192", "GÉRARD*"),
    ("ISO_IR 192", "*王*"),
    ("GB18030", "Wang^XiaoDong=王^小东"),
    (["", "ISO 2022 IR 87"], "やまだ^たろう"),
    (["", "ISO 2022 IR 149"], "김희중"),
]


@pytest.mark.parametrize(("charset", "name"), C_FIND_NON_ASCII, ids=str)
def test_c_find_non_ascii(stored: ServerPair, charset: str | list[str], name: str) -> None:
    """A non-ASCII PatientName in the query's character set: the same patients are found.

    Only which patients is compared: Orthanc writes every answer in its default
    encoding (ISO_IR 100), dropping what Latin-1 cannot hold; fastpacs answers
    in the query's character set (allowed: nothing is lost)."""
    keys = {"QueryRetrieveLevel": "PATIENT", "PatientName": name, "PatientID": ""}
    check = stored.checker()
    check.compare_documents(
        f"c-find non-ascii {name}",
        _identifiers(c_find(stored.orthanc.dicom_port, PATIENT_ROOT, keys, charset)),
        _identifiers(c_find(stored.fastpacs.dicom_port, PATIENT_ROOT, keys, charset)),
    )
    check.verdict()


def c_get(port: int, model: str, keys: dict[str, str]) -> dict[str, Any]:
    """The final status of a C-GET and the SOPInstanceUIDs it sent back (sorted)."""
    received: list[str] = []

    def on_store(event: evt.Event) -> int:
        received.append(str(event.dataset.SOPInstanceUID))
        return 0x0000

    ae = AE(ae_title=PROBE_AET)
    ae.add_requested_context(model)
    for context in (CT_IMAGE_STORAGE, MR_IMAGE_STORAGE):
        ae.add_requested_context(context)
    roles = [build_role(uid, scp_role=True) for uid in (CT_IMAGE_STORAGE, MR_IMAGE_STORAGE)]
    assoc = ae.associate("127.0.0.1", port, ext_neg=roles, evt_handlers=[(evt.EVT_C_STORE, on_store)])
    assert assoc.is_established
    identifier = Dataset()
    for keyword, value in keys.items():
        setattr(identifier, keyword, value)
    status = None
    try:
        for reply, _ in assoc.send_c_get(identifier, model):
            status = reply.Status if reply else None
    finally:
        assoc.release()
    return {"Status": status, "Received": sorted(received)}


C_GET = {
    # C-MOVE and C-GET name resources as /tools/lookup does: identifiers in normalized form.
    "patient id": (PATIENT_ROOT_GET, {"QueryRetrieveLevel": "PATIENT", "PatientID": "FIND_P3"}),
    "patient id as spaces": (PATIENT_ROOT_GET, {"QueryRetrieveLevel": "PATIENT", "PatientID": "find p3"}),
    "patient id percent": (PATIENT_ROOT_GET, {"QueryRetrieveLevel": "PATIENT", "PatientID": "FIND P4"}),
    "patient ids list": (
        PATIENT_ROOT_GET,
        {"QueryRetrieveLevel": "PATIENT", "PatientID": "find-p2\\FIND_P3"},
    ),
    "patient id wildcard": (PATIENT_ROOT_GET, {"QueryRetrieveLevel": "PATIENT", "PatientID": "FIND*"}),
    "study uid space": (
        STUDY_ROOT_GET,
        {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": f"{CORPUS_UID_ROOT}1.2 "},
    ),
    "accession lower": (STUDY_ROOT_GET, {"QueryRetrieveLevel": "STUDY", "AccessionNumber": "acc_001"}),
    "accession as space": (STUDY_ROOT_GET, {"QueryRetrieveLevel": "STUDY", "AccessionNumber": "ACC 001"}),
}


@pytest.mark.parametrize("name", C_GET)
def test_c_get(stored: ServerPair, name: str) -> None:
    model, keys = C_GET[name]
    check = stored.checker()
    check.compare_documents(
        f"c-get {name}",
        c_get(stored.orthanc.dicom_port, model, keys),
        c_get(stored.fastpacs.dicom_port, model, keys),
    )
    check.verdict()


# --- LimitFindResults and LimitFindInstances -----------------------------------------------------------

LIMITS = {"LimitFindResults": 3, "LimitFindInstances": 4}


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerPair]:
    """Both servers with LimitFindResults 3 and LimitFindInstances 4, holding the corpus."""
    pair = ServerPair.start(tmp_path_factory.mktemp("limited"), {**COMMON_OPTIONS, **LIMITS})
    try:
        _load(pair, corpus())
        yield pair
    finally:
        pair.stop()


LIMITED = [
    # Orthanc 1.10.1 applies the limits to /tools/find too: the first limit + 1 resources passing the
    # database phase, in insertion order, are the only candidates; then the usual order and paging.
    find("limited studies", study({})),
    find("limited studies limit", study({}, Limit=2)),
    find("limited studies since", study({}, Since=2)),
    find("limited studies by date", study({"StudyDate": "20040101-"})),
    find("limited studies by name", study({"PatientName": "doe*"})),
    find("limited studies having a description", study({"StudyDescription": "*"})),
    find("limited series", series({"Modality": "CT\\MR"})),
    find("limited instances", instance({})),
    find("limited instances by modality", instance({"Modality": "CT"})),
    find("limited instances read from files", instance({"ContentDate": "20040101-"})),
    find("limited instances file tag skipping", instance({"ContentDate": "20040120"})),
    find("limited modalities in study", study({"ModalitiesInStudy": "CT\\MR"})),
    find("limited patients expanded", patient({"PatientName": "*"}, Expand=True)),
]


@pytest.mark.parametrize("call", LIMITED, ids=str)
def test_find_limited(limited: ServerPair, call: Call) -> None:
    check = limited.checker()
    check.compare(call)
    check.verdict()


C_FIND_LIMITED = {
    "limited patients": (PATIENT_ROOT, {"QueryRetrieveLevel": "PATIENT", "PatientID": ""}),
    "limited studies": (STUDY_ROOT, {"QueryRetrieveLevel": "STUDY", "StudyDate": "20040101-", "StudyID": ""}),
    "limited studies mis": (STUDY_ROOT, {"QueryRetrieveLevel": "STUDY", "ModalitiesInStudy": "CT\\MR"}),
    "limited images": (STUDY_ROOT, {"QueryRetrieveLevel": "IMAGE", "SOPInstanceUID": ""}),
    "limited images from files": (
        STUDY_ROOT,
        {"QueryRetrieveLevel": "IMAGE", "ContentDate": "20040120", "SOPInstanceUID": ""},
    ),
}


@pytest.mark.parametrize("name", C_FIND_LIMITED)
def test_c_find_limited(limited: ServerPair, name: str) -> None:
    _compare_c_find(limited, name, *C_FIND_LIMITED[name])
