"""Execute notebooks in place, deterministically (``make notebooks``).

Each notebook runs top to bottom in a fresh kernel from the repository's virtual environment,
in its own folder, with the offline/seed environment the Makefile exports. Volatile metadata
(execution timestamps) is dropped so that a re-run only changes what the code prints.

    python tools/run_notebooks.py notebooks/ch04_activations_losses.ipynb [...]
"""

import re
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient


_CARRIAGE_RETURN = re.compile(r"^.*\r(?=[^\n])", re.MULTILINE)


def coalesce_streams(cell) -> None:
    """Merge consecutive stdout (or stderr) pieces of a cell into one output, keeping only what a
    terminal would show after carriage returns: a progress bar is then one line in the book, not
    fourteen. Outputs keep their order; nbval compares the same merged text."""
    merged = []
    for output in cell.get("outputs", []):
        previous = merged[-1] if merged else None
        if (output.get("output_type") == "stream" and previous is not None
                and previous.get("output_type") == "stream" and previous["name"] == output["name"]):
            previous["text"] += output["text"]
            continue
        merged.append(output)
    for output in merged:
        if output.get("output_type") == "stream":
            output["text"] = _CARRIAGE_RETURN.sub("", output["text"])
    cell["outputs"] = merged


def execute(path: Path, timeout: int = 600) -> float:
    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    NotebookClient(nb, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    seconds = time.perf_counter() - start
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        if cell.cell_type == "code":
            coalesce_streams(cell)
    nb.metadata.pop("widgets", None)
    nbformat.write(nb, path)
    return seconds


def main(paths: list[str]) -> None:
    if not paths:
        raise SystemExit("usage: run_notebooks.py NOTEBOOK.ipynb [...]")
    for name in paths:
        seconds = execute(Path(name))
        print(f"{name}: {seconds:.1f} s", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
