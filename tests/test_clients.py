"""fastpacs driven through the Python clients people use with Orthanc, as their users would.

pyorthanc (resource objects over the REST API) and orthanc-api-client
(Orthanc's own team's client): uploads, resource objects, find, tags,
modify and anonymize, archives, metadata and attachments (with revisions
through orthanc-api-client), changes, log levels. Each client gets the
server as it would get an Orthanc.
"""

import io
import zipfile
from collections.abc import Iterator

import httpx
import pydicom
import pyorthanc
import pytest
from orthanc_api_client import ChangeType, OrthancApiClient, ResourceNotFound
from orthanc_api_client.logging import LogLevel

from fastpacs.testing import ServerProcess, fastpacs_server
from tests.conftest import pydicom_file

CT_PATIENT = "fa558bce-587a86d3-ad0da9b3-9d043d9d-4f5c5718"
CT_STUDY = "8a8cf898-ca27c490-d0c7058c-929d0581-2bbf104d"
CT_INSTANCE = "f689ddd2-662f8fe1-8b18180d-ec2a2cee-937917af"
MR_STUDY = "7b5f82d7-011e7118-ffac48a8-9204a296-775e6f54"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = fastpacs_server(
        tmp_path_factory.mktemp("clients"),
        {"StableAge": 1, "UserMetadata": {"review": 1024}, "UserContentType": {"report": 1025}},
    ).start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def api(server: ServerProcess) -> OrthancApiClient:
    client = OrthancApiClient(server.base_url)
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as entries:
        entries.writestr("mr.dcm", pydicom_file("MR_small.dcm").read_bytes())
        entries.writestr("readme.txt", "not DICOM")
    assert client.upload_file(pydicom_file("CT_small.dcm")) == [CT_INSTANCE]
    assert len(client.upload(archive.getvalue())) == 1
    return client


@pytest.fixture(scope="module")
def orthanc(server: ServerProcess, api: OrthancApiClient) -> pyorthanc.Orthanc:
    return pyorthanc.Orthanc(server.base_url)


def test_api_client_resources_and_find(api: OrthancApiClient) -> None:
    assert api.is_alive()
    assert api.get_system()["ApiVersion"] >= 16
    assert api.is_orthanc_version_at_least(1, 10)
    assert not api.has_loaded_plugin("dicom-web")
    assert not api.is_plugin_version_at_least("dicom-web", 1, 0)
    assert api.get_statistics().instances_count == 2
    assert api.studies.lookup("1.3.6.1.4.1.5962.1.2.1.20040119072730.12322") == CT_STUDY
    study = api.studies.get(CT_STUDY)
    assert study.main_dicom_tags.get("StudyDescription") == "e+1"
    assert study.patient_main_dicom_tags.get("PatientID") == "1CT1"
    assert api.studies.get_modalities(CT_STUDY) == {"CT"}
    found = api.studies.find(query={"PatientName": "CompressedSamples*"})
    assert {item.orthanc_id for item in found} >= {CT_STUDY, MR_STUDY}
    tags = api.instances.get_tags(CT_INSTANCE)
    assert tags["PatientName"] == "CompressedSamples^CT1"
    assert api.instances.get_file(CT_INSTANCE) == pydicom_file("CT_small.dcm").read_bytes()
    with pytest.raises(ResourceNotFound):
        api.studies.get_json("00000000-00000000-00000000-00000000-00000000")


def test_api_client_metadata_and_attachments(api: OrthancApiClient) -> None:
    api.instances.set_string_metadata(CT_INSTANCE, "review", "checked")
    value, revision = api.instances.get_string_metadata_with_revision(CT_INSTANCE, "review")
    assert value == "checked"
    api.instances.set_string_metadata(CT_INSTANCE, "review", "checked twice", match_revision=revision)
    assert api.instances.get_string_metadata(CT_INSTANCE, "review") == "checked twice"
    assert api.instances.has_metadata(CT_INSTANCE, "review")

    api.studies.set_attachment(CT_STUDY, "report", content="first report", content_type="text/plain")
    content, revision = api.studies.get_attachment_with_revision(CT_STUDY, "report")
    assert content == b"first report"
    api.studies.set_attachment(CT_STUDY, "report", content="second report", match_revision=revision)
    assert api.studies.get_attachment(CT_STUDY, "report") == b"second report"


def test_api_client_modify_anonymize_and_changes(api: OrthancApiClient) -> None:
    _, last, _ = api.get_changes(since=0, limit=1000)
    modified = api.studies.modify(
        CT_STUDY, replace_tags={"StudyDescription": "modified"}, delete_original=False
    )
    assert api.studies.get(modified).main_dicom_tags.get("StudyDescription") == "modified"
    anonymized = api.studies.anonymize(MR_STUDY, delete_original=False)
    assert api.studies.get(anonymized).patient_main_dicom_tags.get("PatientID") != "4MR1"
    changes, _, _ = api.get_changes(since=last)
    assert ChangeType.NEW_STUDY in {change.change_type for change in changes}
    api.studies.delete(orthanc_ids=[modified, anonymized])
    assert not api.studies.exists(modified)


