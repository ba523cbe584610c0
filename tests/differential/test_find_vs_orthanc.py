"""POST /tools/find: fastpacs and the reference Orthanc give the same answers.

Both servers receive the same generated corpus (small deterministic DICOM
files built with pydicom, uploaded in the same order), then the same find
requests; the answers must be equal, in the same order. The corpus is made
to exercise every matching rule: case folding (accents, Greek), wildcards,
``*`` alone, universal ``""``, lists, date and time ranges, malformed
dates, absent and empty values, tags of ancestor and lower levels,
ModalitiesInStudy, tags that are not main tags (read from the files), and
the characters Orthanc's identifier normalization treats specially.
"""

import io
import json
import warnings
from dataclasses import dataclass, field
from typing import Any

import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filewriter import dcmwrite
from pydicom.uid import ExplicitVRLittleEndian

from tests.differential.harness import Call, ServerPair

pytestmark = pytest.mark.reference

UID_ROOT = "1.2.826.0.1.3680043.10.543."
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"


@dataclass
class InstanceSpec:
    tags: dict[str, str] = field(default_factory=dict)


@dataclass
class SeriesSpec:
    tags: dict[str, str]
    instances: list[dict[str, str]]


@dataclass
class StudySpec:
    tags: dict[str, str]
    series: list[SeriesSpec]


@dataclass
class PatientSpec:
    tags: dict[str, str]
    studies: list[StudySpec]
    charset: str = "ISO_IR 100"


def _instances(count: int, **extra: str) -> list[dict[str, str]]:
    return [{"InstanceNumber": str(number), **extra} for number in range(1, count + 1)]


KNEE_EXTRA = {
    "InstanceCreatorUID": "1.3.6.1.4.1.5962.99",
    "ImageType": "DERIVED\\SECONDARY",
    "PerformingPhysicianName": "Ørsted^Hans",
}

