"""The one exception type the workflow reports to users without a traceback, and how a
Snakefile stops on one."""

from typing import NoReturn


class SoftError(Exception):
    """A problem the user can fix: bad input, a wrong config value, a missing file.

    The message must name the file, line or config key at fault. Scripts catch this,
    print the message alone and exit non-zero; anything else is a bug and keeps its
    traceback.
    """


def refuse(error: SoftError, what: str) -> NoReturn:
    """Stop a Snakefile being parsed (the DAG build) with one line: `<what>: <message>`.

    Raising from a Snakefile makes Snakemake print the exception's class, a location line
    and the Snakefile's frames around a problem that is the user's to fix; SystemExit is
    the one exit Snakemake lets through without formatting it, so the message printed
    here is all the user sees.
    """
    from snakemake.logging import logger

    logger.error(f"{what}: {error}")
    raise SystemExit(1)
