"""Hostile input, generated: every answer a clear 4xx (or a documented 2xx), never an unexplained 5xx.

Hypothesis generates, within a time budget, what a broken modality or an
attacker would send to one server:

- POST /instances: DICOM files built element by element with wrong VRs,
  lying and huge declared lengths, sequences nested hundreds deep, invalid
  UTF-8 under ISO_IR 192, odd transfer syntaxes, cut anywhere;
- ZIP uploads: entries with path traversal names, damaged archives, declared
  sizes that lie; plus real zip bombs (a gigabyte of zeros in one entry, and
  in thousands of small ones) against ``MaximumUploadSize``;
- C-STORE: the same generated datasets over pynetdicom associations;
- the JSON body of every POST and PUT route of the running app (enumerated
  from its /openapi.json): any JSON, objects with Orthanc's field names,
  invalid UTF-8, truncated and enormous documents;
- tag paths under /instances/{id}/content/ and random query parameters on
  every GET route.

A 5xx passes only where Orthanc 1.10.1 itself answers 500 with the same
error (ORTHANC-BEHAVIOUR.md §1, listed in ``ORTHANC_500S``) and fastpacs
did not log an unhandled exception; any "unhandled error" line in the
server's log fails the test. At the end the server must still answer, its
memory (whole process tree) must not have grown beyond a bound, the
instances stored before must be byte-identical and index and storage must
agree. C-STORE answers must be Success, 0xC000 (cannot understand) or 0xA700
(out of resources), never pynetdicom's 0xC211 (handler failure).

``FASTPACS_FUZZ_SECONDS`` sets the total budget of the generated cases
(default 40; the fixed cases, zip bombs and enormous bodies, add about 15 s).
"""

import hashlib
import io
import json
import re
import struct
import tempfile
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from benchmarks.procstats import ProcessTreeMonitor
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE, _config, build_context
from pynetdicom.sop_class import CTImageStorage

from fastpacs.net.tcp import NO_DELAY_HANDLERS
from fastpacs.testing import ServerProcess, fastpacs_server
from tests.conftest import Figures, pydicom_file
from tests.reliability_helpers import check_store, environment_number, megabytes, tree_memory

pytestmark = pytest.mark.slow

BUDGET = environment_number("FASTPACS_FUZZ_SECONDS", 40)
SHARES = {"dicom": 0.2, "zip": 0.12, "c-store": 0.15, "json": 0.33, "paths": 0.2}
"""How the budget is split between the kinds of input."""
EXAMPLES_PER_RUN = 15
MAXIMUM_UPLOAD_MB = 64
MEMORY_GROWTH_LIMIT = 300 * 1024 * 1024
"""The server tree may grow this much over the whole run (caches, pool workers warming up)."""

ORTHANC_500S = {
    27: "Unknown DICOM tag: Orthanc's answer to an unparsable tag name (find, modify, create-dicom, content)",
    2: "Not implemented yet: Orthanc's answer for pixel data it cannot decode (matlab, numpy, raw frames)",
    2031: "Cannot execute a Lua command: Orthanc answers 500 for a Lua error",
    9: "Error in the network protocol: Orthanc answers 500 when a modality cannot be reached",
    2015: "No acceptable presentation context: Orthanc's answer to a store a modality accepts nothing of",
    2018: "Cannot store an instance: Orthanc's answer to a modification keeping every UID of its source",
}
"""OrthancStatus of the 500 answers Orthanc 1.10.1 gives itself, with the reason fastpacs copies them."""
FIND_INTERNAL_ERROR = -1
"""/tools/find with a Query that is not an object: Orthanc answers its own 500 Internal error."""
DOCUMENTED_5XX = {503: "busy (MaximumPendingIngestSize): Retry-After", 507: "The file storage is full"}

CT_SMALL = pydicom_file("CT_small.dcm").read_bytes()
SEED_FILES = ["CT_small.dcm", "MR_small.dcm", "rtdose.dcm", "SC_rgb_rle_2frame.dcm"]


