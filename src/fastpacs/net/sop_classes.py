"""The storage SOP classes fastpacs's DICOM server accepts: pynetdicom's list and the ones it lacks.

pynetdicom lists the storage SOP classes of the current standard. Orthanc
1.10.1 (through DCMTK) also accepts older ones that the standard has since
retired (and a few that pynetdicom leaves out), which modalities still in
service send: an ultrasound scanner of the 1990s stores its images as
Ultrasound Image Storage (Retired). They are accepted here as Orthanc
accepts them, and offered as an SCU the same way.
"""

from pydicom.uid import UID
from pynetdicom import AllStoragePresentationContexts
from pynetdicom.service_class import StorageServiceClass
from pynetdicom.sop_class import register_uid

STORAGE_NOT_IN_PYNETDICOM = (
    "1.2.840.10008.5.1.1.27",  # Stored Print Storage (retired)
    "1.2.840.10008.5.1.1.29",  # Hardcopy Grayscale Image Storage (retired)
    "1.2.840.10008.5.1.1.30",  # Hardcopy Color Image Storage (retired)
    "1.2.840.10008.5.1.4.1.1.3",  # Ultrasound Multi-frame Image Storage (retired)
    "1.2.840.10008.5.1.4.1.1.5",  # Nuclear Medicine Image Storage (retired)
    "1.2.840.10008.5.1.4.1.1.6",  # Ultrasound Image Storage (retired)
    "1.2.840.10008.5.1.4.1.1.8",  # Standalone Overlay Storage (retired)
    "1.2.840.10008.5.1.4.1.1.9",  # Standalone Curve Storage (retired)
    "1.2.840.10008.5.1.4.1.1.9.1",  # Waveform Storage - Trial (retired)
    "1.2.840.10008.5.1.4.1.1.10",  # Standalone Modality LUT Storage (retired)
    "1.2.840.10008.5.1.4.1.1.11",  # Standalone VOI LUT Storage (retired)
    "1.2.840.10008.5.1.4.1.1.12.3",  # X-Ray Angiographic Bi-Plane Image Storage (retired)
    "1.2.840.10008.5.1.4.1.1.77.1",  # VL Image Storage - Trial (retired)
    "1.2.840.10008.5.1.4.1.1.77.2",  # VL Multi-frame Image Storage - Trial (retired)
    "1.2.840.10008.5.1.4.1.1.88.1",  # Text SR Storage - Trial (retired)
    "1.2.840.10008.5.1.4.1.1.88.2",  # Audio SR Storage - Trial (retired)
    "1.2.840.10008.5.1.4.1.1.88.3",  # Detail SR Storage - Trial (retired)
    "1.2.840.10008.5.1.4.1.1.88.4",  # Comprehensive SR Storage - Trial (retired)
    "1.2.840.10008.5.1.4.1.1.129",  # Standalone PET Curve Storage (retired)
    "1.2.840.10008.5.1.4.34.1",  # RT Beams Delivery Instruction Storage - Trial (retired)
    "1.2.840.10008.5.1.4.43.1",  # Generic Implant Template Storage
    "1.2.840.10008.5.1.4.44.1",  # Implant Assembly Template Storage
    "1.2.840.10008.5.1.4.45.1",  # Implant Template Group Storage
)

STORAGE_SOP_CLASSES = tuple(
    sorted(
        {context.abstract_syntax for context in AllStoragePresentationContexts}
        | set(STORAGE_NOT_IN_PYNETDICOM)
    )
)
"""Every storage SOP class the server accepts (in ``AcceptedTransferSyntaxes``), sorted."""


def register_storage_not_in_pynetdicom() -> None:
    """Have pynetdicom's storage service answer C-STOREs of :data:`STORAGE_NOT_IN_PYNETDICOM`.

    Without it, pynetdicom accepts their presentation contexts but has no
    service for their C-STORE requests. Registering the same UID again is harmless.
    """
    for uid in STORAGE_NOT_IN_PYNETDICOM:
        register_uid(uid, UID(uid).keyword, StorageServiceClass)
