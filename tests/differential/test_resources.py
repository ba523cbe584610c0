"""The resource API over pydicom's whole test data set: listings, resources, relatives, /statistics,
/changes and /tools/lookup answer as Orthanc's once both servers hold the same files and are stable.

The data set is every DICOM file of pydicom's (``ALL_FILES``): the test files,
the file-sets of its DICOMDIR tests, whose series have the attributes that
make Orthanc track their completeness, and the character set files.
"""

from collections.abc import Iterator
from typing import Any

import pytest

from tests.differential.conftest import COMMON_OPTIONS
from tests.differential.data import ALL_FILES, file_name
from tests.differential.harness import Call, ServerPair, get

pytestmark = pytest.mark.reference

LEVELS = ("patients", "studies", "series", "instances")
TAG_FORMATS: tuple[dict[str, str], ...] = (
    {"full": ""},
    {"short": ""},
    {"full": "", "short": ""},
    {"simplify": "", "full": ""},
    {"full": "false"},
)
"""Query flags choosing how main DICOM tags are shown (``full=false`` still asks for it)."""
RELATIVES = {
    "patients": ("studies", "series", "instances"),
    "studies": ("patient", "series", "instances"),
    "series": ("patient", "study", "instances"),
    "instances": ("patient", "study", "series"),
}


STABLE_AGE = 5
"""Seconds without a new instance before a resource is stable. Longer than the other modules' 1 s: a
patient whose files are apart in the upload order must not turn stable in between on one server and
not on the other (two StablePatient changes against one), which a loaded machine's slow uploads made
happen with 1 s, and once with 3 s (a full run at load average 5-7: 399 changes against 398)."""


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerPair]:
    options = {**COMMON_OPTIONS, "StableAge": STABLE_AGE}
    servers = ServerPair.start(tmp_path_factory.mktemp("resources"), options)
    yield servers
    servers.stop()


@pytest.fixture(scope="module")
def stored(pair: ServerPair) -> ServerPair:
    """Both servers, holding the same files, every resource stable."""
    for path in ALL_FILES:
        orthanc, fastpacs = pair.send(
            Call(f"upload {file_name(path)}", "POST", "/instances", body=path.read_bytes())
        )
        assert orthanc.status == fastpacs.status, file_name(path)
    pair.wait_until_stable()
    return pair


def listing_calls() -> Iterator[Call]:
    for level in LEVELS:
        yield get(f"{level}", f"/{level}")
        yield get(f"{level} expand", f"/{level}", expand="")
        yield get(f"{level} expand=false", f"/{level}", expand="false")
        yield get(f"{level} trailing slash", f"/{level}/")
        yield get(f"{level} since 0 limit 5", f"/{level}", since="0", limit="5")
        yield get(f"{level} since 3 limit 4 expand", f"/{level}", since="3", limit="4", expand="")
        yield get(f"{level} since past the end", f"/{level}", since="1000", limit="3")
        yield get(f"{level} limit 0", f"/{level}", since="2", limit="0")
        yield get(f"{level} limit without since", f"/{level}", limit="2")
        yield get(f"{level} since without limit", f"/{level}", since="2")
        yield get(f"{level} non-numeric since", f"/{level}", since="abc", limit="2")
        yield get(f"{level} non-numeric limit", f"/{level}", since="0", limit="two")
        yield get(f"{level} negative since", f"/{level}", since="-1", limit="2")
        yield get(f"{level} negative limit", f"/{level}", since="1", limit="-1")
        yield get(f"{level} since with plus sign", f"/{level}", since="+1", limit="2")
        yield get(f"{level} since with a space", f"/{level}", since=" 1", limit="2")
        yield get(f"{level} decimal since", f"/{level}", since="1.5", limit="2")
        yield get(f"{level} since beyond 64 bits", f"/{level}", since="99999999999999999999", limit="2")
        yield get(f"{level} limit beyond 32 bits", f"/{level}", since="0", limit="4294967296")
        yield get(f"{level} full", f"/{level}", full="")
        for flags in TAG_FORMATS:
            name = " ".join(f"{flag}={value}" if value else flag for flag, value in flags.items())
            yield get(f"{level} expand {name}", f"/{level}", expand="", **flags)


@pytest.mark.parametrize("call", list(listing_calls()), ids=str)
def test_listing(stored: ServerPair, call: Call) -> None:
    check = stored.checker()
    check.compare(call)
    check.verdict()