@dataclass
class Verdicts:
    """What the fuzzing saw, for the figures and the final assertions."""

    cases: dict[str, int] = field(default_factory=dict)
    statuses: dict[int, int] = field(default_factory=dict)
    server_errors: list[str] = field(default_factory=list)
    """The 5xx answers nothing documents (must stay empty)."""
    orthanc_500s: dict[int, int] = field(default_factory=dict)
    """OrthancStatus → count of the 500s Orthanc gives too."""
    dimse: dict[int, int] = field(default_factory=dict)
    routes: int = 0
    """POST and PUT routes whose bodies were fuzzed."""

    def count(self, kind: str) -> None:
        self.cases[kind] = self.cases.get(kind, 0) + 1

    def judge(self, kind: str, case: str, answer: httpx.Response) -> None:
        self.count(kind)
        status = answer.status_code
        self.statuses[status] = self.statuses.get(status, 0) + 1
        if status < 500 or status in DOCUMENTED_5XX:
            return
        orthanc_status = _orthanc_status(answer)
        path = answer.request.url.path
        if orthanc_status in ORTHANC_500S or (
            orthanc_status == FIND_INTERNAL_ERROR and path == "/tools/find"
        ):
            self.orthanc_500s[orthanc_status] = self.orthanc_500s.get(orthanc_status, 0) + 1
            return
        self.server_errors.append(f"{kind}: {case[:300]} -> {status} {answer.text[:300]}")


def _orthanc_status(answer: httpx.Response) -> int | None:
    try:
        return json.loads(answer.content).get("OrthancStatus")
    except (ValueError, AttributeError):
        return None


