"""Every module of fastpacs and of the benchmark suite imports.

ruff does not see an import of a name that another module no longer has;
a module that no test imports (a benchmark helper, a rarely used command)
would only fail when someone runs it.
"""

import importlib
import pkgutil

import benchmarks
import pytest

import fastpacs


def _modules() -> list[str]:
    names = []
    for package in (fastpacs, benchmarks):
        for module in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
            if module.name.rsplit(".", 1)[-1] != "__main__":  # runs the command line
                names.append(module.name)
    return sorted(names)


@pytest.mark.parametrize("name", _modules())
def test_module_imports(name: str) -> None:
    importlib.import_module(name)
