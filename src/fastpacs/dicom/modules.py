"""The DICOM modules of /{level}/{id}/module: the attributes that describe each level.

Each level has one module of PS3.3 (Information Object Definitions):

* patient: Patient Module (C.7.1.1);
* study: General Study Module (C.7.2.1);
* series: General Series Module (C.7.3.1);
* instance: SOP Common Module (C.12.1).

The tables list the attributes of these modules as Orthanc 1.10.1 knows
them, which is the standard of around 2011: attributes added to the modules
since (Strain Description, Patient's Birth Date in Alternative Calendar,
Quality Control Subject...) are not in them, and Orthanc's General Series
Module has Smallest but not Largest Pixel Value in Series. Verified against
the reference Orthanc with a file holding every attribute of the data
dictionary (tests/differential/test_api_rest_vs_orthanc.py).
"""

from fastpacs.dicom.ids import Level
from fastpacs.dicom.tags import TagJson, tag_key

PATIENT_MODULE = (
    (0x00081120, "ReferencedPatientSequence"),
    (0x00100010, "PatientName"),
    (0x00100020, "PatientID"),
    (0x00100021, "IssuerOfPatientID"),
    (0x00100024, "IssuerOfPatientIDQualifiersSequence"),
    (0x00100030, "PatientBirthDate"),
    (0x00100032, "PatientBirthTime"),
    (0x00100040, "PatientSex"),
    (0x00101000, "OtherPatientIDs"),
    (0x00101001, "OtherPatientNames"),
    (0x00101002, "OtherPatientIDsSequence"),
    (0x00102160, "EthnicGroup"),
    (0x00102201, "PatientSpeciesDescription"),
    (0x00102202, "PatientSpeciesCodeSequence"),
    (0x00102292, "PatientBreedDescription"),
    (0x00102293, "PatientBreedCodeSequence"),
    (0x00102294, "BreedRegistrationSequence"),
    (0x00102297, "ResponsiblePerson"),
    (0x00102298, "ResponsiblePersonRole"),
    (0x00102299, "ResponsibleOrganization"),
    (0x00104000, "PatientComments"),
    (0x00120062, "PatientIdentityRemoved"),
    (0x00120063, "DeidentificationMethod"),
    (0x00120064, "DeidentificationMethodCodeSequence"),
)

GENERAL_STUDY_MODULE = (
    (0x00080020, "StudyDate"),
    (0x00080030, "StudyTime"),
    (0x00080050, "AccessionNumber"),
    (0x00080051, "IssuerOfAccessionNumberSequence"),
    (0x00080090, "ReferringPhysicianName"),
    (0x00080096, "ReferringPhysicianIdentificationSequence"),
    (0x00081030, "StudyDescription"),
    (0x00081032, "ProcedureCodeSequence"),
    (0x00081048, "PhysiciansOfRecord"),
    (0x00081049, "PhysiciansOfRecordIdentificationSequence"),
    (0x00081060, "NameOfPhysiciansReadingStudy"),
    (0x00081062, "PhysiciansReadingStudyIdentificationSequence"),
    (0x00081110, "ReferencedStudySequence"),
    (0x0020000D, "StudyInstanceUID"),
    (0x00200010, "StudyID"),
    (0x00321034, "RequestingServiceCodeSequence"),
    (0x00401012, "ReasonForPerformedProcedureCodeSequence"),
)

GENERAL_SERIES_MODULE = (
    (0x00080021, "SeriesDate"),
    (0x00080031, "SeriesTime"),
    (0x00080060, "Modality"),
    (0x0008103E, "SeriesDescription"),
    (0x0008103F, "SeriesDescriptionCodeSequence"),
    (0x00081050, "PerformingPhysicianName"),
    (0x00081052, "PerformingPhysicianIdentificationSequence"),
    (0x00081070, "OperatorsName"),
    (0x00081072, "OperatorIdentificationSequence"),
    (0x00081111, "ReferencedPerformedProcedureStepSequence"),
    (0x00081250, "RelatedSeriesSequence"),
    (0x00102210, "AnatomicalOrientationType"),
    (0x00180015, "BodyPartExamined"),
    (0x00181030, "ProtocolName"),
    (0x00185100, "PatientPosition"),
    (0x0020000E, "SeriesInstanceUID"),
    (0x00200011, "SeriesNumber"),
    (0x00200060, "Laterality"),
    (0x00280108, "SmallestPixelValueInSeries"),
    (0x00400244, "PerformedProcedureStepStartDate"),
    (0x00400245, "PerformedProcedureStepStartTime"),
    (0x00400253, "PerformedProcedureStepID"),
    (0x00400254, "PerformedProcedureStepDescription"),
    (0x00400260, "PerformedProtocolCodeSequence"),
    (0x00400275, "RequestAttributesSequence"),
    (0x00400280, "CommentsOnThePerformedProcedureStep"),
)

SOP_COMMON_MODULE = (
    (0x00080005, "SpecificCharacterSet"),
    (0x00080012, "InstanceCreationDate"),
    (0x00080013, "InstanceCreationTime"),
    (0x00080014, "InstanceCreatorUID"),
    (0x00080016, "SOPClassUID"),
    (0x00080018, "SOPInstanceUID"),
    (0x0008001A, "RelatedGeneralSOPClassUID"),
    (0x0008001B, "OriginalSpecializedSOPClassUID"),
    (0x00080110, "CodingSchemeIdentificationSequence"),
    (0x00080201, "TimezoneOffsetFromUTC"),
    (0x0018A001, "ContributingEquipmentSequence"),
    (0x00200013, "InstanceNumber"),
    (0x00280303, "LongitudinalTemporalInformationModified"),
    (0x0040A390, "HL7StructuredDocumentReferenceSequence"),
    (0x01000410, "SOPInstanceStatus"),
    (0x01000420, "SOPAuthorizationDateTime"),
    (0x01000424, "SOPAuthorizationComment"),
    (0x01000426, "AuthorizationEquipmentCertificationNumber"),
    (0x04000500, "EncryptedAttributesSequence"),
    (0x04000561, "OriginalAttributesSequence"),
    (0x4FFE0001, "MACParametersSequence"),
)

MODULES: dict[Level, tuple[tuple[int, str], ...]] = {
    Level.PATIENT: PATIENT_MODULE,
    Level.STUDY: GENERAL_STUDY_MODULE,
    Level.SERIES: GENERAL_SERIES_MODULE,
    Level.INSTANCE: SOP_COMMON_MODULE,
}
_MODULE_KEYS = {level: frozenset(tag_key(tag) for tag, _ in module) for level, module in MODULES.items()}


def module_tags(full: TagJson, level: Level) -> TagJson:
    """The elements of an instance's full form that belong to the module of ``level``."""
    keys = _MODULE_KEYS[level]
    return {key: entry for key, entry in full.items() if key in keys}