def run_for(seconds: float, target: Callable[[], None]) -> None:
    """Run a hypothesis test again and again (fresh random cases each time) until ``seconds`` pass."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        target()


FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES_PER_RUN,
    deadline=None,
    database=None,
    phases=[Phase.generate],
    suppress_health_check=list(HealthCheck),
)

# ----------------------------------------------------------------- DICOM files, element by element

VRS = [
    "AE", "AS", "AT", "CS", "DA", "DS", "DT", "FL", "FD", "IS", "LO", "LT", "OB", "OD", "OF", "OL",
    "OV", "OW", "PN", "SH", "SL", "SQ", "SS", "ST", "SV", "TM", "UC", "UI", "UL", "UN", "UR", "US",
    "UT", "UV",
]  # fmt: skip
LONG_LENGTH_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "UC", "UN", "UR", "UT", "SV", "UV"}
UNDEFINED = 0xFFFFFFFF
TRANSFER_SYNTAXES = [
    "1.2.840.10008.1.2.1",
    "1.2.840.10008.1.2",
    "1.2.840.10008.1.2.2",
    "1.2.840.10008.1.2.1.99",
    "1.2.840.10008.1.2.4.50",
    "1.2.840.10008.1.2.5",
    "9.9.9",
    "",
]
IDENTIFYING_TAGS = [(0x0010, 0x0020), (0x0020, 0x000D), (0x0020, 0x000E), (0x0008, 0x0018)]


def element(group: int, number: int, vr: str, value: bytes, length: int | None = None) -> bytes:
    """One explicit VR little endian element; ``length`` overrides the true length (to lie)."""
    declared = len(value) if length is None else length
    head = struct.pack("<HH", group, number) + vr.encode("latin-1")[:2].ljust(2, b" ")
    if vr in LONG_LENGTH_VRS or declared > 0xFFFF:
        return head + b"\0\0" + struct.pack("<I", declared & 0xFFFFFFFF) + value
    return head + struct.pack("<H", declared) + value


def sequence(group: int, number: int, depth: int, leaf: bytes) -> bytes:
    """A sequence nested ``depth`` deep, undefined lengths all the way, ``leaf`` in the innermost item."""
    body = leaf
    for _ in range(depth):
        item = struct.pack("<HHI", 0xFFFE, 0xE000, UNDEFINED) + body + struct.pack("<HHI", 0xFFFE, 0xE00D, 0)
        body = element(group, number, "SQ", b"", UNDEFINED) + item + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
    return body


def file_meta(transfer_syntax: str, sop_instance: str = "1.2.3.4") -> bytes:
    def ui(text: str) -> bytes:
        data = text.encode("latin-1", "replace")
        return data + b"\0" * (len(data) % 2)

    meta = (
        element(0x0002, 0x0001, "OB", b"\0\1")
        + element(0x0002, 0x0002, "UI", ui(CTImageStorage))
        + element(0x0002, 0x0003, "UI", ui(sop_instance))
        + element(0x0002, 0x0010, "UI", ui(transfer_syntax))
    )
    return b"\0" * 128 + b"DICM" + element(0x0002, 0x0000, "UL", struct.pack("<I", len(meta))) + meta


text_values = st.one_of(
    st.binary(max_size=64),
    st.text(max_size=40).map(lambda text: text.encode("utf-8", "surrogatepass")),
    st.sampled_from([b"\xff\xfe\xfd", b"\xc3\x28", b"\xed\xa0\x80", b"\xe2\x82", b"\x1b$B\x1b(B", b"\0" * 7]),
)


@st.composite
def hostile_elements(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["plain", "lying length", "huge length", "deep sequence", "wrong vr"]))
    group = draw(st.sampled_from([0x0008, 0x0010, 0x0018, 0x0020, 0x0028, 0x0029, 0x7FE0, 0xFFFE]))
    number = draw(st.integers(0, 0xFFFF))
    vr = draw(st.sampled_from([*VRS, "ZZ", "\0\0", "ob", "  "]))
    value = draw(text_values)
    if kind == "lying length":
        return element(group, number, vr, value, draw(st.integers(0, 0x10000)))
    if kind == "huge length":
        return element(group, number, vr, value, draw(st.sampled_from([0x7FFFFFFF, 0xFFFFFFF0, 0xFFFFFFFE])))
    if kind == "deep sequence":
        depth = draw(st.integers(1, 400))
        return sequence(group, number, depth, element(0x0010, 0x0010, "PN", value))
    if kind == "wrong vr":
        return element(0x0010, 0x0010, draw(st.sampled_from(["SQ", "US", "FD", "AT", "OB", "UN"])), value)
    return element(group, number, vr, value)


@st.composite
def hostile_dicom(draw: st.DrawFn, with_meta: bool = True) -> bytes:
    """A DICOM file (or its dataset alone) with the identifying tags and hostile elements among them."""
    uid = draw(st.from_regex(r"1\.2\.826\.0\.1\.3680043\.10\.1311\.9\.[0-9]{1,12}", fullmatch=True))
    charset = draw(st.sampled_from([b"ISO_IR 192", b"ISO_IR 100", b"ISO 2022 IR 87", b"\xff\xff", b""]))
    elements = [
        element(0x0008, 0x0005, "CS", charset + b" " * (len(charset) % 2)),
        element(0x0008, 0x0016, "UI", CTImageStorage.encode() + b"\0" * (len(CTImageStorage) % 2)),
    ]
    for group, number in IDENTIFYING_TAGS:
        if draw(st.integers(0, 9)):  # now and then one is missing
            value = (uid + f".{group}.{number}").encode()
            elements.append(
                element(group, number, "UI" if group != 0x0010 else "LO", value + b"\0" * (len(value) % 2))
            )
    elements += draw(st.lists(hostile_elements(), max_size=6))
    if draw(st.booleans()):
        elements.sort(key=lambda data: struct.unpack_from("<HH", data))
    dataset = b"".join(elements)
    data = file_meta(draw(st.sampled_from(TRANSFER_SYNTAXES)), uid) + dataset if with_meta else dataset
    if draw(st.integers(0, 3)) == 0:
        data = data[: draw(st.integers(0, len(data)))]
    return data


@st.composite
def mutated_ct(draw: st.DrawFn) -> bytes:
    """CT_small with bytes overwritten and cut: a real file slightly broken."""
    data = bytearray(CT_SMALL)
    for _ in range(draw(st.integers(1, 12))):
        data[draw(st.integers(128, 3000))] = draw(st.integers(0, 255))
    return bytes(data[: draw(st.integers(132, len(data)))])


# ----------------------------------------------------------------- ZIP archives

TRAVERSAL_NAMES = [
    "../../../../tmp/fastpacs-fuzz-escape.dcm",
    "/etc/fastpacs-fuzz.dcm",
    "a/../../../b.dcm",
    "C:\\Windows\\fuzz.dcm",
    "..\\..\\fuzz.dcm",
    "nul\0byte.dcm",
    "ü" * 200,
    "",
]


@st.composite
def hostile_zip(draw: st.DrawFn) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for _ in range(draw(st.integers(0, 5))):
            name = draw(st.one_of(st.sampled_from(TRAVERSAL_NAMES), st.text(min_size=1, max_size=30)))
            content = draw(
                st.one_of(st.just(CT_SMALL), hostile_dicom(), mutated_ct(), st.binary(max_size=200))
            )
            method = draw(st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]))
            info = zipfile.ZipInfo(name.replace("\0", "_") or "x")
            info.compress_type = method
            archive.writestr(info, content)
    data = bytearray(buffer.getvalue())
    if data and draw(st.booleans()):  # damage it: sizes, offsets, CRCs or the central directory
        for _ in range(draw(st.integers(1, 6))):
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data)


def zip_bomb_one_entry(size: int) -> bytes:
    """One entry of ``size`` zero bytes, deflated to about a thousandth of it (written without the data)."""
    chunk = b"\0" * (1 << 20)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    compressed = b"".join(compressor.compress(chunk) for _ in range(size // len(chunk))) + compressor.flush()
    crc = 0
    for _ in range(size // len(chunk)):
        crc = zlib.crc32(chunk, crc)
    return _zip_with_entry(b"bomb.dcm", compressed, crc, size)


def _zip_with_entry(
    name: bytes, compressed: bytes, crc: int, size: int, declared: int | None = None
) -> bytes:
    """A ZIP of one deflated entry whose sizes are written as given (``declared`` may lie)."""
    declared = size if declared is None else declared
    local = struct.pack(
        "<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0, crc, len(compressed), declared, len(name), 0
    )
    central = struct.pack(
        "<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 8, 0, 0, crc, len(compressed), declared, len(name),
        0, 0, 0, 0, 0, 0,
    )  # fmt: skip
    body = local + name + compressed
    directory = central + name
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, len(directory), len(body), 0)
    return body + directory + end


def zip_bomb_many_entries(entries: int, size: int) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        content = b"\0" * size
        for number in range(entries):
            archive.writestr(f"{number}.dcm", content)
    return buffer.getvalue()


# ----------------------------------------------------------------- JSON bodies

ORTHANC_FIELDS = [
    "Level", "Query", "Expand", "Limit", "Since", "Resources", "Replace", "Remove", "Keep", "Force",
    "Synchronous", "Asynchronous", "Priority", "Transcode", "Tags", "Content", "Parent", "Permissive",
    "DicomVersion", "RequestedTags", "CaseSensitive", "Short", "Simplify", "Full", "AET", "Host", "Port",
    "Manufacturer", "Timeout", "Series", "Instances", "Normalize", "RemovePrivateTags", "PrivateCreator",
    "MoveOriginatorAet", "MoveOriginatorID", "TargetAet", "Interval", "Model", "StorageCommitment",
]  # fmt: skip
"""Field names Orthanc's routes read (``KeepSource`` left out: false deletes the source, legitimately)."""

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.text(max_size=30),
    st.sampled_from(
        ["0010,0010", "PatientName", "zzzz", "ffff,ffff", "*", "Study", "Patient", "1.2.840.10008.1.2"]
    ),
)
any_json = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.dictionaries(st.one_of(st.sampled_from(ORTHANC_FIELDS), st.text(max_size=10)), inner, max_size=6),
    ),
    max_leaves=25,
)
json_bodies = st.one_of(
    any_json.map(lambda value: json.dumps(value).encode()),
    st.dictionaries(st.sampled_from(ORTHANC_FIELDS), any_json, max_size=6).map(
        lambda d: json.dumps(d).encode()
    ),
    st.binary(max_size=100),
    st.sampled_from([b"", b"{", b'{"Level": "\xff\xfe"}', b"[" * 50, b'"\\ud800"', b"null", b"1e999999"]),
)


