"""`loomgate` command line: a table of subcommands, each owned by the module that implements it.

Each module exposes ``cli_main(argv: list[str]) -> int``; modules are imported only when their command
runs, so ``loomgate --help`` stays instant.
"""

from __future__ import annotations

import importlib
import sys

from collectors.resources import ResourceError

COMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("gateway.server", "run the gateway (partner + admin listeners) from a config file"),
    "check-config": ("gateway.config_loader", "validate a config file; exit 2 listing every mistake"),
    "hash-key": ("gateway.auth", "print the SHA-256 digest of an API key for the partners section"),
    "demo": ("gateway.demo", "start sample upstreams, the gateway and simulated partners; show reports"),
    "migrate": ("collectors.schema", "apply the versioned ClickHouse schema to the store"),
    "query": ("collectors.querylib", "run a named query from queries/ (--list shows them all)"),
    "sla": ("collectors.sla", "print the uptime and latency SLA report"),
    "import": ("collectors.import_cli", "import KPI data or span history (CSV, JSONL, Parquet, OTLP/JSON)"),
    "example-config": ("collectors.resources", "print a config file shipped with loomgate, or list them"),
    "generate": ("collectors.generate", "generate a deterministic call and KPI history with planted effects"),
}


def _usage() -> str:
    width = max(len(n) for n in COMMANDS)
    lines = ["usage: loomgate COMMAND [ARGS...]", "", "Commands:"]
    lines += [f"  {name.ljust(width)}  {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "Run `loomgate COMMAND --help` for a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    if args[0] in ("-V", "--version"):
        from gateway import __version__

        print(f"loomgate {__version__}")
        return 0
    entry = COMMANDS.get(args[0])
    if entry is None:
        print(f"loomgate: unknown command {args[0]!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    try:
        module = importlib.import_module(entry[0])
        return int(module.cli_main(args[1:]) or 0)
    except ResourceError as exc:  # an incomplete installation: say what is missing, not a traceback
        print(f"loomgate {args[0]}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
