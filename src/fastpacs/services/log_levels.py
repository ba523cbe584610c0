"""/tools/log-level and its categories: Orthanc's verbosities mapped onto Python loggers.

Orthanc has three verbosities, ``default``, ``verbose`` and ``trace``, set
for everything (``/tools/log-level``) or for one category
(``/tools/log-level-http``...). fastpacs maps them to the levels of its
loggers: ``default`` is INFO, ``verbose`` DEBUG and ``trace`` a level below
DEBUG. A category is the fastpacs logger of that part of the server.
"""

import logging

from fastpacs.errors import ErrorCode, OrthancError

TRACE = logging.DEBUG - 5
VERBOSITIES = {"default": logging.INFO, "verbose": logging.DEBUG, "trace": TRACE}
CATEGORIES = {
    "generic": "fastpacs",
    "dicom": "fastpacs.net",
    "http": "fastpacs.access",
    "jobs": "fastpacs.jobs",
    "lua": "fastpacs.lua",
    "plugins": "fastpacs.plugins",
    "sqlite": "fastpacs.index",
}
"""Orthanc's log categories and the fastpacs logger of each (``sqlite``: the index)."""

logging.addLevelName(TRACE, "TRACE")


def verbosity_of(level: int) -> str:
    if level <= TRACE:
        return "trace"
    return "verbose" if level <= logging.DEBUG else "default"


class LogLevels:
    def get(self, category: str | None = None) -> str:
        """The verbosity of one category, or (``None``) the most verbose of them, as Orthanc answers."""
        names = CATEGORIES.values() if category is None else [CATEGORIES[category]]
        return verbosity_of(min(logging.getLogger(name).getEffectiveLevel() for name in names))

    def set(self, verbosity: str, category: str | None = None) -> None:
        level = VERBOSITIES.get(verbosity)
        if level is None:
            raise OrthancError(
                ErrorCode.PARAMETER_OUT_OF_RANGE,
                f'Verbosity can be "default", "verbose" or "trace": {verbosity}',
            )
        names = CATEGORIES.values() if category is None else [CATEGORIES[category]]
        for name in names:
            logging.getLogger(name).setLevel(level)
