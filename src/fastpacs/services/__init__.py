"""The use cases of fastpacs, shared by the REST API and the DICOM network services."""
