"""DICOM networking: the server fastpacs runs and the client it uses to reach modalities.

- :mod:`fastpacs.net.server`: the pynetdicom AE on ``DicomPort``: association
  acceptance (``DicomCheckCalledAet``, known callers), presentation contexts
  (every storage SOP class, the accepted transfer syntaxes, query/retrieve),
  TCP_NODELAY on every accepted socket, one thread per association.
- :mod:`fastpacs.net.store_scp`: C-STORE requests handed to the ingest pipeline.
- :mod:`fastpacs.net.query_retrieve_scp`: C-FIND, C-MOVE and C-GET requests answered from the index.
- :mod:`fastpacs.net.scu`: associations fastpacs opens: C-ECHO, C-STORE, C-FIND, C-MOVE.
- :mod:`fastpacs.net.datasets`: query identifiers and answers between pydicom datasets and tag → text maps.
- :mod:`fastpacs.net.tcp`: TCP_NODELAY on every association socket.
- :mod:`fastpacs.net.transfer_syntaxes`: the transfer syntaxes Orthanc knows and the accepted ones.
- :mod:`fastpacs.net.peers`: the HTTP client of Orthanc peers (their REST API, over httpx).
- :mod:`fastpacs.net.reactor`: the server's association threads (event-driven, not polling), with
  :mod:`fastpacs.net.pdus` (PDUs read off the socket) and :mod:`fastpacs.net.dimse` (C-STORE requests and
  responses read and written by hand) on the path of every received instance.

pynetdicom runs each association in a thread of its own. Handlers never
parse or store on those threads beyond what pynetdicom itself decodes:
C-STORE hands the received bytes to the ingest pipeline on the event loop
and waits for its answer; queries read the index (LMDB reads are safe from
any thread).
"""

from pynetdicom import _config

# pynetdicom logs every request and response identifier element by element:
# that decodes them (costly, and the answers' values then reach the tag JSON
# already converted). fastpacs logs what it needs itself.
_config.LOG_REQUEST_IDENTIFIERS = False
_config.LOG_RESPONSE_IDENTIFIERS = False
# Its standard handlers of every PDU and DIMSE message sent or received decode
# the command sets to build INFO lines, which its WARNING level then drops
# (about 0.1 ms per message).
_config.LOG_HANDLER_LEVEL = "none"
