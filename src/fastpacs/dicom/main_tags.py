"""The main DICOM tags Orthanc 1.10.1 keeps for each level.

These are the tags shown under ``MainDicomTags`` in the resource JSON, the
ones /tools/find and C-FIND answer from the index. A resource takes them
from the first instance that created it.
"""

from fastpacs.dicom.ids import Level

MainTags = dict[str, str]
"""Keyword → value, only for the tags present in the file."""

MAIN_TAGS: dict[Level, tuple[tuple[int, str], ...]] = {
    Level.PATIENT: (
        (0x00100010, "PatientName"),
        (0x00100020, "PatientID"),
        (0x00100030, "PatientBirthDate"),
        (0x00100040, "PatientSex"),
        (0x00101000, "OtherPatientIDs"),
    ),
    Level.STUDY: (
        (0x00080020, "StudyDate"),
        (0x00080030, "StudyTime"),
        (0x00080050, "AccessionNumber"),
        (0x00080080, "InstitutionName"),
        (0x00080090, "ReferringPhysicianName"),
        (0x00081030, "StudyDescription"),
        (0x00200010, "StudyID"),
        (0x0020000D, "StudyInstanceUID"),
        (0x00321032, "RequestingPhysician"),
        (0x00321060, "RequestedProcedureDescription"),
    ),
    Level.SERIES: (
        (0x00080021, "SeriesDate"),
        (0x00080031, "SeriesTime"),
        (0x00080060, "Modality"),
        (0x00080070, "Manufacturer"),
        (0x00081010, "StationName"),
        (0x0008103E, "SeriesDescription"),
        (0x00081070, "OperatorsName"),
        (0x00180010, "ContrastBolusAgent"),
        (0x00180015, "BodyPartExamined"),
        (0x00180024, "SequenceName"),
        (0x00181030, "ProtocolName"),
        (0x00181090, "CardiacNumberOfImages"),
        (0x00181400, "AcquisitionDeviceProcessingDescription"),
        (0x0020000E, "SeriesInstanceUID"),
        (0x00200011, "SeriesNumber"),
        (0x00200037, "ImageOrientationPatient"),
        (0x00200105, "NumberOfTemporalPositions"),
        (0x00201002, "ImagesInAcquisition"),
        (0x00400254, "PerformedProcedureStepDescription"),
        (0x00540081, "NumberOfSlices"),
        (0x00540101, "NumberOfTimeSlices"),
        (0x00541000, "SeriesType"),
    ),
    Level.INSTANCE: (
        (0x00080012, "InstanceCreationDate"),
        (0x00080013, "InstanceCreationTime"),
        (0x00080018, "SOPInstanceUID"),
        (0x00200012, "AcquisitionNumber"),
        (0x00200013, "InstanceNumber"),
        (0x00200032, "ImagePositionPatient"),
        (0x00200037, "ImageOrientationPatient"),
        (0x00200100, "TemporalPositionIdentifier"),
        (0x00204000, "ImageComments"),
        (0x00280008, "NumberOfFrames"),
        (0x00541330, "ImageIndex"),
    ),
}
