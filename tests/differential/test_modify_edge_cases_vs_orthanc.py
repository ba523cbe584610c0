"""Edge cases of /modify and /anonymize compared with Orthanc 1.10.1 (a fresh-eyes probe).

What tests/differential/test_modify_vs_orthanc.py does not cover: paths into
sequences (``Seq[0].Tag``, ``Seq[*].Tag``) and their syntax errors, private
attributes with and without ``PrivateCreator``, values that do not fit their
VR (binary numbers with spaces, several values, empty, out of range), text
outside the file's character set and a replaced SpecificCharacterSet, the
file meta group (which a request cannot change), malformed options,
transcoding to compressed syntaxes (instances of mixed transfer syntaxes
too), a study modified twice, every UID kept twice, the rules of a level
checked by the job of an asynchronous request, the generated names a refused
anonymization consumes, and every pydicom test file both servers store
(group lengths, big endian, encapsulated pixels...) modified and anonymized.

Compared by structure, with the rules and helpers of test_modify_vs_orthanc.py
(generated UIDs and IDs become placeholders); modified files are compared tag
by tag, new resources through their tags and metadata, jobs through their JSON.
"""

import io

import pydicom
import pytest

from tests.differential.data import CHARSET_FILES_ROOT, TEST_FILES, test_file
from tests.differential.harness import Call, ServerPair, get
from tests.differential.test_bulk_modify_vs_orthanc import _job_when_done
from tests.differential.test_modify_vs_orthanc import StructureChecker, known_ids, nested_file, post

pytestmark = pytest.mark.reference

FILES = (
    "CT_small.dcm",
    "MR_small.dcm",
    "SC_rgb_small_odd.dcm",
    "SC_rgb_jpeg_dcmtk.dcm",
    "SC_rgb_rle_2frame.dcm",
)
CHARSET_FILES = ("chrH31.dcm", "chrFrenMulti.dcm", "chrX1.dcm", "chrRuss.dcm")


@pytest.fixture(scope="module")
def stored(pair: ServerPair) -> dict[str, dict]:
    """File name → Orthanc's upload answer, the same files on both servers."""
    files = {name: test_file(name).read_bytes() for name in FILES}
    files |= {name: (CHARSET_FILES_ROOT / name).read_bytes() for name in CHARSET_FILES}
    files["nested"] = nested_file()
    return pair.upload_all(files)


def _instance_calls(
    check: StructureChecker, stored: dict, operation: str, names: tuple, bodies: dict
) -> None:
    for name in names:
        for option, body in bodies.items():
            path = f"/instances/{stored[name]['ID']}/{operation}"
            check.exchange(post(f"{operation} edge {option} {name}", path, body))


