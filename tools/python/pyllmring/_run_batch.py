"""run_batch: the JSONL job of `llmring batch`, in this process."""

from __future__ import annotations

import os

__all__ = ["run_batch"]


def _flag(name):
    return "--" + name.replace("_", "-")


def batch_argv(input, output, options):
    """The CLI's arguments for run_batch's: keyword options become flags
    (concurrency=64 -> --concurrency 64, mock=True -> --mock; False and None
    leave a flag out; a list repeats it)."""
    argv = [os.fspath(input), "-o", os.fspath(output)]
    for name, value in options.items():
        if value is None or value is False:
            continue
        if value is True:
            argv.append(_flag(name))
        elif isinstance(value, (list, tuple)):
            for v in value:
                argv += [_flag(name), str(v)]
        else:
            argv += [_flag(name), str(value)]
    return argv


def run_batch(input, output, *, progress=None, interval=0.1, **options):
    """Runs `llmring batch INPUT OUTPUT` with options as its flags, on a
    thread of the engine's while this one waits with the GIL released.
    progress(counts) is called on this thread about every interval seconds
    while counts change (submitted, queued, in_flight, succeeded, failed,
    retried, input_tokens, output_tokens, cost_usd). Ctrl-C stops the job
    with its output valid: a second run resumes it. Returns the CLI's exit
    status: 0 all lines succeeded, 1 some failed (error lines in OUTPUT),
    2 the job could not run (the reason is printed on stderr)."""
    from . import _batch
    return _batch.run_batch(batch_argv(input, output, options), progress, interval)
