"""The basic profiles of PS3.15 Annex E (Table E.1-1), as Orthanc 1.10.1 applies them.

Three editions of the table are supported, chosen by ``DicomVersion``:
``2008``, ``2017c`` and ``2021b`` (the default of Orthanc 1.10.1; the
OpenAPI description names 2017c, but the server it describes moved on).
For each attribute the table below gives the action of each edition:

- ``X`` remove the attribute (everywhere, sequence items included);
- ``Z`` replace it by an empty value (a sequence: by an empty sequence);
  the standard's ``D`` (a dummy value) is done as ``Z`` too, as Orthanc does;
- ``U`` replace the UID by a new one, consistently inside one request;
- ``.`` the edition keeps the attribute.

Attributes the anonymizer handles itself are not listed: PatientName and
PatientID (replaced by generated values), the Study, Series and SOP
Instance UIDs (always regenerated), PatientIdentityRemoved and
DeidentificationMethod (set), and the Referenced/Source Image Sequences,
whose items keep their content with their UIDs replaced. Private
attributes are removed unless ``KeepPrivateTags`` is set.

The 2017c and 2021b columns are the standard's tables as Orthanc 1.10.1
applies them (checked against its observed answers on a file holding every
attribute of the data dictionary); the 2008 column is the subset of the 2008
table Orthanc implements. Compound actions keep their first letter
(``X/Z/D`` → ``X``, ``Z/D`` → ``Z``).
"""

from dataclasses import dataclass
from enum import StrEnum

from fastpacs import __version__
from fastpacs.errors import ErrorCode, OrthancError


class Action(StrEnum):
    REMOVE = "X"
    EMPTY = "Z"
    NEW_UID = "U"


VERSIONS = ("2008", "2017c", "2021b")
DEFAULT_VERSION = "2021b"
"""What Orthanc 1.10.1 applies when the request names no ``DicomVersion``."""

REPEATING_GROUPS_REMOVED = (
    # (first group, last group, first element, last element): the standard's "X" for repeating groups.
    (0x5000, 0x50FF, 0x0000, 0xFFFF),  # Curve Data
    (0x6000, 0x60FF, 0x3000, 0x3000),  # Overlay Data
    (0x6000, 0x60FF, 0x4000, 0x4000),  # Overlay Comments
)
"""Removed by the 2017c and 2021b profiles (the 2008 subset has none)."""

_METHODS = {
    "2008": "PS 3.15-2008 Table E.1-1",
    "2017c": "PS 3.15-2017c Table E.1-1 Basic Profile",
    "2021b": "PS 3.15-2021b Table E.1-1 Basic Profile",
}
SOFTWARE = f"fastpacs {__version__}"
"""Stands where Orthanc writes ``Orthanc 1.10.1`` in DeidentificationMethod."""

