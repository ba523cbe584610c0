"""The REST API: HTTP only. Each module parses requests for one area, calls a service, shapes the answer."""