@pytest.mark.parametrize("level", LEVELS)
def test_every_resource(stored: ServerPair, level: str) -> None:
    check = stored.checker()
    for resource_id in stored.orthanc_get(f"/{level}"):
        check.compare(get(f"{level} {resource_id}", f"/{level}/{resource_id}"))
        check.compare(get(f"{level} {resource_id} full", f"/{level}/{resource_id}", full=""))
        check.compare(get(f"{level} {resource_id} short", f"/{level}/{resource_id}", short=""))
    check.verdict()


@pytest.mark.parametrize("level", LEVELS)
def test_every_relatives_route(stored: ServerPair, level: str) -> None:
    check = stored.checker()
    for resource_id in stored.orthanc_get(f"/{level}"):
        for relative in RELATIVES[level]:
            check.compare(get(f"{level} {resource_id} {relative}", f"/{level}/{resource_id}/{relative}"))
            check.compare(
                get(
                    f"{level} {resource_id} {relative} expand",
                    f"/{level}/{resource_id}/{relative}",
                    expand="",
                )
            )
            check.compare(
                get(f"{level} {resource_id} {relative} full", f"/{level}/{resource_id}/{relative}", full="")
            )
    check.verdict()


def test_every_file_is_returned_intact(stored: ServerPair) -> None:
    check = stored.checker()
    for instance_id in stored.orthanc_get("/instances"):
        check.compare(get(f"instances {instance_id} file", f"/instances/{instance_id}/file"))
    check.verdict()


@pytest.mark.parametrize("call", [get("statistics", "/statistics"), get("system", "/system")], ids=str)
def test_system_and_statistics(stored: ServerPair, call: Call) -> None:
    check = stored.checker()
    check.compare(call)
    check.verdict()


def _events(changes: dict[str, Any]) -> tuple[list[tuple], list[tuple]]:
    """New* changes in order, Stable* changes sorted (see test_change_log_after_stability)."""
    new, stable = [], []
    for change in changes["Changes"]:
        event = (change["ChangeType"], change["ResourceType"], change["ID"], change["Path"])
        (stable if change["ChangeType"].startswith("Stable") else new).append(event)
    return new, sorted(stable)


def test_change_log_after_stability(stored: ServerPair) -> None:
    """The same New* changes in the same order, and the same Stable* changes.

    Uploading the whole data set takes longer than StableAge, so Stable* changes
    are interleaved with New* ones depending on when each server's once-a-second
    check ran: their positions (hence Seq numbers) may differ, not their set.
    ``test_delete.py`` compares /changes exactly on a short burst of uploads.
    """
    orthanc, fastpacs = (
        stored.orthanc_get("/changes", limit="10000"),
        stored.fastpacs_get("/changes", limit="10000"),
    )
    assert _events(fastpacs) == _events(orthanc)
    assert (fastpacs["Done"], fastpacs["Last"]) == (orthanc["Done"], orthanc["Last"])
    assert [change["Seq"] for change in fastpacs["Changes"]] == list(range(1, fastpacs["Last"] + 1))


@pytest.mark.parametrize(
    "call",
    [
        get("changes limit 3", "/changes", limit="3"),
        get("changes since 3 limit 2", "/changes", since="3", limit="2"),
        get("changes last", "/changes", last=""),
        get("changes since past the end", "/changes", since="100000", limit="5"),
        get("changes limit 0", "/changes", limit="0"),
    ],
    ids=str,
)
def test_change_log_paging(stored: ServerPair, call: Call) -> None:
    check = stored.checker()
    check.compare(call)
    check.verdict()


LOOKUPS = {
    "patient id": b"1CT1",
    "patient id lower case": b"1ct1",
    "patient id with spaces": b"  1CT1  ",
    "patient id with newline": b"1CT1\n",
    "study uid": b"1.3.6.1.4.1.5962.1.2.1.20040119072730.12322",
    "series uid": b"1.3.6.1.4.1.5962.1.3.1.1.20040119072730.12322",
    "sop instance uid": b"1.3.6.1.4.1.5962.1.1.1.1.1.20040119072730.12322",
    "mr patient id": b"4MR1",
    "uid shared by two files": b"1.2.840.10008.5.1.4.1.1.7",
    "unknown": b"no such identifier",
    "empty": b"",
    "non-ascii": "Ünï".encode(),
}


@pytest.mark.parametrize("name", LOOKUPS)
def test_lookup(stored: ServerPair, name: str) -> None:
    check = stored.checker()
    check.compare(Call(f"lookup {name}", "POST", "/tools/lookup", body=LOOKUPS[name]))
    check.verdict()