PATIENTS: list[PatientSpec] = [
    PatientSpec(
        {
            "PatientID": "FIND-P1",
            "PatientName": "Gérard^Jean",
            "PatientBirthDate": "19600101",
            "PatientSex": "M",
        },
        [
            StudySpec(
                {
                    "StudyDate": "20040119",
                    "StudyTime": "072730",
                    "StudyDescription": "e+1",
                    "AccessionNumber": "ACC_001",
                    "InstitutionName": "JFK Imaging Center",
                    "ReferringPhysicianName": "House^Gregory",
                    "StudyID": "S1",
                },
                [
                    SeriesSpec(
                        {
                            "Modality": "CT",
                            "SeriesDescription": "Chest axial",
                            "SeriesNumber": "1",
                            "BodyPartExamined": "CHEST",
                            "SeriesDate": "20040119",
                            "SeriesTime": "073000",
                        },
                        _instances(
                            3,
                            InstanceCreatorUID="1.3.6.1.4.1.5962.3",
                            ImageType="ORIGINAL\\PRIMARY\\AXIAL",
                            ContentDate="20040119",
                            SliceThickness="5.0",
                        ),
                    ),
                    SeriesSpec(
                        {"Modality": "SR", "SeriesDescription": "Report", "SeriesNumber": "10"},
                        _instances(1, ContentDate="20040120"),
                    ),
                ],
            ),
            StudySpec(
                {
                    "StudyDate": "20050607",
                    "StudyTime": "235959.123",
                    "StudyDescription": "Knee (R)",
                    "AccessionNumber": "acc%002",
                },
                [
                    SeriesSpec(
                        {
                            "Modality": "MR",
                            "SeriesDescription": "T1 sag",
                            "SeriesNumber": "2",
                            "BodyPartExamined": "knee",
                        },
                        [
                            {"InstanceNumber": "1", "ContentDate": "20050607", **KNEE_EXTRA},
                            {"InstanceNumber": "2", "ContentDate": "20050608", **KNEE_EXTRA},
                        ],
                    ),
                ],
            ),
        ],
    ),
    PatientSpec(
        {
            "PatientID": "find-p2",
            "PatientName": "DOE^JOHN",
            "PatientBirthDate": "19700215",
            "PatientSex": "M",
        },
        [
            StudySpec(
                {
                    "StudyDate": "20040101",
                    "StudyTime": "0800",
                    "StudyDescription": "CT CHEST W/O",
                    "AccessionNumber": "",
                },
                [
                    SeriesSpec(
                        {"Modality": "CT", "SeriesDescription": "", "SeriesNumber": "3"}, _instances(2)
                    ),
                    SeriesSpec(
                        {"Modality": "PT", "SeriesDescription": "Second pass", "SeriesNumber": "4"},
                        _instances(1),
                    ),
                ],
            ),
            StudySpec(
                {"StudyDate": "", "StudyTime": "", "StudyDescription": ""},
                [SeriesSpec({"Modality": "ct", "SeriesNumber": "5"}, _instances(1))],
            ),
        ],
    ),
    PatientSpec(
        {"PatientID": "FIND_P3", "PatientName": "doe^jane", "PatientBirthDate": "", "PatientSex": "F"},
        [
            StudySpec(
                {"StudyDate": "20041231", "StudyTime": "120000"},
                [SeriesSpec({"Modality": "MR", "SeriesDescription": "second look"}, _instances(2))],
            ),
            StudySpec(
                {"StudyDate": "2004", "StudyDescription": "malformed date"},
                [SeriesSpec({"Modality": "US"}, _instances(1))],
            ),
        ],
    ),
    PatientSpec(
        {"PatientID": "FIND%P4", "PatientName": "Ærøskøbing^Åse", "PatientSex": "O"},
        [
            StudySpec(
                {"StudyDate": "20200229", "StudyDescription": "Ångström test", "InstitutionName": "Øresund"},
                [SeriesSpec({"Modality": "CR", "SeriesDescription": "Straße"}, _instances(1))],
            ),
        ],
        charset="ISO_IR 192",
    ),
    PatientSpec(
        {"PatientID": "FIND P5", "PatientName": "STAR*NAME^Q?"},
        [StudySpec({"StudyDate": "19991231"}, [SeriesSpec({"Modality": "DX"}, _instances(1))])],
    ),
    PatientSpec(
        {"PatientID": "FIND-P6"},
        [StudySpec({}, [SeriesSpec({}, _instances(1))])],
    ),
    PatientSpec(
        {"PatientID": "FIND-P7", "PatientName": "ΣΩΚΡΆΤΗΣ^ΑΛΈΞΗΣ", "PatientBirthDate": "20000101"},
        [
            StudySpec(
                {"StudyDate": "20100101", "StudyDescription": "σωκράτης"},
                [SeriesSpec({"Modality": "MR"}, _instances(1))],
            )
        ],
        charset="ISO_IR 192",
    ),
    PatientSpec(
        {"PatientID": "FIND-P8", "PatientName": "Grard^X", "PatientBirthDate": "19600101"},
        [
            StudySpec(
                {"StudyDate": "20040119", "StudyTime": "07"}, [SeriesSpec({"Modality": "CT"}, _instances(1))]
            )
        ],
    ),
]


def _dataset(charset: str, tags: dict[str, str]) -> Dataset:
    dataset = Dataset()
    dataset.SpecificCharacterSet = charset
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # malformed values are wanted here
        for keyword, value in tags.items():
            setattr(dataset, keyword, value)
    return dataset


LATE_SERIES: list[tuple[int, int, SeriesSpec]] = [
    (1, 1, SeriesSpec({"Modality": "NM", "SeriesDescription": "Late series"}, _instances(1))),
]
"""(patient, study, series) uploaded after everything else: a study whose series came at different times."""