def enormous_bodies() -> list[tuple[str, bytes]]:
    return [
        ("10 MB string", json.dumps({"Level": "Study", "Query": {"PatientName": "x" * 10_000_000}}).encode()),
        ("100 000 nested arrays", b"[" * 100_000 + b"]" * 100_000),
        ("a million numbers", json.dumps({"Resources": list(range(1_000_000))}).encode()),
        ("100 000 keys", json.dumps({"Replace": {f"key{n}": n for n in range(100_000)}}).encode()),
    ]


# ----------------------------------------------------------------- the test


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    options = {"StableAge": 1, "MaximumUploadSize": MAXIMUM_UPLOAD_MB, "DicomAlwaysAllowStore": True}
    process = fastpacs_server(tmp_path_factory.mktemp("fuzz"), options).start()
    yield process
    process.stop()


@dataclass
class Seeds:
    """Resources stored before the fuzzing, to aim at and to check afterwards."""

    ids: dict[str, str]
    """Level (plural) → one resource ID of that level."""
    files: dict[str, str]
    """Instance ID → SHA-256 of its file."""


def seed(http: httpx.Client) -> Seeds:
    files = {}
    answer: dict = {}
    for name in SEED_FILES:
        data = pydicom_file(name).read_bytes()
        answer = http.post("/instances", content=data).json()
        files[answer["ID"]] = hashlib.sha256(data).hexdigest()
    ids = {
        "patients": answer["ParentPatient"],
        "studies": answer["ParentStudy"],
        "series": answer["ParentSeries"],
        "instances": answer["ID"],
    }
    return Seeds(ids, files)


