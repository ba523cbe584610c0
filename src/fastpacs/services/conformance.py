"""/tools/dicom-conformance: the DICOM conformance statement of fastpacs, as plain text.

Written from the SOP classes fastpacs's DICOM server offers (pynetdicom's
definitions): verification, storage of every storage SOP class, and
query/retrieve (find, move, get) in the patient and study roots.
"""

from functools import cache

from pydicom.uid import UID
from pynetdicom import AllStoragePresentationContexts
from pynetdicom.sop_class import (
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

QUERY_RETRIEVE = (
    PatientRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelMove,
    PatientRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelGet,
)


def _title(text: str) -> str:
    return f"{'-' * len(text)}\n{text}\n{'-' * len(text)}\n"


def _sop_class_lines(uids: list[str]) -> str:
    return "".join(f"  {uid.name:<70} {uid}\n" for uid in uids)


@cache
def conformance_statement() -> str:
    storage = sorted({context.abstract_syntax for context in AllStoragePresentationContexts})
    heading = "DICOM Conformance Statement of fastpacs"
    return (
        f"{'=' * len(heading)}\n{heading}\n{'=' * len(heading)}\n\n"
        "fastpacs is a DICOM archive with the REST API of Orthanc 1.10.1. Its DICOM server plays\n"
        "the SCP role of the services below; the REST API drives the same services as an SCU\n"
        "(/modalities/{name}/echo, store, query, move).\n\n"
        f"{_title('Echo SCP Conformance')}\n"
        "Verification of associations (C-ECHO):\n"
        f"{_sop_class_lines([Verification])}\n"
        f"{_title('Store SCP Conformance')}\n"
        "Storage (C-STORE) of instances of the following SOP classes:\n"
        f"{_sop_class_lines([UID(uid) for uid in storage])}\n"
        "Transfer syntaxes: those of the AcceptedTransferSyntaxes option (all by default).\n\n"
        f"{_title('Query/Retrieve SCP Conformance')}\n"
        "C-FIND, C-MOVE and C-GET at the patient, study, series and instance levels:\n"
        f"{_sop_class_lines(list(QUERY_RETRIEVE))}"
    )
