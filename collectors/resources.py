"""Files Loomgate ships with its code: the SQL library, the schema DDL and the example configs.

In the repository they are the top-level folders ``queries/`` (with ``queries/schema/``) and ``config/``;
installed, they are the data packages ``loomgate_data.queries`` and ``loomgate_data.config`` (a private
name: a top-level ``config`` or ``queries`` package would collide with any other of that name).  Each
folder is found, from any working directory:

* in a source tree (a checkout on ``PYTHONPATH``, or an editable install, which imports this very
  tree): the folder next to this package, so code and data always come from the same tree;
* otherwise (an installed wheel) through ``importlib.resources``.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import NamedTuple


class DataFolder(NamedTuple):
    """A shipped data folder: its name in the repository and its package once installed."""

    folder: str
    package: str


QUERIES = DataFolder("queries", "loomgate_data.queries")
CONFIG = DataFolder("config", "loomgate_data.config")

# The repository root when this package is imported from a source tree (it has pyproject.toml).
_SOURCE_TREE = Path(__file__).resolve().parents[1]


class ResourceError(Exception):
    """A packaged data directory or file is missing: the installation is incomplete."""


def package_dir(data: DataFolder) -> Path:
    """The directory of a data folder, as a real path (the SQL and YAML files are read from disk)."""
    in_tree = _SOURCE_TREE / data.folder
    if (_SOURCE_TREE / "pyproject.toml").is_file() and (in_tree / "__init__.py").is_file():
        return in_tree
    try:
        root = resources.files(data.package)
    except ModuleNotFoundError:
        raise ResourceError(f"package {data.package!r} is not installed: reinstall loomgate "
                            "(its wheel ships the query library and example configs)") from None
    # A zipped install (zipimport) would hand back a zipfile.Path; pip always unpacks wheels.
    if not isinstance(root, Path):
        raise ResourceError(f"package {data.package!r} is not on the file system ({root}): "
                            "install loomgate with pip")
    return root


def queries_dir() -> Path:
    """Where the named queries (``NAME.sql``) are."""
    return package_dir(QUERIES)


def schema_dir() -> Path:
    """Where the versioned schema files (``NNN_name.sql``) are."""
    return queries_dir() / "schema"


def example_config(name: str) -> Path:
    """A shipped config file, e.g. ``demo.yaml``; ``ResourceError`` naming the file when it is absent."""
    path = package_dir(CONFIG) / name
    if not path.is_file():
        raise ResourceError(f"{path}: the example config {name!r} is missing from this installation")
    return path


def example_configs() -> list[str]:
    """Names of the shipped config files."""
    return sorted(p.name for p in package_dir(CONFIG).glob("*.yaml"))


def cli_main(argv: list[str]) -> int:
    """``loomgate example-config [NAME]``: print a shipped config (start a config from it), or list them."""
    import argparse
    import sys

    p = argparse.ArgumentParser(
        prog="loomgate example-config",
        description="Print one of the config files shipped with loomgate (e.g. `loomgate example-config "
                    "gateway.yaml > gateway.yaml`); without NAME, list them.")
    p.add_argument("name", nargs="?", help="file name, e.g. gateway.yaml")
    args = p.parse_args(argv)
    names = example_configs()
    if not names:
        raise ResourceError(f"{package_dir(CONFIG)}: no config files (*.yaml) in this installation")
    if args.name is None:
        print("\n".join(names))
        return 0
    if args.name not in names:
        print(f"loomgate example-config: no example config {args.name!r} (one of: {', '.join(names)})",
              file=sys.stderr)
        return 2
    sys.stdout.write(example_config(args.name).read_text(encoding="utf-8"))
    return 0