PATHS = {
    "replace-item": {"Replace": {"ReferencedImageSequence[0].ReferencedSOPInstanceUID": "1.2.3"}},
    "replace-every-item": {
        "Replace": {"ReferencedStudySequence[*].ReferencedImageSequence[*].PatientName": "X"}
    },
    "replace-identifier-in-item": {"Replace": {"ReferencedStudySequence[0].StudyInstanceUID": "1.2.3"}},
    "replace-sequence-in-item": {
        "Replace": {
            "ReferencedStudySequence[0].ReferencedImageSequence": [{"ReferencedSOPInstanceUID": "1.2"}]
        }
    },
    "replace-missing-item": {"Replace": {"ReferencedStudySequence[5].InstitutionName": "A"}},
    "replace-missing-sequence": {"Replace": {"ReferencedPatientSequence[0].PatientName": "A"}},
    "remove-every-item": {"Remove": ["ReferencedStudySequence[*].InstitutionName"]},
    "remove-missing-item": {"Remove": ["ReferencedStudySequence[5].InstitutionName"]},
    "keep-item": {"Keep": ["ReferencedStudySequence[0].InstitutionName"]},
    "spaces": {"Replace": {" ReferencedStudySequence [ 0 ] . InstitutionName ": "S"}},
    "hexadecimal": {"Remove": ["0008,1110[0].0008,0080"]},
    "parenthesised": {"Replace": {"(0008,1110)[0].(0008,0080)": "P", "(0010,0010)": "Paren^Name"}},
    "file-meta-in-item": {"Replace": {"ReferencedStudySequence[0].TransferSyntaxUID": "1.2"}},
    # Syntax errors: each of Orthanc's messages, and "Unknown DICOM tag" (500) where it gives that.
    "no-index": {"Replace": {"ReferencedStudySequence.PatientName": "A"}},
    "bad-index": {"Replace": {"ReferencedStudySequence[x].PatientName": "A"}},
    "negative-index": {"Remove": ["ReferencedStudySequence[-1].PatientName"]},
    "huge-index": {"Remove": ["ReferencedStudySequence[99999999999999999999].PatientName"]},
    "index-5000-digits": {"Remove": [f"ReferencedStudySequence[{'9' * 5000}].PatientName"]},
    "index-above-int": {"Remove": ["ReferencedStudySequence[2147483648].PatientName"]},
    "no-sequence": {"Remove": ["[0].PatientName"]},
    "unclosed-index": {"Keep": ["ReferencedStudySequence[0.PatientName"]},
    "nothing-after-index": {"Keep": ["ReferencedStudySequence[0]x.PatientName"]},
    "unknown-sequence": {"Replace": {"NoSuchSequence[0].PatientName": "A"}},
    "unknown-final-tag": {"Replace": {"ReferencedStudySequence[0].NoSuchTag": "A"}},
    "empty-final-tag": {"Remove": ["ReferencedStudySequence[0]."]},
    "no-dot": {"Replace": {"ReferencedStudySequence[0]PatientName": "A"}},
}
PRIVATE = {
    "replace-with-creator": {"Replace": {"0009,1001": "v"}, "PrivateCreator": "ACME"},
    "create-without-creator": {"Replace": {"0011,1001": "v"}},
    "create-with-creator": {"Replace": {"0011,1001": "v"}, "PrivateCreator": "MINE"},
    "create-creator-element": {"Replace": {"0011,0010": "MINE", "0011,1001": "v"}},
    "remove-element": {"Remove": ["0009,1001"]},
    "remove-creator": {"Remove": ["0009,0010"]},
    "remove-all-keep-creator": {"RemovePrivateTags": True, "Keep": ["0009,0010"]},
    "replace-in-other-creator-block": {"Replace": {"0011,1010": "v"}, "PrivateCreator": "OTHER"},
}
VALUES = {
    "us-spaces": {"Replace": {"Rows": " 12 "}},
    "us-several": {"Replace": {"Rows": "1\\2"}},
    "us-empty": {"Replace": {"Rows": ""}},
    "us-plus": {"Replace": {"Rows": "+5"}},
    "us-negative": {"Replace": {"Rows": "-1"}},
    "us-too-large": {"Replace": {"Rows": "70000"}},
    "us-5000-digits": {"Replace": {"Rows": "9" * 5000}},
    "ss-empty": {"Replace": {"SmallestImagePixelValue": ""}},
    "ss-too-small": {"Replace": {"SmallestImagePixelValue": "-70000"}},
    "sl-negative": {"Replace": {"ReferencePixelX0": "-1"}},
    "fd-spaces": {"Replace": {"RecommendedDisplayFrameRateInFloat": " 1.5"}},
    "fd-several": {"Replace": {"RecommendedDisplayFrameRateInFloat": "1.5\\2"}},
    "fd-empty": {"Replace": {"RecommendedDisplayFrameRateInFloat": ""}},
    "fd-overflow": {"Replace": {"RecommendedDisplayFrameRateInFloat": "1e400"}},
    "fd-exponent": {"Replace": {"RecommendedDisplayFrameRateInFloat": "-2.5e3"}},
    "fl-overflow": {"Replace": {"ExaminedBodyThickness": "1e39"}},
    "at-comma": {"Replace": {"FrameIncrementPointer": "0018,1063"}},
    "at-bad": {"Replace": {"FrameIncrementPointer": "zz"}},
    "at-bad-nine-digits": {"Replace": {"FrameIncrementPointer": "123456789"}},
    "at-bad-negative": {"Replace": {"FrameIncrementPointer": "-1"}},
    "at-name": {"Replace": {"FrameIncrementPointer": "FrameTime"}},
    "at-eight-digits": {"Replace": {"FrameIncrementPointer": "00181065"}},
    "da-bad": {"Replace": {"StudyDate": "x"}},
    "is-decimal": {"Replace": {"SeriesNumber": "1.5"}},
    "ds-bad": {"Replace": {"PatientWeight": "abc"}},
    "lo-too-long": {"Replace": {"InstitutionName": "A" * 100}},
    "ui-bad": {"Replace": {"FrameOfReferenceUID": "abc.def"}},
    "ob-text": {"Replace": {"0029,1010": "abc"}},
    "data-uri-rows": {"Replace": {"Rows": "data:application/octet-stream;base64,AAE="}},
    "data-uri-number": {"Replace": {"Rows": "data:application/octet-stream;base64,MTI="}},
    "data-uri-bad": {"Replace": {"PatientName": "data:application/octet-stream;base64,!!"}},
    "lo-70000": {"Replace": {"InstitutionName": "L" * 70000}},
    "pn-70000": {"Replace": {"PatientName": "P" * 70000}},
    "lt-70000": {"Replace": {"0040,1400": "T" * 70000}},
}
CHARACTERS = {
    "latin-1": {"Replace": {"PatientName": "Müller^Jürgen", "StudyDescription": "Étude"}},
    "utf-8-and-new-set": {"Replace": {"SpecificCharacterSet": "ISO_IR 192", "PatientName": "Zoë^山田"}},
    "latin-1-and-new-set": {"Replace": {"SpecificCharacterSet": "ISO_IR 100", "InstitutionName": "Hôpital"}},
    "new-set-only": {"Replace": {"SpecificCharacterSet": "ISO_IR 192"}},
    "set-removed": {"Remove": ["SpecificCharacterSet"]},
    "set-removed-and-ascii": {"Remove": ["SpecificCharacterSet"], "Replace": {"InstitutionName": "Plain"}},
    "sequence-item": {
        "Replace": {"OtherPatientIDsSequence": [{"PatientID": "é1", "IssuerOfPatientID": "Hôpital"}]}
    },
    "unencodable": {"Replace": {"PatientName": "山田^太郎", "InstitutionName": "Больница"}},
}
META = {
    "transfer-syntax": {"Replace": {"TransferSyntaxUID": "1.2.840.10008.1.2"}, "Force": True},
    "implementation-name": {"Replace": {"ImplementationVersionName": "X"}},
    "remove-implementation-name": {"Remove": ["0002,0013"]},
}
MALFORMED = {
    "replace-list": {"Replace": {"PatientName": ["a"]}},
    "replace-object": {"Replace": {"PatientName": {"a": 1}}},
    "replace-boolean": {"Replace": {"PatientName": True}},
    "replace-private-number": {"Replace": {"0009,1001": 5}},
    "remove-string": {"Remove": "PatientName"},
    "remove-number": {"Remove": [1]},
    "remove-unknown": {"Remove": ["NoSuchTag"]},
    "keep-string": {"Keep": "PatientName"},
    "keep-unknown": {"Keep": ["NoSuchTag"]},
    "remove-private-string": {"RemovePrivateTags": "yes"},
    "transcode-number": {"Transcode": 5},
    "asynchronous-instance": {"Asynchronous": True},
    "unknown-option": {"Foo": 1},
    "dicom-version": {"DicomVersion": "2008"},
    "keep-private-tags": {"KeepPrivateTags": True},
    "remove-pixels": {"Remove": ["PixelData"]},
    "pixel-data-text": {"Replace": {"PixelData": "abc"}},
    "sequence-null": {"Replace": {"ReferencedStudySequence": None}},
    "sequence-empty": {"Replace": {"ReferencedStudySequence": []}},
    "sequence-items-not-objects": {"Replace": {"ReferencedStudySequence": ["x"]}},
    "sequence-item-path": {
        "Replace": {"ReferencedStudySequence": [{"ReferencedImageSequence[0].PatientName": "x"}]}
    },
    "sequence-item-unknown-tag": {"Replace": {"ReferencedStudySequence": [{"NoSuchTag": "x"}]}},
    "private-sequence": {"Replace": {"0009,1002": [{"PatientName": "x"}]}, "PrivateCreator": "ACME"},
    "replace-and-remove": {"Replace": {"PatientName": "x"}, "Remove": ["PatientName"]},
    "remove-and-keep": {"Remove": ["InstitutionName"], "Keep": ["InstitutionName"]},
    "private-creator-null": {"PrivateCreator": None, "Replace": {"0011,1001": "x"}},
    "transcode-null": {"Transcode": None},
    "nulls": {"Keep": None, "Remove": None, "Replace": None, "Force": None, "KeepSource": None},
    "body-bom": b"\xef\xbb\xbf{}",
    "body-trailing-text": b"{}garbage",
    "body-invalid-utf-8": b'{"Replace": {"PatientName": "\xff\xfe"}}',
    "body-nul": b'{"Replace": {"PatientName": "a\\u0000b"}}',
}
ANONYMIZATIONS = {
    "keep-item": {"Keep": ["ReferencedStudySequence[0].InstitutionName"]},
    "keep-every-item": {"Keep": ["ReferencedStudySequence[*].ReferencedSOPInstanceUID"]},
    "keep-private-element": {"Keep": ["0009,1001"]},
    "keep-private-block": {"Keep": ["0009,0010", "0009,1001"]},
    "private-creator": {"KeepPrivateTags": True, "Replace": {"0011,1001": "v"}, "PrivateCreator": "MINE"},
    "remove-item": {"Remove": ["ReferencedStudySequence[0].AccessionNumber"]},
    "replace-item": {"Replace": {"ReferencedStudySequence[0].AccessionNumber": "Z"}},
    "bad-path": {"Keep": ["ReferencedStudySequence.InstitutionName"]},
    "2021b": {"DicomVersion": "2021b"},
    "2019c": {"DicomVersion": "2019c"},
    "version-empty": {"DicomVersion": ""},
    "version-null": {"DicomVersion": None},
    "latin-1-name": {"Replace": {"PatientName": "Zoë^Ærø"}},
    "keep-private-string": {"KeepPrivateTags": "yes"},
    "force-number": {"Force": 1},
    "meta": {"Replace": {"TransferSyntaxUID": "1.2.840.10008.1.2"}},
    "keep-patient-id": {"Keep": ["PatientID"], "Force": True},
    "keep-patient-id-without-force": {"Keep": ["PatientID"]},
    "keep-deidentification-method": {"Keep": ["DeidentificationMethod"]},
}


