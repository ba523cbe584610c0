"""Orthanc's groups of transfer syntaxes (``JpegTransferSyntaxAccepted``...), compared with Orthanc.

Each configuration starts both servers. Compared: the list of
``GET /tools/accepted-transfer-syntaxes``, and the transfer syntaxes each DICOM
server accepts when a caller proposes CT Image Storage in every known one
(one presentation context each).
"""

from pathlib import Path

import pytest
from pynetdicom import AE, build_context
from pynetdicom.sop_class import CTImageStorage

from fastpacs.net.transfer_syntaxes import KNOWN_TRANSFER_SYNTAXES
from fastpacs.testing import ServerProcess
from tests.differential.conftest import COMMON_OPTIONS
from tests.differential.harness import ServerPair

pytestmark = [pytest.mark.reference, pytest.mark.slow]

CONFIGURATIONS = {
    "groups removed from the default": {
        "JpegTransferSyntaxAccepted": False,
        "JpegLosslessTransferSyntaxAccepted": False,
        "DeflatedTransferSyntaxAccepted": False,
        "H265TransferSyntaxAccepted": True,
    },
    "groups added to a narrow list": {
        "AcceptedTransferSyntaxes": ["1.2.840.10008.1.2", "1.2.840.10008.1.2.4.5?"],
        "RleTransferSyntaxAccepted": True,
        "Jpeg2000TransferSyntaxAccepted": True,
        "Mpeg4TransferSyntaxAccepted": True,
        "JpipTransferSyntaxAccepted": False,
    },
}


def _accepted_by_association(server: ServerProcess) -> list[str]:
    """The transfer syntaxes of the contexts the DICOM server accepts, one context proposed per syntax."""
    ae = AE(ae_title="GROUPS")
    contexts = [build_context(CTImageStorage, [uid]) for uid in KNOWN_TRANSFER_SYNTAXES]
    assoc = ae.associate("127.0.0.1", server.dicom_port, contexts=contexts, ae_title=server.aet)
    try:
        assert assoc.is_established, f"{server.name} refused the association"
        return sorted(context.transfer_syntax[0] for context in assoc.accepted_contexts)
    finally:
        assoc.release()


@pytest.mark.parametrize("name", list(CONFIGURATIONS))
def test_transfer_syntax_groups_as_orthanc(tmp_path: Path, name: str) -> None:
    pair = ServerPair.start(tmp_path, {**COMMON_OPTIONS, **CONFIGURATIONS[name]})
    try:
        listed = [
            client.get("/tools/accepted-transfer-syntaxes").json()
            for client in (pair.orthanc_client, pair.fastpacs_client)
        ]
        assert listed[1] == listed[0]
        assert _accepted_by_association(pair.fastpacs) == _accepted_by_association(pair.orthanc)
        assert len(listed[0]) < len(KNOWN_TRANSFER_SYNTAXES)  # the options changed something
    finally:
        pair.stop()
