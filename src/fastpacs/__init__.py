"""fastpacs: a DICOM server with Orthanc's REST API, built for speed."""

__version__ = "0.1.0"

ORTHANC_API_VERSION = "1.10.1"
"""The Orthanc release whose REST API fastpacs implements (reported by /system)."""