def _series_files(p: int, s: int, r: int, series: SeriesSpec) -> list[bytes]:
    patient = PATIENTS[p - 1]
    study = patient.studies[s - 1]
    series_uid = f"{UID_ROOT}{p}.{s}.{r}"
    files = []
    for i, instance in enumerate(series.instances, start=1):
        tags = {**patient.tags, **study.tags, **series.tags, **instance}
        tags["StudyInstanceUID"] = f"{UID_ROOT}{p}.{s}"
        tags["SeriesInstanceUID"] = series_uid
        tags["SOPInstanceUID"] = f"{series_uid}.{i}"
        tags["SOPClassUID"] = MR_IMAGE_STORAGE if tags.get("Modality") == "MR" else CT_IMAGE_STORAGE
        files.append(_file(_dataset(patient.charset, tags)))
    return files


def corpus() -> list[bytes]:
    """The DICOM files of the corpus, in upload order."""
    files: list[bytes] = []
    for p, patient in enumerate(PATIENTS, start=1):
        for s, study in enumerate(patient.studies, start=1):
            for r, series in enumerate(study.series, start=1):
                files += _series_files(p, s, r, series)
    for p, s, series in LATE_SERIES:
        files += _series_files(p, s, len(PATIENTS[p - 1].studies[s - 1].series) + 1, series)
    return files


def _file(dataset: Dataset) -> bytes:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = dataset.SOPClassUID
    meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset.file_meta = meta
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dcmwrite(buffer, dataset, enforce_file_format=True)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def stored(pair: ServerPair) -> ServerPair:
    """Both servers holding the corpus, uploaded in the same order, every resource stable."""
    for number, data in enumerate(corpus()):
        orthanc, fastpacs = pair.send(Call(f"upload {number}", "POST", "/instances", body=data))
        assert orthanc.status == fastpacs.status == 200, (orthanc.content, fastpacs.content)
    pair.wait_until_stable()
    return pair


def find(name: str, body: dict[str, Any] | bytes) -> Call:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Call(f"find {name}", "POST", "/tools/find", body=content)


def study(query: dict[str, str], **options: Any) -> dict[str, Any]:
    return {"Level": "Study", "Query": query, **options}


def series(query: dict[str, str], **options: Any) -> dict[str, Any]:
    return {"Level": "Series", "Query": query, **options}


def patient(query: dict[str, str], **options: Any) -> dict[str, Any]:
    return {"Level": "Patient", "Query": query, **options}


def instance(query: dict[str, str], **options: Any) -> dict[str, Any]:
    return {"Level": "Instance", "Query": query, **options}