def fill_path(template: str, seeds: Seeds, junk: str) -> str:
    """A route template with its parameters filled: the seeds' IDs where a level says which, else junk."""
    level = template.split("/")[1]
    values = {
        "resource_id": seeds.ids.get(level, junk),
        "instance_id": seeds.ids["instances"],
        "study_id": seeds.ids["studies"],
        "name": "fuzz",
    }
    return re.sub(r"\{(\w+)\}", lambda match: quote(values.get(match.group(1), junk), safe=""), template)


@pytest.mark.filterwarnings("ignore:Duplicate name:UserWarning")  # hostile ZIPs repeat names on purpose
def test_hostile_input_never_gets_an_unexplained_server_error(
    target: ServerProcess, figures: Figures
) -> None:
    verdicts = Verdicts()
    monitor = ProcessTreeMonitor(target.process.pid).start()
    log_start = target.log_path.stat().st_size
    with httpx.Client(base_url=target.base_url, timeout=120) as http:
        seeds = seed(http)
        memory_start = tree_memory(target)
        routes = http.get("/openapi.json").json()["paths"]
        started = time.monotonic()

        fuzz_dicom_uploads(http, verdicts)
        fuzz_zip_uploads(http, verdicts, figures)
        fuzz_c_store(target, verdicts)
        fuzz_content_paths_and_queries(http, verdicts, seeds, routes)
        fuzz_json_bodies(http, verdicts, seeds, routes)
        elapsed = time.monotonic() - started

        assert http.get("/system").status_code == 200, "the server stopped answering"
        memory_end = tree_memory(target)
        for instance, digest in seeds.files.items():
            assert hashlib.sha256(http.get(f"/instances/{instance}/file").content).hexdigest() == digest
        checked = check_store(target, http)
    monitor.stop()
    unhandled = unhandled_errors(target.log_path, log_start)

    figures.add(
        "fuzz",
        f"{sum(verdicts.cases.values())} cases in {elapsed:.0f} s {verdicts.cases}, "
        f"bodies of {verdicts.routes} POST/PUT routes; "
        f"HTTP statuses {dict(sorted(verdicts.statuses.items()))}; C-STORE statuses "
        f"{ {f'{status:#06x}': count for status, count in verdicts.dimse.items()} }; "
        f"Orthanc's own 500s by OrthancStatus {verdicts.orthanc_500s}; "
        f"unexplained 5xx {len(verdicts.server_errors)}; "
        f"unhandled exceptions logged {len(unhandled)}; server tree memory (PSS) "
        f"start {megabytes(memory_start)}, peak {megabytes(monitor.lifetime_peak_rss)}, "
        f"end {megabytes(memory_end)}; "
        f"{checked.instances} instances stored, consistent",
    )
    assert verdicts.server_errors == [], "\n".join(verdicts.server_errors[:20])
    assert unhandled == [], "\n".join(unhandled[:10])
    assert memory_end - memory_start < MEMORY_GROWTH_LIMIT
    assert not Path("/tmp/fastpacs-fuzz-escape.dcm").exists()