def test_api_client_log_level(api: OrthancApiClient) -> None:
    assert api.set_log_level(LogLevel.VERBOSE) == LogLevel.VERBOSE
    assert api.set_log_level(LogLevel.DEFAULT) == LogLevel.DEFAULT


def test_pyorthanc_resource_objects(orthanc: pyorthanc.Orthanc) -> None:
    patient = pyorthanc.Patient(CT_PATIENT, orthanc)
    assert patient.patient_id == "1CT1"
    assert patient.name == "CompressedSamples^CT1"
    [study] = patient.studies
    assert study.uid == "1.3.6.1.4.1.5962.1.2.1.20040119072730.12322"
    assert study.description == "e+1"
    [series] = study.series
    assert series.modality == "CT"
    [instance] = series.instances
    assert instance.id_ == CT_INSTANCE
    assert instance.file_size == len(pydicom_file("CT_small.dcm").read_bytes())
    assert instance.simplified_tags["PatientName"] == "CompressedSamples^CT1"
    assert instance.get_pydicom().SOPInstanceUID == "1.3.6.1.4.1.5962.1.1.1.1.1.20040119072730.12322"
    assert study.get_shared_tags(simplify=True)["StudyDescription"] == "e+1"
    assert orthanc.get_statistics()["CountStudies"] >= 2


def test_pyorthanc_upload_find_and_anonymize(orthanc: pyorthanc.Orthanc) -> None:
    dataset = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    dataset.PatientID = "PYORTHANC"
    dataset.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.501"
    dataset.SeriesInstanceUID = "1.2.826.0.1.3680043.8.498.502"
    dataset.SOPInstanceUID = "1.2.826.0.1.3680043.8.498.503"
    [instance] = pyorthanc.upload(orthanc, dataset)
    [patient] = pyorthanc.find_patients(orthanc, query={"PatientID": "PYORTHANC"})
    assert patient.id_ == instance.parent_patient.id_
    [study] = pyorthanc.find_studies(orthanc, query={"StudyInstanceUID": "1.2.826.0.1.3680043.8.498.501"})
    anonymized = study.anonymize(keep=["StudyDescription"])
    assert anonymized.description == "e+1"
    assert anonymized.patient_identifier != "PYORTHANC"
    modified = study.modify(replace={"StudyDescription": "by pyorthanc"})
    assert modified.description == "by pyorthanc"
    assert orthanc.delete_patients_id(patient.id_)["RemainingAncestor"] is None


def test_archives_through_both_clients(
    api: OrthancApiClient, orthanc: pyorthanc.Orthanc, tmp_path_factory: pytest.TempPathFactory
) -> None:
    folder = tmp_path_factory.mktemp("archives")
    api.studies.download_archive(CT_STUDY, str(folder / "study.zip"))
    api.studies.download_media(CT_STUDY, str(folder / "media.zip"))
    with zipfile.ZipFile(folder / "study.zip") as archive:
        [name] = archive.namelist()
        assert name.endswith(".dcm") and archive.read(name) == pydicom_file("CT_small.dcm").read_bytes()
    with zipfile.ZipFile(folder / "media.zip") as media:
        assert "DICOMDIR" in media.namelist() and "IMAGES/IM0" in media.namelist()
    zipped = pyorthanc.Study(CT_STUDY, orthanc).get_zip()
    with zipfile.ZipFile(io.BytesIO(zipped)) as archive:
        assert len(archive.namelist()) == 1


# pyorthanc's metadata PUT takes the value as ``data``, which httpx still sends as the raw body.
@pytest.mark.filterwarnings("ignore:Use 'content=<...>' to upload raw bytes/text content:DeprecationWarning")
def test_pyorthanc_metadata_and_attachments(orthanc: pyorthanc.Orthanc) -> None:
    instance = pyorthanc.Instance(CT_INSTANCE, orthanc)
    metadata = orthanc.get_instances_id_metadata(instance.id_, params={"expand": ""})
    assert metadata["TransferSyntax"] == "1.2.840.10008.1.2.1"
    assert metadata["SopClassUid"] == "1.2.840.10008.5.1.4.1.1.2"
    assert orthanc.get_instances_id_metadata_name(instance.id_, "Origin") == "RestApi"
    orthanc.put_instances_id_metadata_name(instance.id_, "1030", data="by pyorthanc")  # type: ignore[arg-type]
    assert orthanc.get_instances_id_metadata_name(instance.id_, "1030") == "by pyorthanc"
    assert "1030" in orthanc.get_instances_id_metadata(instance.id_)
    orthanc.delete_instances_id_metadata_name(instance.id_, "1030")
    with pytest.raises(httpx.HTTPError, match="HTTP code: 404"):
        orthanc.get_instances_id_metadata_name(instance.id_, "1030")

    study = instance.parent_study.id_
    orthanc.put_studies_id_attachments_name(study, "1040", content=b"pyorthanc attachment")
    assert orthanc.get_studies_id_attachments_name_data(study, "1040") == b"pyorthanc attachment"
    assert "1040" in orthanc.get_studies_id_attachments(study)
    orthanc.delete_studies_id_attachments_name(study, "1040")
    assert "1040" not in orthanc.get_studies_id_attachments(study)