# tag      2008 2017c 2021b  keyword
_TABLE = """
0000,1000  .  X  X  AffectedSOPInstanceUID
0000,1001  .  U  U  RequestedSOPInstanceUID
0002,0003  .  U  U  MediaStorageSOPInstanceUID
0004,1511  .  U  U  ReferencedSOPInstanceUIDInFile
0008,0014  U  U  U  InstanceCreatorUID
0008,0015  .  X  X  InstanceCoercionDateTime
0008,0020  .  Z  Z  StudyDate
0008,0021  .  X  X  SeriesDate
0008,0022  .  X  X  AcquisitionDate
0008,0023  .  Z  Z  ContentDate
0008,0024  .  X  X  OverlayDate
0008,0025  .  X  X  CurveDate
0008,002a  .  X  X  AcquisitionDateTime
0008,0030  .  Z  Z  StudyTime
0008,0031  .  X  X  SeriesTime
0008,0032  .  X  X  AcquisitionTime
0008,0033  .  Z  Z  ContentTime
0008,0034  .  X  X  OverlayTime
0008,0035  .  X  X  CurveTime
0008,0050  X  Z  Z  AccessionNumber
0008,0058  .  U  U  FailedSOPInstanceUIDList
0008,0080  X  X  X  InstitutionName
0008,0081  X  X  X  InstitutionAddress
0008,0082  .  X  X  InstitutionCodeSequence
0008,0090  X  Z  Z  ReferringPhysicianName
0008,0092  X  X  X  ReferringPhysicianAddress
0008,0094  X  X  X  ReferringPhysicianTelephoneNumbers
0008,0096  .  X  X  ReferringPhysicianIdentificationSequence
0008,009c  .  Z  Z  ConsultingPhysicianName
0008,009d  .  X  X  ConsultingPhysicianIdentificationSequence
0008,0201  .  X  X  TimezoneOffsetFromUTC
0008,1010  X  X  X  StationName
0008,1030  X  X  X  StudyDescription
0008,103e  X  X  X  SeriesDescription
0008,1040  X  X  X  InstitutionalDepartmentName
0008,1041  .  .  X  InstitutionalDepartmentTypeCodeSequence
0008,1048  X  X  X  PhysiciansOfRecord
0008,1049  .  X  X  PhysiciansOfRecordIdentificationSequence
0008,1050  X  X  X  PerformingPhysicianName
0008,1052  .  X  X  PerformingPhysicianIdentificationSequence
0008,1060  X  X  X  NameOfPhysiciansReadingStudy
0008,1062  .  X  X  PhysiciansReadingStudyIdentificationSequence
0008,1070  X  X  X  OperatorsName
0008,1072  .  X  X  OperatorIdentificationSequence
0008,1080  X  X  X  AdmittingDiagnosesDescription
0008,1084  .  X  X  AdmittingDiagnosesCodeSequence
0008,1110  .  X  X  ReferencedStudySequence
0008,1111  .  X  X  ReferencedPerformedProcedureStepSequence
0008,1120  .  X  X  ReferencedPatientSequence
0008,1155  U  U  U  ReferencedSOPInstanceUID
0008,1195  .  U  U  TransactionUID
0008,2111  X  X  X  DerivationDescription
0008,3010  .  U  U  IrradiationEventUID
0008,4000  .  X  X  IdentifyingComments
0010,0021  .  X  X  IssuerOfPatientID
0010,0030  X  Z  Z  PatientBirthDate
0010,0032  X  X  X  PatientBirthTime
0010,0040  X  Z  Z  PatientSex
0010,0050  .  X  X  PatientInsurancePlanCodeSequence
0010,0101  .  X  X  PatientPrimaryLanguageCodeSequence
0010,0102  .  X  X  PatientPrimaryLanguageModifierCodeSequence
0010,1000  X  X  X  OtherPatientIDs
0010,1001  X  X  X  OtherPatientNames
0010,1002  .  X  X  OtherPatientIDsSequence
0010,1005  .  X  X  PatientBirthName
0010,1010  X  X  X  PatientAge
0010,1020  X  X  X  PatientSize
0010,1030  X  X  X  PatientWeight
0010,1040  X  X  X  PatientAddress
0010,1050  .  X  X  InsurancePlanIdentification
0010,1060  .  X  X  PatientMotherBirthName
0010,1080  .  X  X  MilitaryRank
0010,1081  .  X  X  BranchOfService
0010,1090  X  X  X  MedicalRecordLocator
0010,1100  .  X  X  ReferencedPatientPhotoSequence
0010,2000  X  X  X  MedicalAlerts
0010,2110  .  X  X  Allergies
0010,2150  .  X  X  CountryOfResidence
0010,2152  .  X  X  RegionOfResidence
0010,2154  X  X  X  PatientTelephoneNumbers
0010,2155  .  X  X  PatientTelecomInformation
0010,2160  X  X  X  EthnicGroup
0010,2180  X  X  X  Occupation
0010,21a0  .  X  X  SmokingStatus
0010,21b0  X  X  X  AdditionalPatientHistory
0010,21c0  .  X  X  PregnancyStatus
0010,21d0  .  X  X  LastMenstrualDate
0010,21f0  .  X  X  PatientReligiousPreference
0010,2203  .  X  X  PatientSexNeutered
0010,2297  .  X  X  ResponsiblePerson
0010,2299  .  X  X  ResponsibleOrganization
0010,4000  X  X  X  PatientComments
0012,0010  .  .  Z  ClinicalTrialSponsorName
0012,0020  .  .  Z  ClinicalTrialProtocolID
0012,0021  .  .  Z  ClinicalTrialProtocolName
0012,0030  .  .  Z  ClinicalTrialSiteID
0012,0031  .  .  Z  ClinicalTrialSiteName
0012,0040  .  .  Z  ClinicalTrialSubjectID
0012,0042  .  .  Z  ClinicalTrialSubjectReadingID
0012,0050  .  .  Z  ClinicalTrialTimePointID
0012,0051  .  .  X  ClinicalTrialTimePointDescription
0012,0060  .  .  Z  ClinicalTrialCoordinatingCenterName
0012,0071  .  .  X  ClinicalTrialSeriesID
0012,0072  .  .  X  ClinicalTrialSeriesDescription
0012,0081  .  .  Z  ClinicalTrialProtocolEthicsCommitteeName
0012,0082  .  .  X  ClinicalTrialProtocolEthicsCommitteeApprovalNumber
0016,002b  .  .  X  MakerNote
0016,004b  .  .  X  DeviceSettingDescription
0016,004d  .  .  X  CameraOwnerName
0016,004e  .  .  X  LensSpecification
0016,004f  .  .  X  LensMake
0016,0050  .  .  X  LensModel
0016,0051  .  .  X  LensSerialNumber
0016,0070  .  .  X  GPSVersionID
0016,0071  .  .  X  GPSLatitudeRef
0016,0072  .  .  X  GPSLatitude
0016,0073  .  .  X  GPSLongitudeRef
0016,0074  .  .  X  GPSLongitude
0016,0075  .  .  X  GPSAltitudeRef
0016,0076  .  .  X  GPSAltitude
0016,0077  .  .  X  GPSTimeStamp
0016,0078  .  .  X  GPSSatellites
0016,0079  .  .  X  GPSStatus
0016,007a  .  .  X  GPSMeasureMode
0016,007b  .  .  X  GPSDOP
0016,007c  .  .  X  GPSSpeedRef
0016,007d  .  .  X  GPSSpeed
0016,007e  .  .  X  GPSTrackRef
0016,007f  .  .  X  GPSTrack
0016,0080  .  .  X  GPSImgDirectionRef
0016,0081  .  .  X  GPSImgDirection
0016,0082  .  .  X  GPSMapDatum
0016,0083  .  .  X  GPSDestLatitudeRef
0016,0084  .  .  X  GPSDestLatitude
0016,0085  .  .  X  GPSDestLongitudeRef
0016,0086  .  .  X  GPSDestLongitude
0016,0087  .  .  X  GPSDestBearingRef
0016,0088  .  .  X  GPSDestBearing
0016,0089  .  .  X  GPSDestDistanceRef
0016,008a  .  .  X  GPSDestDistance
0016,008b  .  .  X  GPSProcessingMethod
0016,008c  .  .  X  GPSAreaInformation
0016,008d  .  .  X  GPSDateStamp
0016,008e  .  .  X  GPSDifferential
0018,0010  .  Z  Z  ContrastBolusAgent
0018,1000  X  X  X  DeviceSerialNumber
0018,1002  .  U  U  DeviceUID
0018,1004  .  X  X  PlateID
0018,1005  .  X  X  GeneratorID
0018,1007  .  X  X  CassetteID
0018,1008  .  X  X  GantryID
0018,1009  .  .  X  UniqueDeviceIdentifier
0018,100a  .  .  X  UDISequence
0018,100b  .  .  U  ManufacturerDeviceClassUID
0018,1030  X  X  X  ProtocolName
0018,11bb  .  .  Z  AcquisitionFieldOfViewLabel
0018,1400  .  X  X  AcquisitionDeviceProcessingDescription
0018,2042  .  U  U  TargetUID
0018,4000  .  X  X  AcquisitionComments
0018,5011  .  .  X  TransducerIdentificationSequence
0018,700a  .  X  X  DetectorID
0018,9185  .  .  X  RespiratoryMotionCompensationTechniqueDescription
0018,9367  .  .  Z  XRaySourceID
0018,9369  .  .  Z  SourceStartDateTime
0018,936a  .  .  Z  SourceEndDateTime
0018,9371  .  .  Z  XRayDetectorID
0018,9373  .  .  X  XRayDetectorLabel
0018,937b  .  .  X  MultienergyAcquisitionDescription
0018,937f  .  .  X  DecompositionDescription
0018,9424  .  X  X  AcquisitionProtocolDescription
0018,9516  .  X  X  StartAcquisitionDateTime
0018,9517  .  X  X  EndAcquisitionDateTime
0018,9937  .  .  X  RequestedSeriesDescription
0018,a003  .  X  X  ContributionDescription
0020,0010  X  Z  Z  StudyID
0020,0052  U  U  U  FrameOfReferenceUID
0020,0200  U  U  U  SynchronizationFrameOfReferenceUID
0020,3401  .  X  X  ModifyingDeviceID
0020,3404  .  X  .  ModifyingDeviceManufacturer
0020,3406  .  X  X  ModifiedImageDescription
0020,4000  X  X  X  ImageComments
0020,9158  .  X  X  FrameComments
0020,9161  .  U  U  ConcatenationUID
0020,9164  .  U  U  DimensionOrganizationUID
0028,1199  .  U  U  PaletteColorLookupTableUID
0028,1214  .  U  U  LargePaletteColorLookupTableUID
0028,4000  .  X  X  ImagePresentationComments
0032,0012  .  X  X  StudyIDIssuer
0032,1020  .  X  X  ScheduledStudyLocation
0032,1021  .  X  X  ScheduledStudyLocationAETitle
0032,1030  .  X  X  ReasonForStudy
0032,1032  X  X  X  RequestingPhysician
0032,1033  .  X  X  RequestingService
0032,1060  .  X  X  RequestedProcedureDescription
0032,1066  .  .  X  ReasonForVisit
0032,1067  .  .  X  ReasonForVisitCodeSequence
0032,1070  .  X  X  RequestedContrastAgent
0032,4000  .  X  X  StudyComments
0034,0001  .  .  Z  FlowIdentifierSequence
0034,0002  .  .  Z  FlowIdentifier
0034,0005  .  .  Z  SourceIdentifier
0034,0007  .  .  Z  FrameOriginTimestamp
0038,0004  .  X  X  ReferencedPatientAliasSequence
0038,0010  .  X  X  AdmissionID
0038,0011  .  X  X  IssuerOfAdmissionID
0038,0014  .  .  X  IssuerOfAdmissionIDSequence
0038,001e  .  X  X  ScheduledPatientInstitutionResidence
0038,0020  .  X  X  AdmittingDate
0038,0021  .  X  X  AdmittingTime
0038,0040  .  X  X  DischargeDiagnosisDescription
0038,0050  .  X  X  SpecialNeeds
0038,0060  .  X  X  ServiceEpisodeID
0038,0061  .  X  X  IssuerOfServiceEpisodeID
0038,0062  .  X  X  ServiceEpisodeDescription
0038,0064  .  .  X  IssuerOfServiceEpisodeIDSequence
0038,0300  .  X  X  CurrentPatientLocation
0038,0400  .  X  X  PatientInstitutionResidence
0038,0500  .  X  X  PatientState
0038,4000  .  X  X  VisitComments
003a,0310  .  .  U  MultiplexGroupUID
003a,0314  .  .  Z  ImpedanceMeasurementDateTime
0040,0001  .  X  X  ScheduledStationAETitle
0040,0002  .  X  X  ScheduledProcedureStepStartDate
0040,0003  .  X  X  ScheduledProcedureStepStartTime
0040,0004  .  X  X  ScheduledProcedureStepEndDate
0040,0005  .  X  X  ScheduledProcedureStepEndTime
0040,0006  .  X  X  ScheduledPerformingPhysicianName
0040,0007  .  X  X  ScheduledProcedureStepDescription
0040,0009  .  .  X  ScheduledProcedureStepID
0040,000b  .  X  X  ScheduledPerformingPhysicianIdentificationSequence
0040,0010  .  X  X  ScheduledStationName
0040,0011  .  X  X  ScheduledProcedureStepLocation
0040,0012  .  X  X  PreMedication
0040,0241  .  X  X  PerformedStationAETitle
0040,0242  .  X  X  PerformedStationName
0040,0243  .  X  X  PerformedLocation
0040,0244  .  X  X  PerformedProcedureStepStartDate
0040,0245  .  X  X  PerformedProcedureStepStartTime
0040,0250  .  X  X  PerformedProcedureStepEndDate
0040,0251  .  X  X  PerformedProcedureStepEndTime
0040,0253  .  X  X  PerformedProcedureStepID
0040,0254  .  X  X  PerformedProcedureStepDescription
0040,0275  X  X  X  RequestAttributesSequence
0040,0280  .  X  X  CommentsOnThePerformedProcedureStep
0040,0310  .  .  X  CommentsOnRadiationDose
0040,050a  .  .  X  SpecimenAccessionNumber
0040,0512  .  .  Z  ContainerIdentifier
0040,0513  .  .  Z  IssuerOfTheContainerIdentifierSequence
0040,051a  .  .  X  ContainerDescription
0040,0551  .  .  Z  SpecimenIdentifier
0040,0554  .  .  U  SpecimenUID
0040,0555  .  X  X  AcquisitionContextSequence
0040,0562  .  .  Z  IssuerOfTheSpecimenIdentifierSequence
0040,0600  .  .  X  SpecimenShortDescription
0040,0602  .  .  X  SpecimenDetailedDescription
0040,0610  .  .  Z  SpecimenPreparationSequence
0040,06fa  .  .  X  SlideIdentifier
0040,1001  .  X  X  RequestedProcedureID
0040,1002  .  .  X  ReasonForTheRequestedProcedure
0040,1004  .  X  X  PatientTransportArrangements
0040,1005  .  X  X  RequestedProcedureLocation
0040,100a  .  .  X  ReasonForRequestedProcedureCodeSequence
0040,1010  .  X  X  NamesOfIntendedRecipientsOfResults
0040,1011  .  X  X  IntendedRecipientsOfResultsIdentificationSequence
0040,1101  .  Z  Z  PersonIdentificationCodeSequence
0040,1102  .  X  X  PersonAddress
0040,1103  .  X  X  PersonTelephoneNumbers
0040,1104  .  X  X  PersonTelecomInformation
0040,1400  .  X  X  RequestedProcedureComments
0040,2001  .  X  X  ReasonForTheImagingServiceRequest
0040,2008  .  X  X  OrderEnteredBy
0040,2009  .  X  X  OrderEntererLocation
0040,2010  .  X  X  OrderCallbackPhoneNumber
0040,2011  .  X  X  OrderCallbackTelecomInformation
0040,2016  .  Z  Z  PlacerOrderNumberImagingServiceRequest
0040,2017  .  Z  Z  FillerOrderNumberImagingServiceRequest
0040,2400  .  X  X  ImagingServiceRequestComments
0040,3001  .  X  X  ConfidentialityConstraintOnPatientDataDescription
0040,4005  .  X  X  ScheduledProcedureStepStartDateTime
0040,4008  .  .  X  ScheduledProcedureStepExpirationDateTime
0040,4010  .  X  X  ScheduledProcedureStepModificationDateTime
0040,4011  .  X  X  ExpectedCompletionDateTime
0040,4023  .  U  U  ReferencedGeneralPurposeScheduledProcedureStepTransactionUID
0040,4025  .  X  X  ScheduledStationNameCodeSequence
0040,4027  .  X  X  ScheduledStationGeographicLocationCodeSequence
0040,4028  .  X  X  PerformedStationNameCodeSequence
0040,4030  .  X  X  PerformedStationGeographicLocationCodeSequence
0040,4034  .  X  X  ScheduledHumanPerformersSequence
0040,4035  .  X  X  ActualHumanPerformersSequence
0040,4036  .  X  X  HumanPerformerOrganization
0040,4037  .  X  X  HumanPerformerName
0040,4050  .  X  X  PerformedProcedureStepStartDateTime
0040,4051  .  X  X  PerformedProcedureStepEndDateTime
0040,4052  .  X  X  ProcedureStepCancellationDateTime
0040,a027  .  X  Z  VerifyingOrganization
0040,a073  .  Z  Z  VerifyingObserverSequence
0040,a075  .  Z  Z  VerifyingObserverName
0040,a078  .  X  X  AuthorObserverSequence
0040,a07a  .  X  X  ParticipantSequence
0040,a07c  .  X  X  CustodialOrganizationSequence
0040,a088  .  Z  Z  VerifyingObserverIdentificationCodeSequence
0040,a123  .  Z  Z  PersonName
0040,a124  U  U  U  UID
0040,a171  .  U  U  ObservationUID
0040,a172  .  U  U  ReferencedObservationUIDTrial
0040,a192  .  X  X  ObservationDateTrial
0040,a193  .  X  X  ObservationTimeTrial
0040,a307  .  X  X  CurrentObserverTrial
0040,a352  .  X  X  VerbalSourceTrial
0040,a353  .  X  X  AddressTrial
0040,a354  .  X  X  TelephoneNumberTrial
0040,a358  .  X  X  VerbalSourceIdentifierCodeSequenceTrial
0040,a402  .  U  U  ObservationSubjectUIDTrial
0040,a730  X  X  Z  ContentSequence
0040,db0c  .  U  U  TemplateExtensionOrganizationUID
0040,db0d  .  U  U  TemplateExtensionCreatorUID
0050,001b  .  .  X  ContainerComponentID
0050,0020  .  .  X  DeviceDescription
0050,0021  .  .  X  LongDeviceDescription
0062,0021  .  U  U  TrackingUID
0070,0001  .  Z  Z  GraphicAnnotationSequence
0070,0084  .  Z  Z  ContentCreatorName
0070,0086  .  X  X  ContentCreatorIdentificationCodeSequence
0070,031a  .  U  U  FiducialUID
0070,1101  .  U  U  PresentationDisplayCollectionUID
0070,1102  .  U  U  PresentationSequenceCollectionUID
0088,0140  U  U  U  StorageMediaFileSetUID
0088,0200  .  X  X  IconImageSequence
0088,0904  .  X  X  TopicTitle
0088,0906  .  X  X  TopicSubject
0088,0910  .  X  X  TopicAuthor
0088,0912  .  X  X  TopicKeywords
0400,0100  .  X  U  DigitalSignatureUID
0400,0402  .  X  X  ReferencedDigitalSignatureSequence
0400,0403  .  X  X  ReferencedSOPInstanceMACSequence
0400,0404  .  X  X  MAC
0400,0550  .  X  X  ModifiedAttributesSequence
0400,0551  .  .  X  NonconformingModifiedAttributesSequence
0400,0552  .  .  X  NonconformingDataElementValue
0400,0561  .  X  X  OriginalAttributesSequence
0400,0600  .  .  X  InstanceOriginStatus
2030,0020  .  X  X  TextString
2200,0002  .  .  X  LabelText
2200,0005  .  .  X  BarcodeValue
3006,0002  .  .  Z  StructureSetLabel
3006,0004  .  .  X  StructureSetName
3006,0006  .  .  X  StructureSetDescription
3006,0008  .  .  Z  StructureSetDate
3006,0009  .  .  Z  StructureSetTime
3006,0024  U  U  U  ReferencedFrameOfReferenceUID
3006,0026  .  .  Z  ROIName
3006,0028  .  .  X  ROIDescription
3006,0038  .  .  X  ROIGenerationDescription
3006,0085  .  .  X  ROIObservationLabel
3006,0088  .  .  X  ROIObservationDescription
3006,00a6  .  .  Z  ROIInterpreter
3006,00c2  U  U  U  RelatedFrameOfReferenceUID
3008,0054  .  .  X  FirstTreatmentDate
3008,0056  .  .  X  MostRecentTreatmentDate
3008,0105  .  X  X  SourceSerialNumber
3008,0250  .  .  X  TreatmentDate
3008,0251  .  .  X  TreatmentTime
300a,0002  .  .  Z  RTPlanLabel
300a,0003  .  .  X  RTPlanName
300a,0004  .  .  X  RTPlanDescription
300a,0006  .  .  X  RTPlanDate
300a,0007  .  .  X  RTPlanTime
300a,000e  .  .  X  PrescriptionDescription
300a,0013  .  U  U  DoseReferenceUID
300a,0016  .  .  X  DoseReferenceDescription
300a,0072  .  .  X  FractionGroupDescription
300a,0083  .  .  U  ReferencedDoseReferenceUID
300a,00b2  .  .  X  TreatmentMachineName
300a,00c3  .  .  X  BeamDescription
300a,00dd  .  .  X  BolusDescription
300a,0196  .  .  X  FixationDeviceDescription
300a,01a6  .  .  X  ShieldingDeviceDescription
300a,01b2  .  .  X  SetupTechniqueDescription
300a,0216  .  .  X  SourceManufacturer
300a,02eb  .  .  X  CompensatorDescription
300a,0608  .  .  Z  TreatmentPositionGroupLabel
300a,0609  .  .  U  TreatmentPositionGroupUID
300a,0611  .  .  Z  RTAccessoryHolderSlotID
300a,0615  .  .  Z  RTAccessoryDeviceSlotID
300a,0619  .  .  Z  RadiationDoseIdentificationLabel
300a,0623  .  .  Z  RadiationDoseInVivoMeasurementLabel
300a,062a  .  .  Z  RTToleranceSetLabel
300a,0650  .  .  U  PatientSetupUID
300a,0676  .  .  X  EquipmentFrameOfReferenceDescription
300a,067c  .  .  Z  RadiationGenerationModeLabel
300a,067d  .  .  Z  RadiationGenerationModeDescription
300a,0700  .  .  U  TreatmentSessionUID
300a,0734  .  .  Z  TreatmentToleranceViolationDescription
300a,0736  .  .  Z  TreatmentToleranceViolationDateTime
300a,073a  .  .  Z  RecordedRTControlPointDateTime
300a,0741  .  .  Z  InterlockDateTime
300a,0742  .  .  Z  InterlockDescription
300a,0760  .  .  Z  OverrideDateTime
300a,0783  .  .  Z  InterlockOriginDescription
300c,0113  .  X  X  ReasonForOmissionDescription
300e,0008  .  X  X  ReviewerName
3010,0006  .  .  U  ConceptualVolumeUID
3010,000b  .  .  U  ReferencedConceptualVolumeUID
3010,000f  .  .  Z  ConceptualVolumeCombinationDescription
3010,0013  .  .  U  ConstituentConceptualVolumeUID
3010,0015  .  .  U  SourceConceptualVolumeUID
3010,0017  .  .  Z  ConceptualVolumeDescription
3010,001b  .  .  Z  DeviceAlternateIdentifier
3010,002d  .  .  Z  DeviceLabel
3010,0031  .  .  U  ReferencedFiducialsUID
3010,0033  .  .  Z  UserContentLabel
3010,0034  .  .  Z  UserContentLongLabel
3010,0035  .  .  Z  EntityLabel
3010,0036  .  .  X  EntityName
3010,0037  .  .  X  EntityDescription
3010,0038  .  .  Z  EntityLongLabel
3010,003b  .  .  U  RTTreatmentPhaseUID
3010,0043  .  .  Z  ManufacturerDeviceIdentifier
3010,004c  .  .  X  IntendedPhaseStartDate
3010,004d  .  .  X  IntendedPhaseEndDate
3010,0054  .  .  Z  RTPrescriptionLabel
3010,0056  .  .  X  RTTreatmentApproachLabel
3010,005a  .  .  Z  RTPhysicianIntentNarrative
3010,005c  .  .  Z  ReasonForSuperseding
3010,0061  .  .  X  PriorTreatmentDoseDescription
3010,006e  .  .  U  DosimetricObjectiveUID
3010,006f  .  .  U  ReferencedDosimetricObjectiveUID
3010,0077  .  .  Z  TreatmentSite
3010,007a  .  .  Z  TreatmentTechniqueNotes
3010,007b  .  .  Z  PrescriptionNotes
3010,007f  .  .  Z  FractionationNotes
3010,0081  .  .  Z  PrescriptionNotesSequence
4000,0010  .  X  X  Arbitrary
4000,4000  .  X  X  TextComments
4008,0042  .  X  X  ResultsIDIssuer
4008,0102  .  X  X  InterpretationRecorder
4008,010a  .  X  X  InterpretationTranscriber
4008,010b  .  X  X  InterpretationText
4008,010c  .  X  X  InterpretationAuthor
4008,0111  .  X  X  InterpretationApproverSequence
4008,0114  .  X  X  PhysicianApprovingInterpretation
4008,0115  .  X  X  InterpretationDiagnosisDescription
4008,0118  .  X  X  ResultsDistributionListSequence
4008,0119  .  X  X  DistributionName
4008,011a  .  X  X  DistributionAddress
4008,0202  .  X  X  InterpretationIDIssuer
4008,0300  .  X  X  Impressions
4008,4000  .  X  X  ResultsComments
fffa,fffa  .  X  X  DigitalSignaturesSequence
fffc,fffc  .  X  X  DataSetTrailingPadding
"""


