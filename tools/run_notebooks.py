"""Execute notebooks in place, deterministically (``make notebooks``).

Each notebook runs top to bottom in a fresh kernel from the repository's virtual environment,
in its own folder, with the offline/seed environment the Makefile exports. Volatile metadata
(execution timestamps) is dropped so that a re-run only changes what the code prints.

    python tools/run_notebooks.py notebooks/ch04_activations_losses.ipynb [...]
"""

import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient


def execute(path: Path, timeout: int = 600) -> float:
    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    NotebookClient(nb, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    seconds = time.perf_counter() - start
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
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