def unhandled_errors(log: Path, offset: int) -> list[str]:
    with log.open("rb") as file:
        file.seek(offset)
        text = file.read().decode(errors="replace")
    return [line[:2000] for line in text.splitlines() if "unhandled error" in line or "Traceback" in line]


def fuzz_dicom_uploads(http: httpx.Client, verdicts: Verdicts) -> None:
    @FUZZ_SETTINGS
    @given(data=st.one_of(hostile_dicom(), mutated_ct()))
    def upload(data: bytes) -> None:
        verdicts.judge("dicom", repr(data[:200]), http.post("/instances", content=data))

    run_for(BUDGET * SHARES["dicom"], upload)


def fuzz_zip_uploads(http: httpx.Client, verdicts: Verdicts, figures: Figures) -> None:
    @FUZZ_SETTINGS
    @given(data=hostile_zip())
    def upload(data: bytes) -> None:
        verdicts.judge("zip", repr(data[:200]), http.post("/instances", content=data))

    run_for(BUDGET * SHARES["zip"], upload)
    limit = MAXIMUM_UPLOAD_MB << 20
    bombs = {
        "1 GB of zeros in one entry": zip_bomb_one_entry(1 << 30),
        "2 000 entries of 64 KB of zeros": zip_bomb_many_entries(2000, 64 << 10),
        "an entry declared 1 KB holding 256 MB": _zip_with_entry(
            b"liar.dcm",
            zlib.compress(b"\0" * (256 << 20), 9)[2:-4],
            zlib.crc32(b"\0" * (256 << 20)),
            256 << 20,
            1024,
        ),
    }
    for name, bomb in bombs.items():
        answer = http.post("/instances", content=bomb)
        verdicts.judge("zip bomb", name, answer)
        figures.add(
            f"zip bomb, {name}", f"{len(bomb)} bytes, limit {limit}: {answer.status_code} {answer.text[:150]}"
        )
        assert answer.status_code in (200, 400), answer.text
        if answer.status_code == 200:
            assert answer.json() == [], "a zip bomb stored something"


def fuzz_c_store(server: ServerProcess, verdicts: Verdicts) -> None:
    ae = AE(ae_title="FUZZER")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    context = build_context(CTImageStorage, ExplicitVRLittleEndian)
    state = {"assoc": None}

    def association():
        assoc = state["assoc"]
        if assoc is None or not assoc.is_established:
            assoc = ae.associate(
                "127.0.0.1", server.dicom_port, [context], ae_title=server.aet, evt_handlers=NO_DELAY_HANDLERS
            )
            assert assoc.is_established, "the server refused a new association"
            state["assoc"] = assoc
        return assoc

    # Send each file's dataset as it is, never decoded by pynetdicom (it reads only the file meta).
    chunked = _config.STORE_SEND_CHUNKED_DATASET
    _config.STORE_SEND_CHUNKED_DATASET = True
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "dataset.dcm"

        def send() -> int:
            answer = association().send_c_store(path)
            return int(answer.Status) if "Status" in answer else -1

        @FUZZ_SETTINGS
        @given(dataset=hostile_dicom(with_meta=False))
        def store(dataset: bytes) -> None:
            path.write_bytes(file_meta(ExplicitVRLittleEndian) + dataset)
            verdicts.count("c-store")
            status = send()
            if status == -1:
                # No answer seen: pynetdicom's own reactor thread can take a fast answer off the queue
                # before send_c_store waits for it (the pause in 3.0 is racy), and the association
                # is aborted after the DIMSE timeout. The same dataset on a new association: a
                # server that never answers it fails again.
                status = send()
            verdicts.dimse[status] = verdicts.dimse.get(status, 0) + 1
            if status not in (0x0000, 0xC000, 0xA700):
                verdicts.server_errors.append(f"c-store: {dataset[:200]!r} -> status {status:#06x}")

        try:
            run_for(BUDGET * SHARES["c-store"], store)
        finally:
            _config.STORE_SEND_CHUNKED_DATASET = chunked
    if state["assoc"] is not None and state["assoc"].is_established:
        state["assoc"].release()


