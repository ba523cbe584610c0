"""TCP_NODELAY on every association socket, accepted or opened.

DIMSE responses are small PDUs; with Nagle's algorithm a peer waiting for
one can stall on the delayed-ACK timer (Orthanc's C-STORE is slowed this way
unless started with TCP_NODELAY=1). pynetdicom never sets the option itself.
"""

import socket

from pynetdicom import evt


def set_no_delay(event: evt.Event) -> None:
    """``EVT_CONN_OPEN``: send small PDUs at once."""
    connection = event.assoc.dul.socket
    if connection is not None and connection.socket is not None:
        connection.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


NO_DELAY_HANDLERS = [(evt.EVT_CONN_OPEN, set_no_delay)]
"""Event handlers for every association fastpacs opens or accepts."""
