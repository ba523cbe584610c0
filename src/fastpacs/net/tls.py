"""DICOM TLS: the SSL contexts of the DICOM server and of the associations fastpacs opens.

Orthanc 1.10.1's model, from its options:

- ``DicomTlsCertificate`` and ``DicomTlsPrivateKey`` (PEM files) are this
  server's identity, presented on both sides: to the callers of the DICOM
  server when ``DicomTlsEnabled``, and to the modalities fastpacs calls
  with ``UseDicomTls``;
- ``DicomTlsTrustedCertificates`` (PEM certificates, concatenated) holds the
  certificates of the trusted remote modalities or of their CAs, again for
  both sides;
- ``DicomTlsRemoteCertificateRequired`` (default true): the server refuses a
  caller that presents no certificate (DCMTK's ``--require-peer-cert``);
  false, a caller may present none (DCMTK's ``--verify-peer-cert``), but
  a certificate it does present must still be trusted.

As in DCMTK, the peer's certificate is trusted for itself: no host name is
checked (a modality is addressed by IP as often as by name). TLS 1.2 is the
oldest protocol accepted. A modality always presents its certificate as a
server, so the associations fastpacs opens always require one.
"""

import os
import ssl
from functools import lru_cache

import msgspec


class DicomTlsFiles(msgspec.Struct, frozen=True, array_like=True):
    """The PEM files of this server's DICOM TLS identity and of the certificates it trusts.

    Empty strings where the configuration sets nothing (an association that
    needs them then fails with :class:`TlsConfigurationError`).
    """

    certificate: str
    private_key: str
    trusted_certificates: str


class TlsConfigurationError(Exception):
    """The DICOM TLS files are not configured, cannot be read or do not fit together."""


def missing_files(files: DicomTlsFiles) -> str | None:
    """What is not configured for DICOM TLS (in the style of Orthanc's message); ``None`` if nothing."""
    if not (files.certificate and files.private_key):
        return (
            "DICOM TLS - No path to the local certificate (DicomTlsCertificate) "
            "or to its private key (DicomTlsPrivateKey) was provided"
        )
    if not files.trusted_certificates:
        return (
            "DICOM TLS - No path to the trusted remote certificates "
            "(DicomTlsTrustedCertificates) was provided"
        )
    return None


def server_context(files: DicomTlsFiles, remote_certificate_required: bool) -> ssl.SSLContext:
    """The context the DICOM server wraps accepted connections with; :class:`TlsConfigurationError`."""
    context = _context(ssl.PROTOCOL_TLS_SERVER, files)
    context.verify_mode = ssl.CERT_REQUIRED if remote_certificate_required else ssl.CERT_OPTIONAL
    return context


def client_context(files: DicomTlsFiles) -> ssl.SSLContext:
    """The context of the associations fastpacs opens with TLS (built once per version of the files).

    :class:`TlsConfigurationError` when the files are not configured or unusable.
    """
    return _cached_client_context(files, _stamp(files))


@lru_cache(maxsize=8)
def _cached_client_context(files: DicomTlsFiles, stamp: tuple[int, ...]) -> ssl.SSLContext:
    context = _context(ssl.PROTOCOL_TLS_CLIENT, files)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def _stamp(files: DicomTlsFiles) -> tuple[int, ...]:
    return files_stamp(files.certificate, files.private_key, files.trusted_certificates)


def files_stamp(*paths: str) -> tuple[int, ...]:
    """When TLS files last changed (0: not configured, -1: unreadable), to key the contexts built
    from them: a renewed certificate must be used without a restart."""
    stamp = []
    for path in paths:
        try:
            stamp.append(os.stat(path).st_mtime_ns if path else 0)
        except OSError:
            stamp.append(-1)
    return tuple(stamp)


def _refuse_encrypted_key() -> bytes:
    """OpenSSL's own answer to an encrypted key would be to ask for its password on the terminal."""
    raise TlsConfigurationError(
        "DicomTlsPrivateKey is encrypted: it must be a PEM private key without password (as in Orthanc)"
    )


def _context(protocol: ssl._SSLMethod, files: DicomTlsFiles) -> ssl.SSLContext:
    missing = missing_files(files)
    if missing is not None:
        raise TlsConfigurationError(missing)
    context = ssl.SSLContext(protocol)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(files.certificate, files.private_key, password=_refuse_encrypted_key)
    except (OSError, ssl.SSLError) as error:
        raise TlsConfigurationError(
            f"cannot use DicomTlsCertificate {files.certificate!r} with DicomTlsPrivateKey "
            f"{files.private_key!r}: {error}"
        ) from error
    try:
        context.load_verify_locations(cafile=files.trusted_certificates)
    except (OSError, ssl.SSLError) as error:
        raise TlsConfigurationError(
            f"cannot read DicomTlsTrustedCertificates {files.trusted_certificates!r}: {error}"
        ) from error
    return context
