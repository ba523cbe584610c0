"""The ``fastpacs`` command: ``fastpacs serve [--config FILE]``, ``fastpacs ingest PATH...``."""

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

import msgspec
from granian import Granian
from granian.constants import Interfaces, Loops, SSLProtocols
from granian.http import HTTP1Settings
from granian.log import LogLevels

from fastpacs import ORTHANC_API_VERSION, __version__
from fastpacs.config import (
    CONFIG_ENVIRONMENT_VARIABLE,
    Config,
    ConfigurationError,
    encode_config,
    load_config,
)
from fastpacs.logs import LEVELS, configure_logging, parse_level

logger = logging.getLogger("fastpacs")


SHUTDOWN_GRACE_SECONDS = 10
"""How long a stop waits for answers in progress (a stalled download must not hold it forever)."""


def _serve(arguments: argparse.Namespace) -> int:
    try:
        config = load_config(arguments.config)
    except ConfigurationError as error:
        print(f"fastpacs: {error}", file=sys.stderr)
        return 2
    if arguments.log_level is not None:
        config = msgspec.structs.replace(config, log_level=arguments.log_level)
    try:
        level = parse_level(config.log_level)
    except ValueError as error:
        print(f"fastpacs: {error}", file=sys.stderr)
        return 2
    configure_logging(config.log_level)
    logging.getLogger().setLevel(level)
    os.environ[CONFIG_ENVIRONMENT_VARIABLE] = encode_config(config).decode()
    address = "0.0.0.0" if config.remote_access_allowed else "127.0.0.1"
    logger.info(
        "fastpacs %s (Orthanc API %s) on %s://%s:%d",
        __version__,
        ORTHANC_API_VERSION,
        "https" if config.ssl_enabled else "http",
        address,
        config.http_port,
    )
    Granian(
        "fastpacs.app:create_app",
        factory=True,
        address=address,
        port=config.http_port,
        interface=Interfaces.ASGI,
        loop=Loops.uvloop,
        workers=1,
        log_access=False,
        log_level=LogLevels(logging.getLevelName(level).lower()),
        workers_kill_timeout=SHUTDOWN_GRACE_SECONDS,
        **_http_options(config),
    ).serve()
    return 0


def _http_options(config: Config) -> dict[str, Any]:
    """Granian's settings for ``HttpRequestTimeout`` and TLS (``SslEnabled``, ``SslCertificate``).

    As Orthanc's, the certificate file holds the certificate chain and the
    private key; TLS 1.2 is the oldest protocol accepted (Orthanc's default).
    Granian bounds the time of a request's headers; the application bounds
    the time of its body (:mod:`fastpacs.api.timeouts`).
    """
    options: dict[str, Any] = {}
    if config.http_request_timeout > 0:
        options["http1_settings"] = HTTP1Settings(header_read_timeout=config.http_request_timeout * 1000)
    if config.ssl_enabled:
        certificate = Path(config.ssl_certificate)
        options |= {"ssl_cert": certificate, "ssl_key": certificate, "ssl_protocol_min": SSLProtocols.tls12}
    return options


def _ingest(arguments: argparse.Namespace) -> int:
    from fastpacs import ingest_cli  # noqa: PLC0415 - see main()

    configure_logging(arguments.log_level)
    return ingest_cli.run(arguments)


def main(argv: list[str] | None = None) -> int:
    """The command line. The modules of the ingest command (pydicom, the whole pipeline) are imported
    only for that command: ``serve`` runs in a parent process that lives as long as the server and
    should hold no more than Granian's supervisor needs (the server itself runs in a forked worker)."""
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="fastpacs", description="DICOM server with Orthanc's REST API")
    parser.add_argument("--version", action="version", version=f"fastpacs {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the server")
    serve.add_argument("--config", help="configuration file or folder (Orthanc's JSON format)")
    serve.add_argument("--log-level", choices=LEVELS, help="overrides the LogLevel option")
    serve.set_defaults(handler=_serve)
    ingest = commands.add_parser("ingest", help="import DICOM files into a running server or a stopped store")
    if argv[:1] == ["ingest"]:
        from fastpacs import ingest_cli  # noqa: PLC0415 - see the docstring

        ingest_cli.add_arguments(ingest)
    ingest.add_argument("--log-level", choices=LEVELS, default="warning", help="default: warning")
    ingest.set_defaults(handler=_ingest)
    arguments = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return arguments.handler(arguments)
