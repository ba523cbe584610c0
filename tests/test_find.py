"""/tools/find inside fastpacs: the indexes, the plan, the bulk loader, the HTTP route.

Orthanc's answers themselves are checked in tests/differential/test_find_vs_orthanc.py;
here, on a bulk-loaded index of a few thousand resources:

- the indexes hold exactly what the resources say, after loading and after deletions;
- for hundreds of seeded random queries, the planned execution gives what a
  brute-force scan of every resource gives with the same matching rules;
- a selective query touches only its candidates;
- a costly query leaves the event loop and still gives the same answer;
- the bulk loader builds the index the real ingest pipeline builds.
"""

import asyncio
import gzip
import json
import random
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import lmdb
import pytest
from benchmarks.bulk_index import BulkSpec, all_files, bulk_load, patient_name, study_date, study_uid

from fastpacs.dicom.ids import Level, RawId, format_id
from fastpacs.dicom.main_tags import MAIN_TAGS
from fastpacs.index.database import INDEX_FOLDER, Database
from fastpacs.index.find import (
    MAIN_TAG_LEVELS,
    MODALITIES_IN_STUDY,
    MODALITY,
    Constraint,
    FindExecution,
    FindQuery,
    Kind,
    WorkLimitError,
    identifier_key,
    index_resource,
    sql_lower,
    upper_with_accents,
)
from fastpacs.index.schema import DATABASES, RESOURCE_DECODER, UNSTABLE_DECODER, Resource
from fastpacs.index.updates import IndexUpdate, delete_resource
from fastpacs.index.view import IndexView
from fastpacs.services.find import INLINE_WORK, FindService, make_constraint, parse_find_request
from fastpacs.testing import ServerProcess, fastpacs_server
from tests.conftest import pydicom_file

SPEC = BulkSpec(studies=120, series_per_study=2, instances_per_series=4, studies_per_patient=3, seed=7)
"""960 instances, 240 series, 120 studies, 40 patients."""


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    folder = tmp_path_factory.mktemp("bulk")
    bulk_load(SPEC, folder, processes=1)
    database = Database(folder / "storage", 1)
    yield database
    database.close()


# --- value forms ---------------------------------------------------------------------------------


def test_identifier_key_is_orthancs_normalization() -> None:
    assert identifier_key("  Gérard_x%y\tz  ") == b"GRARD X YZ"
    assert identifier_key("doe^jane") == b"DOE^JANE"
    assert identifier_key("Σωκράτης") == b""


def test_case_folding() -> None:
    assert upper_with_accents("straße éàø σς") == "STRAßE ÉÀØ ΣΣ"
    assert sql_lower("ÄBC Øx") == "Äbc Øx"


def test_range_bounds_are_texts_before_normalization() -> None:
    """An upper bound made of dropped characters is a bound all the same (Orthanc tests the raw text)."""
    constraint = Constraint(0x00100030, Kind.RANGE, ("", "é"), False)
    assert constraint.database_matches("é") and not constraint.database_matches("A")


# --- the indexes ---------------------------------------------------------------------------------


def _find_databases(database: Database) -> tuple[list[tuple[bytes, bytes]], list[bytes]]:
    with database.env.begin() as txn:
        values = list(txn.cursor(db=database.dbs["find_values"]))
        ids = [key for key, _ in txn.cursor(db=database.dbs["find_ids"])]
    return values, ids


def _expected_find_databases(database: Database) -> tuple[list[tuple[bytes, bytes]], list[bytes]]:
    """The find indexes rebuilt from the resources, in a scratch transaction thrown away after."""
    with database.env.begin(write=True) as txn:
        for name in ("find_values", "find_ids"):
            txn.drop(database.dbs[name], delete=False)
        for rid, data in list(txn.cursor(db=database.dbs["resources"])):
            record = RESOURCE_DECODER.decode(data)
            index_resource(txn, database.dbs, Level(record.level), rid, record)
        values = list(txn.cursor(db=database.dbs["find_values"]))
        ids = [key for key, _ in txn.cursor(db=database.dbs["find_ids"])]
        txn.abort()
    return values, ids


