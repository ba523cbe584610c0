"""Configuration: Orthanc's JSON format with comments, warnings, start-up errors, environment overrides."""

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from fastpacs.config import ConfigurationError, load_config
from fastpacs.testing import fastpacs_server, free_port

COMMENTED = """{
  // Orthanc's configuration files carry comments of both kinds.
  "Name" : "Commented",   /* overridden by FASTPACS__NAME */
  "StableAge" : 1,
  "DicomAet" : "COMMENTS//KEPT",
  /* a block comment
     over two lines */
  "HttpPort" : %(http)d,
  "DicomPort" : %(dicom)d,
  "StorageDirectory" : "%(storage)s",
  "IndexDirectory" : "%(storage)s",
  "NoSuchOption" : 3,           // unknown to Orthanc and fastpacs
  "HttpVerbose" : true          // Orthanc's, not supported by fastpacs
}
"""


def run_serve(config: Path) -> subprocess.CompletedProcess[str]:
    """``fastpacs serve`` with a configuration it must refuse at once."""
    return subprocess.run(
        [sys.executable, "-m", "fastpacs", "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.slow
def test_a_commented_file_with_environment_overrides(tmp_path: Path) -> None:
    """Comments of both kinds, warnings for unknown options, FASTPACS__ variables over the file."""
    server = fastpacs_server(tmp_path)
    (tmp_path / "fastpacs.json").write_text(
        COMMENTED % {"http": server.http_port, "dicom": server.dicom_port, "storage": tmp_path / "storage"}
    )
    server.http_port = free_port()
    server.environment = {"FASTPACS__NAME": "FromEnvironment", "FASTPACS__HTTP_PORT": str(server.http_port)}
    server.start()
    try:
        system = httpx.get(f"{server.base_url}/system").json()
    finally:
        server.stop()
    assert (system["Name"], system["HttpPort"]) == ("FromEnvironment", server.http_port)
    assert system["DicomAet"] == "COMMENTS//KEPT"  # "//" inside a string is not a comment
    log = server.log_path.read_text()
    assert "unknown configuration option 'NoSuchOption'" in log
    assert "'HttpVerbose' is not supported" in log


def test_a_bad_value_stops_start_up_with_a_clear_message(tmp_path: Path) -> None:
    config = tmp_path / "bad.json"
    config.write_text(json.dumps({"HttpPort": "eighty", "StorageDirectory": str(tmp_path / "s")}))
    result = run_serve(config)
    assert result.returncode != 0
    assert "HttpPort" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_unreadable_file_stops_start_up_with_a_clear_message(tmp_path: Path) -> None:
    config = tmp_path / "broken.json"
    config.write_text('{"HttpPort": 8042,, }')
    result = run_serve(config)
    assert result.returncode != 0
    assert "not valid JSON" in result.stderr and str(config) in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"HttpPort": "eighty"}, "HttpPort"),
        ({"HttpPort": 70000}, "HttpPort"),
        ({"StableAge": -1}, "StableAge"),
        ({"DicomAet": "A_TITLE_LONGER_THAN_16"}, "DicomAet"),
        ({"RegisteredUsers": ["alice"]}, "RegisteredUsers"),
        ({"RemoteAccessAllowed": "yes"}, "RemoteAccessAllowed"),
    ],
    ids=[
        "port as text",
        "port out of range",
        "negative age",
        "long AET",
        "users as a list",
        "boolean as text",
    ],
)
def test_bad_values_are_named(tmp_path: Path, options: dict, expected: str) -> None:
    config = tmp_path / "bad.json"
    config.write_text(json.dumps(options))
    with pytest.raises(ConfigurationError, match=expected):
        load_config(config, environ={})


@pytest.mark.parametrize(
    ("content", "expected"),
    [('{"HttpPort": 8042,, }', "not valid JSON"), ("[1, 2]", "JSON object"), (None, "not found")],
    ids=["syntax error", "not an object", "missing file"],
)
def test_unreadable_files_are_named(tmp_path: Path, content: str | None, expected: str) -> None:
    config = tmp_path / "broken.json"
    if content is not None:
        config.write_text(content)
    with pytest.raises(ConfigurationError, match=expected) as raised:
        load_config(config, environ={})
    assert str(config) in str(raised.value)


def test_a_folder_of_files_is_merged_in_name_order(tmp_path: Path) -> None:
    folder = tmp_path / "config"
    folder.mkdir()
    (folder / "1-base.json").write_text('{"Name": "First", "StableAge": 5, /* kept */ "DicomAet": "BASE"}')
    (folder / "2-override.json").write_text('{"Name": "Second"}')
    (folder / "notes.txt").write_text("not read")
    config = load_config(folder, environ={})
    assert (config.name, config.stable_age, config.dicom_aet) == ("Second", 5, "BASE")


def test_environment_values_are_json_or_text() -> None:
    config = load_config(None, environ={"FASTPACS__STABLE_AGE": "7", "FASTPACS__DICOM_AET": "ENVAET"})
    assert (config.stable_age, config.dicom_aet) == (7, "ENVAET")
    with pytest.raises(ConfigurationError, match="StableAge"):
        load_config(None, environ={"FASTPACS__STABLE_AGE": "soon"})


def test_defaults_are_orthancs() -> None:
    config = load_config(None, environ={})
    assert (config.http_port, config.dicom_port, config.dicom_aet) == (8042, 4242, "ORTHANC")
    assert (config.stable_age, config.remote_access_allowed, config.authentication_required) == (
        60,
        False,
        False,
    )
    assert config.default_encoding == "Latin1"
