"""The server starts, stores a file and gives it back byte for byte."""

import httpx

from tests.conftest import pydicom_file


def test_upload_and_download_ct(client: httpx.Client) -> None:
    data = pydicom_file("CT_small.dcm").read_bytes()
    answer = client.post("/instances", content=data)
    assert answer.status_code == 200
    assert answer.json()["ID"] == "f689ddd2-662f8fe1-8b18180d-ec2a2cee-937917af"
    assert client.get(f"{answer.json()['Path']}/file").content == data