def test_indexes_follow_creation_and_deletion(tmp_path: Path) -> None:
    spec = BulkSpec(studies=6, series_per_study=2, instances_per_series=2, studies_per_patient=2)
    bulk_load(spec, tmp_path, processes=1)
    database = Database(tmp_path / "storage", 1)
    try:
        values, ids = _find_databases(database)
        assert len(ids) == spec.patients + spec.studies + spec.series
        assert (values, ids) == _expected_find_databases(database)
        with database.read() as view:
            a_patient = view.list_level(Level.PATIENT)[1]
            a_series = view.list_level(Level.SERIES)[0]
        with database.env.begin(write=True) as txn:
            update = IndexUpdate(txn, database.dbs, lambda digest: True)
            delete_resource(update, Level.PATIENT, a_patient)
            delete_resource(update, Level.SERIES, a_series)
        values, ids = _find_databases(database)
        assert a_patient not in {rid for _, rid in values} and bytes([Level.PATIENT]) + a_patient not in ids
        assert (values, ids) == _expected_find_databases(database)
        with database.read() as view:
            found = FindExecution(view, FindQuery(Level.SERIES, [])).run()
            assert len(found) == spec.series - 1 - spec.studies_per_patient * spec.series_per_study
    finally:
        database.close()


# --- the plan against brute force ----------------------------------------------------------------


def _chain(view: IndexView, record: Resource) -> dict[Level, Resource]:
    chain = {Level(record.level): record}
    while record.parent is not None:
        parent = view.resource(record.parent)
        assert parent is not None
        record = chain[Level(parent.level)] = parent
    return chain


def _brute_force(view: IndexView, query: FindQuery) -> list[RawId]:
    """Every resource of the level checked one by one, without any index."""
    if query.level == Level.STUDY and any(c.tag == MODALITIES_IN_STUDY for c in query.constraints):
        return _brute_force_by_modalities(view, query)
    resources = [(rid, view.resource(rid)) for rid in view.list_level(query.level)]
    if query.level != Level.INSTANCE:
        resources.sort(key=lambda item: item[0])
    matches = []
    for rid, record in resources:
        assert record is not None
        chain = _chain(view, record)
        accepted = True
        for constraint in query.constraints:
            level, keyword = MAIN_TAG_LEVELS[constraint.tag]
            value = chain[level].main_tags.get(keyword) if level <= query.level else None
            accepted &= value is not None and constraint.database_matches(value) and constraint.matches(value)
        if accepted:
            matches.append(rid)
    return matches[query.since : query.since + query.limit] if query.limit else matches[query.since :]


def _brute_force_by_modalities(view: IndexView, query: FindQuery) -> list[RawId]:
    """Orthanc's ModalitiesInStudy: the series query with Modality in its place, then their studies by UID."""
    constraints = [c.on_tag(MODALITY) if c.tag == MODALITIES_IN_STUDY else c for c in query.constraints]
    studies: dict[str, RawId] = {}
    for rid in _brute_force(view, FindQuery(Level.SERIES, constraints)):
        series = view.resource(rid)
        assert series is not None and series.parent is not None
        study = view.resource(series.parent)
        assert study is not None
        studies.setdefault(study.main_tags["StudyInstanceUID"], series.parent)
    ordered = [studies[uid] for uid in sorted(studies)]
    return ordered[query.since : query.limit] if query.limit else ordered


