"""/tools/dicom-conformance: the DICOM conformance statement of fastpacs, as plain text.

Written from the SOP classes fastpacs's DICOM server offers (pynetdicom's
definitions): verification, storage of every storage SOP class, and
query/retrieve (find, move, get) in the patient and study roots; and from
the services the REST API drives as an SCU (/modalities/{name}/echo, store,
query, move; /queries/{id}/retrieve). The layout is Orthanc's, so that what
reads its statement reads this one: a section per service and role in
Orthanc's order, under the same titles, each SOP class on a line
``  Keyword | UID``.
"""

from functools import cache

from pydicom.uid import UID
from pynetdicom import sop_class
from pynetdicom.sop_class import (
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

from fastpacs.net.sop_classes import STORAGE_SOP_CLASSES
from fastpacs.net.transfer_syntaxes import KNOWN_TRANSFER_SYNTAXES, UNCOMPRESSED

FIND = (PatientRootQueryRetrieveInformationModelFind, StudyRootQueryRetrieveInformationModelFind)
MOVE = (PatientRootQueryRetrieveInformationModelMove, StudyRootQueryRetrieveInformationModelMove)
GET = (PatientRootQueryRetrieveInformationModelGet, StudyRootQueryRetrieveInformationModelGet)
_KEYWORDS = {uid: name for name, uid in vars(sop_class).items() if isinstance(uid, UID)}
"""pynetdicom's names of SOP classes, which know a few storage classes pydicom's dictionary lacks."""


def _keyword(uid: str) -> str:
    return UID(uid).keyword or _KEYWORDS.get(uid, uid)


def _heading(text: str, rule: str = "-") -> str:
    return f"{rule * len(text)}\n{text}\n{rule * len(text)}\n\n"


def _sop_classes(uids: list[str]) -> str:
    width = max(len(_keyword(uid)) for uid in uids)
    return "".join(f"  {_keyword(uid):<{width}} | {uid}\n" for uid in uids)


def _section(title: str, introduction: str, uids: list[str]) -> str:
    return f"{_heading(title)}{introduction}\n\n{_sop_classes(uids)}\n\n"


@cache
def conformance_statement() -> str:
    storage = list(STORAGE_SOP_CLASSES)
    return (
        _heading("DICOM Conformance Statement of fastpacs", rule="=")
        + "\n"
        + _section("Echo SCP Conformance", "fastpacs answers C-ECHO for:", [Verification])
        + _section("Store SCP Conformance", "fastpacs accepts C-STORE of these SOP Classes:", storage)
        + _section("Find SCP Conformance", "fastpacs answers C-FIND in these models:", list(FIND))
        + _section("Move SCP Conformance", "fastpacs answers C-MOVE in these models:", list(MOVE))
        + _section("Get SCP Conformance", "fastpacs answers C-GET in these models:", list(GET))
        + _section(
            "Echo SCU Conformance", "fastpacs sends C-ECHO (/modalities/{name}/echo) for:", [Verification]
        )
        + _heading("Store SCU Conformance")
        + "fastpacs sends C-STORE (/modalities/{name}/store) of every SOP Class of the\n"
        "Store SCP section above.\n\n\n"
        + _section("Find SCU Conformance", "fastpacs sends C-FIND (/modalities/{name}/query) in:", list(FIND))
        + _section(
            "Move SCU Conformance",
            "fastpacs sends C-MOVE (/modalities/{name}/move, /queries/{id}/retrieve) in:",
            list(MOVE),
        )
        + _section(
            "Transfer Syntaxes",
            "Storage presentation contexts are accepted in these transfer syntaxes, as far as\n"
            'the "AcceptedTransferSyntaxes" option allows (all of them by default):',
            list(KNOWN_TRANSFER_SYNTAXES),
        )
        + "Verification and query/retrieve presentation contexts are accepted in these:\n\n"
        + _sop_classes(list(UNCOMPRESSED))
        + "\n\n"
        + "Extended negotiation is not supported.\n\n\n"
        + _heading("Implementation notes")
        + "The DICOM network layer of fastpacs is pynetdicom; the SOP Classes above are\n"
        "pynetdicom's definitions of the services fastpacs registers.\n"
    )