def test_paths_into_sequences(pair: ServerPair, stored: dict[str, dict]) -> None:
    check = StructureChecker(pair, known_ids(stored))
    _instance_calls(check, stored, "modify", ("nested", "CT_small.dcm"), PATHS)
    check.verdict()


def test_paths_into_sequences_of_a_study(pair: ServerPair, stored: dict[str, dict]) -> None:
    check = StructureChecker(pair, known_ids(stored))
    study = stored["nested"]["ParentStudy"]
    for name, body in (
        ("study no-index", PATHS["no-index"]),
        ("study every-item", PATHS["remove-every-item"]),
    ):
        orthanc, fastpacs = check.exchange(post(f"modify edge {name}", f"/studies/{study}/modify", body))
        check.compare_new_resource(f"modify edge {name}", orthanc, fastpacs)
    check.verdict()


KNOWN_CREATORS = {
    "known-creator-cs": {"Replace": {"0029,1008": "IMAGE NUM 4"}, "PrivateCreator": "SIEMENS CSA HEADER"},
    "known-creator-us": {"Replace": {"0009,1025": "7"}, "PrivateCreator": "GEMS_ACQU_01"},
    "known-creator-us-text": {"Replace": {"0009,1025": "x"}, "PrivateCreator": "GEMS_ACQU_01"},
    "known-creator-sl": {"Replace": {"0019,1002": "-7"}, "PrivateCreator": "GEMS_ACQU_01"},
    "known-creator-ob": {"Replace": {"0029,1010": "abc"}, "PrivateCreator": "SIEMENS CSA HEADER"},
}
"""Private attributes a file without their block gets, whose VR the private dictionaries give."""


