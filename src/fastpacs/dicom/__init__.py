"""Pure functions on DICOM data: identifiers, main tags, value formatting, parsing."""