@dataclass(frozen=True)
class Profile:
    """One edition of the basic profile: an action per attribute."""

    version: str
    actions: dict[int, Action]
    removes_repeating_groups: bool

    @property
    def deidentification_method(self) -> str:
        """The DeidentificationMethod (0012,0063) written into anonymized instances."""
        return f"{SOFTWARE} - {_METHODS[self.version]}"

    def tags(self, action: Action) -> frozenset[int]:
        return frozenset(tag for tag, tag_action in self.actions.items() if tag_action == action)


def _parse_table() -> dict[str, Profile]:
    actions: dict[str, dict[int, Action]] = {version: {} for version in VERSIONS}
    for line in _TABLE.strip().splitlines():
        key, *codes, _keyword = line.split()
        tag = int(key.replace(",", ""), 16)
        for version, code in zip(VERSIONS, codes, strict=True):
            if code != ".":
                actions[version][tag] = Action(code)
    return {
        version: Profile(version, actions[version], removes_repeating_groups=version != "2008")
        for version in VERSIONS
    }


PROFILES = _parse_table()


def profile(version: str | None) -> Profile:
    """The profile of a ``DicomVersion``; Orthanc's 400 for an unknown one."""
    found = PROFILES.get(DEFAULT_VERSION if version is None else version)
    if found is None:
        raise OrthancError(
            ErrorCode.PARAMETER_OUT_OF_RANGE, f"Unknown specific version of the DICOM standard: {version}"
        )
    return found


def in_removed_repeating_group(tag: int) -> bool:
    group, element = tag >> 16, tag & 0xFFFF
    if not 0x5000 <= group <= 0x60FF:
        return False  # the common case, decided at once
    return any(
        first_group <= group <= last_group and first_element <= element <= last_element
        for first_group, last_group, first_element, last_element in REPEATING_GROUPS_REMOVED
    )