def test_private_attributes(pair: ServerPair, stored: dict[str, dict]) -> None:
    check = StructureChecker(pair, known_ids(stored))
    _instance_calls(check, stored, "modify", ("nested", "CT_small.dcm"), PRIVATE)
    _instance_calls(check, stored, "modify", ("chrX1.dcm",), KNOWN_CREATORS)
    check.verdict()


def test_values_that_do_not_fit(pair: ServerPair, stored: dict[str, dict]) -> None:
    check = StructureChecker(pair, known_ids(stored))
    _instance_calls(check, stored, "modify", ("CT_small.dcm",), VALUES)
    check.verdict()


def test_character_sets(pair: ServerPair, stored: dict[str, dict]) -> None:
    check = StructureChecker(pair, known_ids(stored))
    _instance_calls(check, stored, "modify", ("CT_small.dcm", *CHARSET_FILES), CHARACTERS)
    check.verdict()


def test_file_meta_and_malformed_options(pair: ServerPair, stored: dict[str, dict]) -> None:
    check = StructureChecker(pair, known_ids(stored))
    _instance_calls(check, stored, "modify", ("CT_small.dcm", "SC_rgb_jpeg_dcmtk.dcm"), META)
    _instance_calls(check, stored, "modify", ("nested",), MALFORMED)
    check.verdict()