MATCHING = [
    # every level, no constraint; level names as Orthanc reads them
    *(
        find(f"all {level}", {"Level": level, "Query": {}})
        for level in ("Patient", "Study", "Series", "Instance")
    ),
    *(
        find(f"level {name}", {"Level": name, "Query": {}, "Limit": 2})
        for name in ("study", "Studies", "images", "patients")
    ),
    # equality, case folding (accents, Greek), CaseSensitive
    find("patient id", patient({"PatientID": "FIND-P1"})),
    find("patient id lower", patient({"PatientID": "find-p1"})),
    find("patient id lower case-sensitive", patient({"PatientID": "find-p1"}, CaseSensitive=True)),
    find("patient id case-sensitive", patient({"PatientID": "find-p2"}, CaseSensitive=True)),
    find("patient id by tag", patient({"0010,0020": "FIND-P1"})),
    find("patient id by 8 hex digits", instance({"00100020": "FIND-P1"})),
    find("tag read like sscanf", study({"0010,0020 ": "FIND-P1"})),
    find("patient id underscore", patient({"PatientID": "FIND_P3"})),
    find("patient id underscore as space", patient({"PatientID": "FIND P3"})),
    find("patient id percent", patient({"PatientID": "FIND%P4"})),
    find("patient id space", patient({"PatientID": "FIND P5"})),
    find("patient id leading space", patient({"PatientID": " FIND-P1"})),
    find("patient id trailing space", patient({"PatientID": "FIND-P1 "})),
    find("name accented upper", patient({"PatientName": "GÉRARD^JEAN"})),
    find("name accent dropped", patient({"PatientName": "GRARD^JEAN"})),
    find("name accented lower wildcard", patient({"PatientName": "ærøskøbing*"})),
    find("name without accent", patient({"PatientName": "gerard*"})),
    find("name greek lower", patient({"PatientName": "σωκράτης*"})),
    find("description greek", study({"StudyDescription": "ΣΩΚΡΆΤΗΣ"})),
    find("description greek no tonos", study({"StudyDescription": "ΣΩΚΡΑΤΗΣ"})),
    find("description angstrom", study({"StudyDescription": "ångström*"})),
    find("institution exact", study({"InstitutionName": "Øresund"})),
    find("institution upper", study({"InstitutionName": "ØRESUND"})),
    find("institution lower non-ascii", study({"InstitutionName": "øRESUND"})),
    find("institution ascii lower", study({"InstitutionName": "jfk imaging center"})),
    find("description sharp s", series({"SeriesDescription": "STRAßE"})),
    find("description sharp s as ss", series({"SeriesDescription": "STRASSE"})),
    find("modality lower", series({"Modality": "ct"})),
    find("modality lower case-sensitive", series({"Modality": "ct"}, CaseSensitive=True)),
    find("sex lower", patient({"PatientSex": "m"})),
    find("accession", study({"AccessionNumber": "ACC_001"})),
    find("accession underscore as space", study({"AccessionNumber": "ACC 001"})),
    find("series number", series({"SeriesNumber": "1"})),
    find("series number range is text", series({"SeriesNumber": "1-5"})),
    find("sop instance uid", instance({"SOPInstanceUID": f"{UID_ROOT}1.1.1.2"})),
    find("study uid", study({"StudyInstanceUID": f"{UID_ROOT}1.1"})),
    find("study uid list", study({"StudyInstanceUID": f"{UID_ROOT}1.1\\{UID_ROOT}3.2\\1.2.3"})),
    # wildcards
    find("name prefix", study({"PatientName": "doe*"})),
    find("name question mark", patient({"PatientName": "doe^jan?"})),
    find("name inner star", patient({"PatientName": "G*rard*"})),
    find("name question for accent", patient({"PatientName": "G?rard*"})),
    find("name two questions for accent", patient({"PatientName": "G??rard*"})),
    find("name literal star", patient({"PatientName": "STAR*NAME^Q?"})),
    find("name suffix", series({"PatientName": "*jane"})),
    find("patient id question", patient({"PatientID": "FIND?P3"})),
    find("patient id prefix lower", patient({"PatientID": "find*"})),
    find("institution question", study({"InstitutionName": "?resund"})),
    find("institution two questions", study({"InstitutionName": "??resund"})),
    find("institution star", study({"InstitutionName": "*resund"})),
    find("institution question star", study({"InstitutionName": "?*resund"})),
    find("description question sharp s", series({"SeriesDescription": "stra?e"})),
    find("description two questions sharp s", series({"SeriesDescription": "stra??e"})),
    find("accession prefix", study({"AccessionNumber": "acc*"})),
    find("accession percent literal", study({"AccessionNumber": "acc%*"})),
    find("star alone: has the tag", study({"StudyDescription": "*"})),
    find("star alone on empty values", study({"AccessionNumber": "*"})),
    find("star alone patient sex", patient({"PatientSex": "*"})),
    find("wildcard case-sensitive", study({"PatientName": "DOE*"}, CaseSensitive=True)),
    # universal matching
    find("empty value", study({"AccessionNumber": ""})),
    find("empty value unknown tag", instance({"NoSuchTag": ""})),
    find("empty birth date", patient({"PatientBirthDate": ""})),
    # lists
    find("modality list", series({"Modality": "CT\\MR"})),
    find("modality list wildcard items", series({"Modality": "C*\\M*"})),
    find("date list", study({"StudyDate": "20040119\\20050607"})),
    find("date wildcard list", study({"StudyDate": "2004*\\2005*"})),
    find("uid wildcard list", study({"StudyInstanceUID": "1.2*\\1.3"})),
    # ranges
    find("date range", study({"StudyDate": "20040101-20041231"})),
    find("date up to", study({"StudyDate": "-20040119"})),
    find("date from", study({"StudyDate": "20040120-"})),
    find("date exact", study({"StudyDate": "20040119"})),
    find("date malformed", study({"StudyDate": "2004"})),
    find("date open range", study({"StudyDate": "-"})),
    find("date reversed range", study({"StudyDate": "20041231-20040101"})),
    find("date range then list", study({"StudyDate": "20040101-20040131\\20050607"})),
    find("time range", study({"StudyTime": "07-08"})),
    find("time up to", study({"StudyTime": "-07"})),
    find("time from", study({"StudyTime": "12-"})),
    find("birth date up to", patient({"PatientBirthDate": "-19650101"})),
    find("series date range", series({"SeriesDate": "20040101-20041231"})),
    find("date range and name", study({"StudyDate": "20040101-20041231", "PatientName": "*^j*"})),
    # levels: ancestors' tags work, lower levels' main tags do not
    find("series by patient name", series({"PatientName": "*JANE"})),
    find("instance by study date", instance({"StudyDate": "20040119"})),
    find("instance by modality", instance({"Modality": "MR"})),
    find("study by series description", study({"SeriesDescription": "*"})),
    find("study by modality", study({"Modality": "CT"})),
    find("series by instance number", series({"InstanceNumber": "2"})),
    find("patient by study date", patient({"StudyDate": "20040119"})),
    # ModalitiesInStudy
    find("modalities in study", study({"ModalitiesInStudy": "MR"})),
    find("modalities in study list", study({"ModalitiesInStudy": "CT\\MR"})),
    find("modalities in study lower", study({"ModalitiesInStudy": "ct\\mr"})),
    find("modalities in study case-sensitive", study({"ModalitiesInStudy": "ct"}, CaseSensitive=True)),
    find("modalities in study wildcard", study({"ModalitiesInStudy": "C*"})),
    find("modalities in study question", study({"ModalitiesInStudy": "C?"})),
    find("modalities in study wildcard list", study({"ModalitiesInStudy": "C*\\M*"})),
    find("modalities in study star", study({"ModalitiesInStudy": "*"})),
    find("modalities in study and date", study({"ModalitiesInStudy": "CT\\XX", "StudyDate": "20040119"})),
    find("modalities in study, insertion order", study({"ModalitiesInStudy": "NM\\DX"})),
    *(
        find(
            f"modalities in study since {since} limit {limit}",
            study({"ModalitiesInStudy": "NM\\DX\\MR"}, Since=since, Limit=limit),
        )
        for since, limit in ((0, 2), (1, 0), (1, 1), (1, 2), (2, 5), (3, 4), (4, 9))
    ),
    find(
        "modalities in study expand paged", study({"ModalitiesInStudy": "*"}, Expand=True, Since=1, Limit=3)
    ),
    find("modalities in late series and file", study({"ModalitiesInStudy": "NM", "ContentDate": "20040119"})),
    find("modalities at series level", series({"ModalitiesInStudy": "CT"})),
    find("modalities at patient level", patient({"ModalitiesInStudy": "CT"})),
    # tags that are not main tags: read from the first instance
    find("creator uid", instance({"InstanceCreatorUID": "1.3.6.1.4.1.5962.3"})),
    find("creator uid at study", study({"InstanceCreatorUID": "1.3.6.1.4.1.5962.99"})),
    find("creator uid at series", series({"InstanceCreatorUID": "1.3.6.1.4.1.5962.3"})),
    find("creator uid at patient, first instance", patient({"InstanceCreatorUID": "1.3.6.1.4.1.5962.99"})),
    find("sop class uid", instance({"SOPClassUID": "1.2.840.10008.5.1.4.1.1.4"})),
    find("image type whole", instance({"ImageType": "ORIGINAL\\PRIMARY\\AXIAL"})),
    find("image type prefix", instance({"ImageType": "ORIGINAL*"})),
    find("image type lower", instance({"ImageType": "derived*"})),
    find("content date range", instance({"ContentDate": "20040120-"})),
    find("content date at study: first instance", study({"ContentDate": "20040120"})),
    find("content date at patient", patient({"ContentDate": "20040119"})),
    find("slice thickness text", instance({"SliceThickness": "5.0"})),
    find("slice thickness number", instance({"SliceThickness": "5"})),
    find("performer accent folded", instance({"PerformingPhysicianName": "ørsted*"})),
    find("performer question is a byte", instance({"PerformingPhysicianName": "?rsted*"})),
    find("performer two questions", instance({"PerformingPhysicianName": "??rsted*"})),
    find(
        "performer case-sensitive", instance({"PerformingPhysicianName": "Ørsted^hans"}, CaseSensitive=True)
    ),
    find("sequence tag", instance({"ReferencedImageSequence": "x"})),
    find("private tag", instance({"0009,0010": "x"})),
    find("retired name", study({"RETIRED_OtherPatientIDs": "x"})),
    find(
        "lower main tag read from instance", study({"SeriesDescription": "Chest*", "ContentDate": "20040119"})
    ),
    find(
        "lower main tag of another series", study({"SeriesDescription": "Report", "ContentDate": "20040120"})
    ),
    find("series tag read from first instance", series({"InstanceNumber": "2", "ContentDate": "20040119"})),
    find("modality read from first instance", study({"Modality": "SR", "ContentDate": "20040119"})),
    find(
        "modalities then first instance of series",
        study({"ModalitiesInStudy": "SR", "ContentDate": "20040120"}),
    ),
    find("modalities, first instance only", study({"ModalitiesInStudy": "MR", "ContentDate": "20050608"})),
    find(
        "modalities, any matching series", study({"ModalitiesInStudy": "CT\\SR", "ContentDate": "20040120"})
    ),
    find("modalities star and file", study({"ModalitiesInStudy": "*", "ContentDate": "20040119"})),
    find(
        "study tag and file at patient",
        patient({"StudyDescription": "Knee*", "InstanceCreatorUID": "1.3.6.1.4.1.5962.99"}),
    ),
    # paging and Expand
    find("limit", instance({}, Limit=2)),
    find("since limit", instance({}, Since=1, Limit=2)),
    find("since only", instance({}, Since=3)),
    find("since past the end", study({}, Since=100)),
    find("limit zero", study({"PatientID": "FIND-P1"}, Limit=0)),
    find("studies paged", study({"StudyDate": "-20201231"}, Since=2, Limit=3)),
    find("paged with file reads", instance({"ContentDate": "20040101-"}, Since=1, Limit=2)),
    *(
        find(f"expand {level}", {"Level": level, "Query": {}, "Expand": True})
        for level in ("Patient", "Study", "Series", "Instance")
    ),
    find("expand paged", series({"Modality": "CT\\MR"}, Expand=True, Since=1, Limit=2)),
    find("expand as number", study({"PatientID": "FIND-P1"}, Expand=1)),
    find("expand null", study({"PatientID": "FIND-P1"}, Expand=None)),
    find("query null", {"Level": "Study", "Query": None}),
    find("unknown fields ignored", study({"PatientID": "FIND-P1"}, Full=True, Unknown=1)),
    find("expand full", study({"PatientID": "FIND-P1"}, Expand=True, Full=True)),
    find("expand short", series({"Modality": "CT\\MR"}, Expand=True, Short=True)),
    find("expand short wins over full", study({"PatientID": "FIND-P1"}, Expand=True, Full=True, Short=True)),
    find("expand full false", instance({"ContentDate": "20040101-"}, Expand=True, Full=False)),
]

