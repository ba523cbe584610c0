"""Error answers compared with Orthanc: unknown routes and IDs, bad uploads, wrong methods.

Both servers hold CT_small and MR_small; every call below is refused, or
answered without changing what is stored (AlreadyStored, a ZIP of known
files), except the last uploads, which are compared afterwards.
"""

import io

import pytest

from tests.differential.data import test_file, zip_of
from tests.differential.harness import Call, ServerPair, get

pytestmark = pytest.mark.reference

CT = {
    "patients": "fa558bce-587a86d3-ad0da9b3-9d043d9d-4f5c5718",
    "studies": "8a8cf898-ca27c490-d0c7058c-929d0581-2bbf104d",
    "series": "93034833-163e42c3-bc9a428b-194620cf-2c5799e5",
    "instances": "f689ddd2-662f8fe1-8b18180d-ec2a2cee-937917af",
}
UNKNOWN_ID = "00000000-00000000-00000000-00000000-00000000"
LEVELS = tuple(CT)
WRONG_LEVEL = {"patients": "studies", "studies": "series", "series": "instances", "instances": "patients"}
RELATIVE = {"patients": "studies", "studies": "series", "series": "instances", "instances": "patient"}


@pytest.fixture(scope="module")
def stored(pair: ServerPair) -> ServerPair:
    for name in ("CT_small.dcm", "MR_small.dcm"):
        orthanc, fastpacs = pair.send(
            Call(f"upload {name}", "POST", "/instances", body=test_file(name).read_bytes())
        )
        assert (orthanc.status, fastpacs.status) == (200, 200)
    return pair


def unknown_resource_calls() -> list[Call]:
    calls = [
        get("unknown route", "/nonexistent"),
        get("unknown route below a level", "/patients/nonexistent/nosuchroute"),
        get("unknown file", f"/instances/{UNKNOWN_ID}/file"),
        get("unknown file, malformed ID", "/instances/nonexistent/file"),
    ]
    for level in LEVELS:
        calls += [
            get(f"unknown {level}", f"/{level}/{UNKNOWN_ID}"),
            get(f"malformed ID {level}", f"/{level}/not-an-id"),
            get(f"upper-case ID {level}", f"/{level}/{CT[level].upper()}"),
            get(f"wrong-level ID {level}", f"/{level}/{CT[WRONG_LEVEL[level]]}"),
            get(f"unknown {level} relatives", f"/{level}/{UNKNOWN_ID}/{RELATIVE[level]}"),
            get(f"wrong-level ID {level} relatives", f"/{level}/{CT[WRONG_LEVEL[level]]}/{RELATIVE[level]}"),
            get(f"malformed ID {level} relatives", f"/{level}/not-an-id/{RELATIVE[level]}"),
            Call(f"delete unknown {level}", "DELETE", f"/{level}/{UNKNOWN_ID}"),
            Call(f"delete wrong-level ID {level}", "DELETE", f"/{level}/{CT[WRONG_LEVEL[level]]}"),
            Call(f"delete malformed ID {level}", "DELETE", f"/{level}/not-an-id"),
        ]
    return calls


def wrong_method_calls() -> list[Call]:
    calls = [
        Call("put system", "PUT", "/system"),
        Call("delete system", "DELETE", "/system"),
        Call("post statistics", "POST", "/statistics", body=b"{}"),
        Call("put changes", "PUT", "/changes", body=b"{}"),
        Call("get lookup", "GET", "/tools/lookup"),
        Call("delete instances list", "DELETE", "/instances"),
        Call("put instances list", "PUT", "/instances", body=b""),
        Call("post instance file", "POST", f"/instances/{CT['instances']}/file", body=b""),
    ]
    for level in LEVELS:
        calls += [
            Call(f"put {level} resource", "PUT", f"/{level}/{CT[level]}", body=b"{}"),
            Call(f"post {level} resource", "POST", f"/{level}/{CT[level]}", body=b"{}"),
            Call(f"delete {level} relatives", "DELETE", f"/{level}/{CT[level]}/{RELATIVE[level]}"),
        ]
        if level != "instances":
            calls.append(Call(f"post {level} list", "POST", f"/{level}", body=b"{}"))
    return calls


