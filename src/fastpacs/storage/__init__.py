"""Content-addressed storage of DICOM files and other attachments."""