ERRORS = [
    find("not json", b"{not json"),
    find("array body", b"[]"),
    find("string body", b'"x"'),
    find("empty body", b""),
    find("no level", {"Query": {}}),
    find("level not a string", {"Level": 5, "Query": {}}),
    find("no query", {"Level": "Study"}),
    find("no query, bad level", {"Level": "Foo"}),
    find("bad level", {"Level": "Foo", "Query": {}}),
    find("bad level before tags", {"Level": "Foo", "Query": {"AAA": "x"}}),
    find("query a string", {"Level": "Study", "Query": "x"}),
    find("query an array", {"Level": "Study", "Query": []}),
    find("case-sensitive not boolean", study({}, CaseSensitive="yes")),
    find("case-sensitive a number", study({}, CaseSensitive=1)),
    find("case-sensitive checked before limit", study({}, CaseSensitive="x", Limit="x")),
    find("limit a string", study({}, Limit="2")),
    find("limit negative", study({}, Limit=-1)),
    find("limit real", study({}, Limit=2.5)),
    find("limit real integral", study({}, Limit=2.0)),
    find("limit boolean", study({}, Limit=True)),
    find("limit null", study({}, Limit=None)),
    find("limit beyond 32 bits", study({}, Limit=3_000_000_000)),
    find("limit beyond 64 bits", study({}, Limit=18_446_744_073_709_551_615)),
    find("since a string", study({}, Since="2")),
    find("since negative", study({}, Since=-1)),
    find("since beyond 32 bits", study({}, Since=2_147_483_648)),
    find("limit checked before since", study({}, Since="x", Limit="x")),
    find("expand a string", study({}, Expand="yes")),
    find("expand an array", study({}, Expand=[])),
    find("full a number", study({}, Expand=True, Full=1)),
    find("short a string", study({}, Short="yes")),
    find("value a number", study({"PatientID": 5})),  # type: ignore[dict-item]
    find("value null", study({"PatientID": None})),  # type: ignore[dict-item]
    find("value a list", study({"PatientID": ["a"]})),  # type: ignore[dict-item]
    find("members in sorted order", study({"ZZZ": "x", "PatientID": 5})),  # type: ignore[dict-item]
    find("unknown tag sorted first", study({"AAA": "x", "PatientID": 5})),  # type: ignore[dict-item]
    find("unknown tag", study({"NoSuchTag": "x"})),
    find("orthanc's own name is not dcmtk's", study({"OtherPatientIDs": "x"})),
    find("tag in parentheses", study({"(0010,0020)": "x"})),
    find("wildcard on uid", study({"StudyInstanceUID": "1.2.826.*"})),
    find("wildcard on non-main uid", instance({"InstanceCreatorUID": "*"})),
    find("wildcard on date", study({"StudyDate": "2004*"})),
    find("star on date", study({"StudyDate": "*"})),
    find("wildcard in date range", study({"StudyDate": "2004*-2005"})),
    find("wildcard on number", series({"SeriesNumber": "1*"})),
    find("wildcard before a later type error", study({"StudyDate": "2004*", "ZZ": 5})),  # type: ignore[dict-item]
    Call("find GET", "GET", "/tools/find"),
]


@pytest.mark.parametrize("call", MATCHING, ids=str)
def test_matching(stored: ServerPair, call: Call) -> None:
    check = stored.checker()
    check.compare(call)
    check.verdict()


@pytest.mark.parametrize("call", ERRORS, ids=str)
def test_errors(stored: ServerPair, call: Call) -> None:
    check = stored.checker()
    check.compare(call)
    check.verdict()