def test_anonymization_options(pair: ServerPair, stored: dict[str, dict]) -> None:
    check = StructureChecker(pair, known_ids(stored))
    _instance_calls(check, stored, "anonymize", ("nested", "chrH31.dcm", "chrX1.dcm"), ANONYMIZATIONS)
    check.verdict()


TRANSCODINGS = {
    "explicit": "1.2.840.10008.1.2.1",
    "big-endian": "1.2.840.10008.1.2.2",
    "deflated": "1.2.840.10008.1.2.1.99",
    "jpeg-baseline": "1.2.840.10008.1.2.4.50",
    "jpeg-lossless": "1.2.840.10008.1.2.4.70",
    "jpeg-lossless-57": "1.2.840.10008.1.2.4.57",
    "jpeg-ls": "1.2.840.10008.1.2.4.80",
    "jpeg-2000": "1.2.840.10008.1.2.4.90",
    "rle": "1.2.840.10008.1.2.5",
}


def test_transcoding(pair: ServerPair, stored: dict[str, dict]) -> None:
    """Transcode to each syntax, from files of several syntaxes and without pixels; a series of instances
    in three syntaxes (raw, JPEG, RLE), at once."""
    check = StructureChecker(pair, known_ids(stored))
    bodies = {name: {"Transcode": syntax} for name, syntax in TRANSCODINGS.items()}
    _instance_calls(check, stored, "modify", ("CT_small.dcm", "SC_rgb_jpeg_dcmtk.dcm", "chrX1.dcm"), bodies)
    series = stored["SC_rgb_jpeg_dcmtk.dcm"]["ParentSeries"]
    for name in ("explicit", "jpeg-baseline"):
        call = post(f"modify edge transcode series {name}", f"/series/{series}/modify", bodies[name])
        orthanc, fastpacs = check.exchange(call)
        check.compare_new_resource(call.name, orthanc, fastpacs)
    check.verdict()


def test_resources_modified_twice(pair: ServerPair, stored: dict[str, dict]) -> None:
    """A study modified, then its copy; every UID kept twice (the same instances: Orthanc's job fails)."""
    check = StructureChecker(pair, known_ids(stored))
    study = stored["MR_small.dcm"]["ParentStudy"]
    orthanc, fastpacs = check.exchange(
        post("modify edge study once", f"/studies/{study}/modify", {"Replace": {"StudyDescription": "Once"}})
    )
    check.compare_new_resource("modify edge study once", orthanc, fastpacs)
    twice = {"Replace": {"StudyDescription": "Twice"}}
    answers = (
        pair.orthanc_client.post(f"/studies/{orthanc['ID']}/modify", json=twice),
        pair.fastpacs_client.post(f"/studies/{fastpacs['ID']}/modify", json=twice),
    )
    check.compare_structures(
        get("modify edge study twice", ""), answers[0].json(), answers[1].json()
    )  # its own copy
    check.compare_new_resource("modify edge study twice", answers[0].json(), answers[1].json())
    every_uid = ["StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"]
    for number in (1, 2):
        body = {"Replace": {"StudyDescription": f"Kept {number}"}, "Keep": every_uid, "Force": True}
        call = post(f"modify edge keep every uid {number}", f"/studies/{study}/modify", body)
        orthanc, fastpacs = check.exchange(call)
        check.compare_new_resource(call.name, orthanc, fastpacs)
    check.verdict()