def bad_upload_calls() -> list[Call]:
    calls = [
        Call("upload not DICOM", "POST", "/instances", body=b"hello"),
        Call("upload empty body", "POST", "/instances", body=b""),
        Call(
            "upload JSON",
            "POST",
            "/instances",
            body=b'{"ID": 1}',
            headers={"content-type": "application/json"},
        ),
        Call("upload a DICOM preamble only", "POST", "/instances", body=bytes(128) + b"DICM"),
        Call("upload a broken ZIP", "POST", "/instances", body=zip_of({"a.dcm": b"x"})[:30]),
        Call("upload a ZIP without DICOM", "POST", "/instances", body=zip_of({"readme.txt": b"hello"})),
        Call("upload an empty ZIP", "POST", "/instances", body=zip_of({})),
    ]
    for name in (
        "MR_truncated.dcm",
        "rtplan_truncated.dcm",
        "priv_SQ.dcm",
        "nested_priv_SQ.dcm",
        "no_meta.dcm",
    ):
        data = test_file(name).read_bytes()
        calls.append(Call(f"upload {name}", "POST", "/instances", body=data))
    ct = test_file("CT_small.dcm").read_bytes()
    calls += [
        Call("upload CT_small cut in the middle", "POST", "/instances", body=ct[: len(ct) // 2]),
        Call("upload CT_small without its last byte", "POST", "/instances", body=ct[:-1]),
        Call("upload CT_small header only", "POST", "/instances", body=ct[:400]),
        Call("upload CT_small cut in its meta group", "POST", "/instances", body=ct[:300]),
        Call("upload CT_small then 3 bytes", "POST", "/instances", body=ct + b"abc"),
        Call("upload CT_small then 7 zero bytes", "POST", "/instances", body=ct + bytes(7)),
        Call("upload CT_small then 8 zero bytes", "POST", "/instances", body=ct + bytes(8)),
    ]
    for name in ("MR_small_RLE.dcm", "JPEG2000.dcm"):  # encapsulated pixels cut before their delimiter
        data = test_file(name).read_bytes()
        calls.append(
            Call(f"upload {name} cut in its pixels", "POST", "/instances", body=data[: len(data) - 100])
        )
    jpeg = test_file("JPEG-lossy.dcm").read_bytes()
    calls += [  # the Sequence Delimitation Item that ends the pixels: its tag, then a length cut short
        Call(f"upload JPEG-lossy.dcm cut {cut} bytes short", "POST", "/instances", body=jpeg[:-cut])
        for cut in (1, 4)
    ]
    nested = test_file("nested_priv_SQ.dcm").read_bytes()  # its sequence whole, the pixels' header cut
    calls.append(Call("upload nested_priv_SQ.dcm cut 8 bytes short", "POST", "/instances", body=nested[:-8]))
    return calls


@pytest.mark.parametrize("call", unknown_resource_calls(), ids=str)
def test_unknown_resources(stored: ServerPair, call: Call) -> None:
    check = stored.checker()
    check.compare(call)
    check.verdict()


@pytest.mark.parametrize("call", wrong_method_calls(), ids=str)
def test_wrong_method(stored: ServerPair, call: Call) -> None:
    check = stored.checker()
    check.compare(call)
    check.verdict()


@pytest.mark.parametrize("call", bad_upload_calls(), ids=str)
def test_bad_upload(stored: ServerPair, call: Call) -> None:
    check = stored.checker()
    check.compare(call)
    check.verdict()


def test_nothing_was_stored_by_the_bad_uploads(stored: ServerPair) -> None:
    check = stored.checker()
    check.compare_all(
        [get("statistics after errors", "/statistics"), get("instances after errors", "/instances")]
    )
    check.verdict()


def test_already_stored_in_another_transfer_syntax(stored: ServerPair) -> None:
    check = stored.checker()
    data = test_file("MR_small_implicit.dcm").read_bytes()
    check.compare(Call("upload MR_small_implicit", "POST", "/instances", body=data))
    mr = "2f859814-2cf8fe4f-c7963e7d-d32c018d-66fc8cfa"
    check.compare_all(
        [
            get("MR after re-upload", f"/instances/{mr}"),
            get("MR file after re-upload", f"/instances/{mr}/file"),
        ]
    )
    check.verdict()


def test_zip_upload_skips_what_is_not_dicom(stored: ServerPair) -> None:
    archive = zip_of(
        {
            "readme.txt": b"not DICOM",
            "ct/CT_small.dcm": test_file("CT_small.dcm").read_bytes(),
            "rtplan.dcm": test_file("rtplan.dcm").read_bytes(),
            "truncated.dcm": test_file("MR_truncated.dcm").read_bytes(),
            "folder/": b"",
        }
    )
    check = stored.checker()
    check.compare(Call("upload zip", "POST", "/instances", body=archive))
    check.compare_all([get("statistics after zip", "/statistics"), get("instances after zip", "/instances")])
    check.verdict()


def test_multipart_upload(stored: ServerPair) -> None:
    boundary = "fastpacs-differential"
    body = io.BytesIO()
    for name in ("rtstruct.dcm", "test-SR.dcm"):
        body.write(
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            "Content-Type: application/dicom\r\n\r\n".encode()
        )
        body.write(test_file(name).read_bytes() + b"\r\n")
    body.write(f"--{boundary}--\r\n".encode())
    headers = {"content-type": f"multipart/form-data; boundary={boundary}"}
    check = stored.checker()
    check.compare(Call("upload multipart", "POST", "/instances", body=body.getvalue(), headers=headers))
    check.compare_all(
        [get("statistics after multipart", "/statistics"), get("instances after multipart", "/instances")]
    )
    check.verdict()
