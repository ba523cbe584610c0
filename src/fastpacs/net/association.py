"""What the handlers need from an association: who is calling, and refusing a request."""

import logging
from typing import NamedTuple

from pynetdicom import evt
from pynetdicom.association import Association

from fastpacs.services.modalities import DicomRequest, ModalityRegistry

logger = logging.getLogger(__name__)


class Caller(NamedTuple):
    """The remote end of an association fastpacs accepted."""

    aet: str
    host: str
    called_aet: str


def caller_of(assoc: Association) -> Caller:
    primitive = assoc.requestor.primitive
    assert primitive is not None
    return Caller(
        aet=str(primitive.calling_ae_title).strip(),
        host=assoc.requestor.address,
        called_aet=str(primitive.called_ae_title).strip(),
    )


def is_refused(event: evt.Event, registry: ModalityRegistry, request: DicomRequest) -> bool:
    """Check that the caller may make this request; if not, abort the association (as Orthanc does)."""
    caller = caller_of(event.assoc)
    if registry.is_allowed(request, caller.aet, caller.host):
        return False
    logger.warning(
        "%s request refused: AET %r on %s is not allowed to make it (see Allow%s in DicomModalities)",
        request.value,
        caller.aet,
        caller.host,
        request.value,
    )
    event.assoc.abort()
    return True