def fuzz_content_paths_and_queries(
    http: httpx.Client, verdicts: Verdicts, seeds: Seeds, routes: dict[str, dict]
) -> None:
    instance = seeds.ids["instances"]
    segment = st.one_of(
        st.from_regex(r"[0-9a-fA-F]{4}-[0-9a-fA-F]{4}", fullmatch=True),
        st.from_regex(r"[0-9a-fA-F]{4},[0-9a-fA-F]{4}", fullmatch=True),
        st.integers(-5, 2**70).map(str),
        st.sampled_from(
            ["0008-1140", "0040-0275", "PatientName", "ReferencedImageSequence", "..", "%00", "zzzz"]
        ),
        st.text(min_size=1, max_size=20),
    )
    get_routes = [path for path, operations in routes.items() if "get" in operations]
    parameters = st.dictionaries(
        st.one_of(
            st.sampled_from(
                [
                    "expand",
                    "since",
                    "limit",
                    "short",
                    "simplify",
                    "full",
                    "requestedTags",
                    "quality",
                    "smooth",
                    "filename",
                    "transcode",
                    "level",
                    "lossless",
                ]
            ),
            st.text(min_size=1, max_size=10),
        ),
        st.one_of(st.text(max_size=30), st.integers(-(2**70), 2**70).map(str)),
        max_size=4,
    )

    @FUZZ_SETTINGS
    @given(path=st.lists(segment, min_size=1, max_size=8))
    def content(path: list[str]) -> None:
        url = f"/instances/{instance}/content/" + "/".join(quote(part, safe="") for part in path)
        verdicts.judge("tag path", url, http.get(url))

    @FUZZ_SETTINGS
    @given(template=st.sampled_from(get_routes), junk=st.text(max_size=20), query=parameters)
    def query(template: str, junk: str, query: dict[str, str]) -> None:
        path = fill_path(template, seeds, junk)
        verdicts.judge("query", f"{path} {query}", http.get(path, params=query))

    run_for(BUDGET * SHARES["paths"] / 2, content)
    run_for(BUDGET * SHARES["paths"] / 2, query)


def fuzz_json_bodies(http: httpx.Client, verdicts: Verdicts, seeds: Seeds, routes: dict[str, dict]) -> None:
    writes = sorted(
        (method.upper(), path)
        for path, operations in routes.items()
        for method in operations
        if method in ("post", "put") and path != "/instances"
    )
    assert len(writes) > 40, "the route list from /openapi.json looks incomplete"
    for name, body in enormous_bodies():
        for method, path in (
            ("POST", "/tools/find"),
            ("POST", "/tools/create-dicom"),
            ("PUT", "/modalities/fuzz"),
        ):
            answer = http.request(method, path, content=body, headers={"Content-Type": "application/json"})
            verdicts.judge("enormous json", f"{method} {path} {name}", answer)

    @FUZZ_SETTINGS
    @given(route=st.sampled_from(writes), junk=st.text(max_size=20), body=json_bodies)
    def send(route: tuple[str, str], junk: str, body: bytes) -> None:
        method, template = route
        path = fill_path(template, seeds, junk)
        answer = http.request(method, path, content=body, headers={"Content-Type": "application/json"})
        verdicts.judge("json", f"{method} {path} {body[:200]!r}", answer)

    run_for(BUDGET * SHARES["json"], send)
    verdicts.routes = len(writes)