def _random_query(rng: random.Random) -> FindQuery:
    level = rng.choice(list(Level))
    case_sensitive = rng.random() < 0.25
    study = rng.randrange(SPEC.studies)
    name = patient_name(SPEC, study // SPEC.studies_per_patient)
    date = study_date(SPEC, study)
    other_date = study_date(SPEC, rng.randrange(SPEC.studies))
    low, high = sorted((date, other_date))
    candidates = {
        "PatientName": [
            name,
            name.lower(),
            name[: rng.randrange(1, 5)] + "*",
            "*" + name[-3:],
            name[:2] + "?" + name[3:],
        ],
        "PatientID": [
            f"BULK{study // SPEC.studies_per_patient:07d}",
            f"bulk{study // SPEC.studies_per_patient:07d}",
        ],
        "PatientSex": ["M", "f", "*"],
        "PatientBirthDate": [f"-{date}", f"{date}-"],
        "StudyDate": [date, f"{low}-{high}", f"-{low}", f"{high}-", f"{date}\\{other_date}"],
        "StudyTime": ["08-12", "-09", "1530-"],
        "StudyInstanceUID": [study_uid(study), f"{study_uid(study)}\\{study_uid(study + 1)}"],
        "AccessionNumber": [f"acc{study + 1:08d}", "ACC0000001*"],
        "StudyDescription": ["*KNEE*", "mr brain", "CT*\\MR BRAIN", "*"],
        "ReferringPhysicianName": ["grey^meredith", "*e*"],
        "Modality": ["CT", "mr", "CT\\MR", "?R"],
        "SeriesDescription": ["*#1", "ct chest w/o contrast #2"],
        "SeriesNumber": ["1", "2"],
        "BodyPartExamined": ["CHEST", "k*"],
        "InstanceNumber": ["1", "3\\4"],
        "SOPInstanceUID": [f"{study_uid(study)}.1.100002"],
        "ModalitiesInStudy": ["CT", "M*", "US\\PT", "*"],
    }
    constraints = []
    for keyword in rng.sample(sorted(candidates), rng.choice((1, 1, 2, 2, 3))):
        tag = MODALITIES_IN_STUDY if keyword == "ModalitiesInStudy" else _tag_of(keyword)
        if tag == MODALITIES_IN_STUDY and level != Level.STUDY:
            continue  # a non-main tag elsewhere: read from instances, outside the brute force's rules
        constraint = make_constraint(tag, rng.choice(candidates[keyword]), case_sensitive)
        if constraint is not None:
            constraints.append(constraint)
    since = rng.choice((0, 0, 0, 1, 3))
    limit = rng.choice((0, 0, 0, 1, 2, 10))
    return FindQuery(level, constraints, since, limit)


def _tag_of(keyword: str) -> int:
    return next(tag for level in Level for tag, name in MAIN_TAGS[level] if name == keyword)


def test_plan_gives_the_brute_force_answers(loaded: Database) -> None:
    rng = random.Random(20261127)
    nonempty = 0
    with loaded.read() as view:
        for _ in range(400):
            query = _random_query(rng)
            expected = _brute_force(view, query)
            assert FindExecution(view, query).run() == expected, query
            nonempty += bool(expected)
    assert nonempty > 150, "the random queries should mostly find something"


@pytest.mark.parametrize(
    "body",
    [
        '{"Level": "Series", "Query": {"PatientID": "abc", "StudyInstanceUID": "1.2.3"}}',
        '{"Level": "Study", "Query": {"PatientID": "abc", "PatientName": "x*"}}',
        '{"Level": "Instance", "Query": {"StudyInstanceUID": "1.2.3", "SeriesInstanceUID": "1.2"}}',
    ],
)
def test_an_empty_index_answers_nothing_whatever_the_constraints(tmp_path: Path, body: str) -> None:
    """Several indexed constraints on an empty level (an empty server) divided by its count: a 500."""
    database = Database(tmp_path / "index", 1)
    try:
        assert _execution(database, body)[0] == []
    finally:
        database.close()


def _execution(database: Database, body: str) -> tuple[list[RawId], float]:
    request = parse_find_request(body.encode())
    with database.read() as view:
        execution = FindExecution(view, request.query)
        return execution.run(), execution.work


def test_selective_queries_touch_only_their_candidates(loaded: Database) -> None:
    uid = study_uid(17)
    found, work = _execution(loaded, f'{{"Level": "Study", "Query": {{"StudyInstanceUID": "{uid}"}}}}')
    assert len(found) == 1 and work < 20
    found, work = _execution(loaded, f'{{"Level": "Instance", "Query": {{"StudyInstanceUID": "{uid}"}}}}')
    assert len(found) == SPEC.series_per_study * SPEC.instances_per_series and work < 150
    name = patient_name(SPEC, 5)
    body = (
        f'{{"Level": "Study", "Query": {{"PatientName": "{name[:5]}*", "StudyDate": "20100101-20101231"}}}}'
    )
    everything, full_scan_work = _execution(loaded, '{"Level": "Study", "Query": {"StudyDate": "19000101-"}}')
    found, work = _execution(loaded, body)
    assert len(everything) == SPEC.studies and work < full_scan_work / 4


def test_costly_queries_leave_the_event_loop(loaded: Database) -> None:
    request = parse_find_request(
        b'{"Level": "Instance", "Query": {"SeriesDescription": "*#2"}, "Expand": true}'
    )
    service = FindService(loaded)
    with pytest.raises(WorkLimitError):
        service._answer(request, INLINE_WORK)
    answers = asyncio.run(service.find(request))
    assert len(answers) == SPEC.instances // 2
    assert answers == service._answer(request, None)


# --- the bulk loader -----------------------------------------------------------------------------

TIMESTAMP = re.compile(rb"\d{8}T\d{6}")
"""Orthanc's timestamps (ReceptionDate, LastUpdate, change dates), whatever the record they sit in."""


def _index_contents(folder: Path) -> dict[str, list]:
    """Every database of an index, timestamps replaced (the only thing two loads may disagree on)."""
    env = lmdb.open(
        str(folder / "storage" / INDEX_FOLDER), max_dbs=len(DATABASES) + 1, readonly=True, lock=False
    )
    contents: dict[str, list] = {}
    try:
        with env.begin() as txn:
            for name in DATABASES:
                entries = list(txn.cursor(db=env.open_db(name.encode(), txn=txn, create=False)))
                contents[name] = [_without_timestamps(name, key, value) for key, value in entries]
    finally:
        env.close()
    return contents


def _without_timestamps(name: str, key: bytes, value: bytes) -> tuple[bytes, object]:
    if name == "unstable":
        return key, UNSTABLE_DECODER.decode(value).level
    if name in ("metadata", "updated", "changes"):
        return key, TIMESTAMP.sub(b"<timestamp>", value)
    return key, value


@pytest.mark.slow
def test_bulk_loader_builds_the_same_index(tmp_path: Path) -> None:
    spec = BulkSpec(studies=5, series_per_study=2, instances_per_series=3, studies_per_patient=2, seed=3)
    bulk_load(spec, tmp_path / "bulk", processes=1)
    server = fastpacs_server(tmp_path / "pipeline", {"StableAge": 3600}).start()
    try:
        with httpx.Client(base_url=server.base_url, timeout=30) as client:
            for data in all_files(spec):
                assert client.post("/instances", content=data).json()["Status"] == "Success"
    finally:
        server.stop()
    bulk, pipeline = _index_contents(tmp_path / "bulk"), _index_contents(tmp_path / "pipeline")
    assert len(bulk["resources"]) == spec.patients + spec.studies + spec.series + spec.instances
    for name in DATABASES:
        assert bulk[name] == pipeline[name], name
    blobs = sorted(path.name for path in (tmp_path / "bulk" / "storage").glob("??/??/*"))
    assert blobs == sorted(path.name for path in (tmp_path / "pipeline" / "storage").glob("??/??/*"))


# --- the HTTP route ------------------------------------------------------------------------------


def _find(client: httpx.Client, body: dict) -> httpx.Response:
    return client.post("/tools/find", json=body)


def test_route_answers_ids_and_expanded_resources(server: ServerProcess, client: httpx.Client) -> None:
    for name in ("CT_small.dcm", "MR_small.dcm"):
        assert client.post("/instances", content=pydicom_file(name).read_bytes()).status_code == 200
    ids = _find(client, {"Level": "Study", "Query": {"PatientName": "compressed*"}}).json()
    assert len(ids) == 2 and ids == sorted(ids)
    expanded = _find(
        client, {"Level": "Study", "Query": {"PatientName": "compressed*"}, "Expand": True}
    ).json()
    assert expanded == [client.get(f"/studies/{rid}").json() for rid in ids]
    answer = _find(client, {"Level": "Study", "Query": {"StudyDate": "2004*"}})
    assert answer.status_code == 400
    assert answer.json()["Details"] == "Wildcards are not allowed on tag 0008,0020"
    assert client.get("/tools/find").status_code == 405


def test_deleted_resources_are_not_found(server: ServerProcess, client: httpx.Client) -> None:
    upload = client.post("/instances", content=pydicom_file("rtdose.dcm").read_bytes()).json()
    query = {
        "Level": "Instance",
        "Query": {
            "SOPInstanceUID": client.get(f"/instances/{upload['ID']}").json()["MainDicomTags"][
                "SOPInstanceUID"
            ]
        },
    }
    assert _find(client, query).json() == [upload["ID"]]
    assert client.delete(f"/instances/{upload['ID']}").status_code == 200
    assert _find(client, query).json() == []
    assert format_id(bytes(20)) not in _find(client, {"Level": "Patient", "Query": {}}).json()


def test_lane_and_router_answer_alike(server: ServerProcess, client: httpx.Client) -> None:
    """Small finds and plain listings are answered in front of the router (the fast lane), the rest by it."""
    assert client.post("/instances", content=pydicom_file("CT_small.dcm").read_bytes()).status_code == 200
    body = {"Level": "Instance", "Query": {"PatientName": "*"}}
    expected = _find(client, body).json()
    assert len(expected) >= 1
    padded = json.dumps(body) + " " * 70_000  # above the lane's body size: routed
    assert client.post("/tools/find", content=padded).json() == expected
    gzipped = gzip.compress(json.dumps(body).encode())
    answer = client.post("/tools/find", content=gzipped, headers={"Content-Encoding": "gzip"})
    assert answer.json() == expected
    refused = client.post("/tools/find", content=b"[1")  # read by the lane, refused by the router
    assert refused.status_code == 400
    assert refused.json()["Details"] == "The body must contain a JSON object"
    everything = client.get("/instances").json()
    assert client.get("/instances?since=0&limit=1").json() == everything[:1]
    assert client.get("/instances?limit=1&since=0&expand").json()[0]["ID"] == everything[0]
    assert client.get("/instances?since=0").json()["Details"].startswith('Missing "limit" argument')
    assert client.get("/instances?since=x&limit=1").status_code == 400