def test_asynchronous_jobs(pair: ServerPair, stored: dict[str, dict]) -> None:
    """The job of an asynchronous request, its content or its error: the rules of a level are checked by
    the job (a 200 and a job that fails), the options' syntax and ``Force`` at once (400)."""
    check = StructureChecker(pair, known_ids(stored))
    study, series = stored["CT_small.dcm"]["ParentStudy"], stored["SC_rgb_jpeg_dcmtk.dcm"]["ParentSeries"]
    patient = stored["chrRuss.dcm"]["ParentPatient"]
    requests = [
        ("study modify", f"/studies/{study}/modify", {"Replace": {"StudyDescription": "Later"}}),
        ("series anonymize", f"/series/{series}/anonymize", {}),
        ("patient modify", f"/patients/{patient}/modify", {"Replace": {"PatientID": "LATER"}, "Force": True}),
        ("study patientid", f"/studies/{study}/modify", {"Replace": {"PatientID": "X"}, "Force": True}),
        ("series studyuid", f"/series/{series}/modify",
         {"Replace": {"StudyInstanceUID": "1.2"}, "Force": True}),
        ("patient no patientid", f"/patients/{patient}/modify", {"Replace": {"PatientName": "X"}}),
        ("force missing", f"/series/{series}/modify", {"Replace": {"StudyInstanceUID": "1.2"}}),
        ("bad path", f"/studies/{study}/modify", {"Remove": ["ReferencedStudySequence.PatientName"]}),
        ("anonymize keep patient id", f"/studies/{study}/anonymize", {"Keep": ["PatientID"], "Force": True}),
        ("bulk study patientid", "/tools/bulk-modify",
         {"Resources": [study], "Level": "Study", "Replace": {"PatientID": "X"}, "Force": True}),
    ]  # fmt: skip
    for name, path, body in requests:
        orthanc, fastpacs = check.exchange(post(f"async edge {name}", path, body | {"Asynchronous": True}))
        if not all(isinstance(answer, dict) and "Path" in answer for answer in (orthanc, fastpacs)):
            continue
        jobs = [
            _job_when_done(pair, server_get, answer["ID"])
            for server_get, answer in ((pair.orthanc_get, orthanc), (pair.fastpacs_get, fastpacs))
        ]
        check.compare_structures(get(f"async edge {name} job", ""), jobs[0], jobs[1])
        if "Path" in jobs[0]["Content"]:
            check.compare_new_resource(f"async edge {name} job", jobs[0]["Content"], jobs[1]["Content"])
    check.verdict()


def test_every_test_file(pair: ServerPair, stored: dict[str, dict]) -> None:
    """Every file of pydicom's test data that both servers store (old ACR-NEMA-like files with group
    lengths, big endian, deflated, encapsulated pixels labelled OW...), modified and anonymized."""
    check = StructureChecker(pair, known_ids(stored))
    bodies = {
        "modify": {"Replace": {"PatientName": "Sweep^Name", "InstitutionName": "I"}, "Remove": ["StudyDate"]},
        "anonymize": {},
    }
    compared = 0
    for path in TEST_FILES:
        orthanc, fastpacs = pair.send(
            Call(f"upload {path.name}", "POST", "/instances", body=path.read_bytes())
        )
        if orthanc.status != 200 or orthanc.json != fastpacs.json or orthanc.json["Status"] != "Success":
            continue  # stored before (the same instance), or stored differently: the upload tests' concern
        for operation, body in bodies.items():
            route = f"/instances/{orthanc.json['ID']}/{operation}"
            check.exchange(post(f"{operation} edge every file {path.name}", route, body))
        compared += 1
    assert compared >= 30, compared
    check.verdict()


def test_generated_names_after_a_refusal(pair: ServerPair, stored: dict[str, dict]) -> None:
    """An anonymization refused by the rule of the patient level (PatientID kept) consumes a generated
    name (``AnonymizedN``) in Orthanc, one refused while read (no Force) does not: the numbers of the
    names around them differ alike on both servers."""
    path = f"/instances/{stored['CT_small.dcm']['ID']}/anonymize"
    bodies = [{}, {"Keep": ["PatientID"], "Force": True}, {"Keep": ["PatientID"]}, {}]
    numbers: dict[str, list[int]] = {"orthanc": [], "fastpacs": []}
    for body in bodies:
        for server, answer in zip(numbers, pair.send(post("name", path, body)), strict=True):
            if answer.status == 200:
                name = str(pydicom.dcmread(io.BytesIO(answer.content)).PatientName)
                numbers[server].append(int(name.removeprefix("Anonymized")))
    assert len(numbers["orthanc"]) == 2, numbers
    gaps = {server: found[1] - found[0] for server, found in numbers.items()}
    assert gaps["orthanc"] == gaps["fastpacs"] == 2, numbers
