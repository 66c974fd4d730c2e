"""The book builds with warnings as errors, and its navigation lists every chapter of the outline."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
TOC = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))


def toc_files():
    files = [TOC["root"]]
    for part in TOC["parts"]:
        for chapter in part["chapters"]:
            files.append(chapter["file"])
            files.extend(section["file"] for section in chapter.get("sections", []))
    return files


def test_toc_holds_the_whole_outline():
    """DESIGN.md's outline: four parts of 16 chapters in all, then the appendices."""
    captions = [part["caption"] for part in TOC["parts"]]
    assert [c.split(".")[0] for c in captions] == ["Part I", "Part II", "Part III", "Part IV", "Appendices"]
    chapters = [c["file"] for part in TOC["parts"][:4] for c in part["chapters"]]
    assert [int(re.search(r"ch(\d\d)_", f).group(1)) for f in chapters] == list(range(1, 17))
    for name in toc_files():
        matches = list(ROOT.glob(name + ".*"))
        assert matches, f"{name} is in _toc.yml but has no .md or .ipynb file"


@pytest.fixture(scope="module")
def built_book(tmp_path_factory):
    out = tmp_path_factory.mktemp("book")
    jb = Path(sys.executable).with_name("jupyter-book")
    run = subprocess.run([str(jb), "build", str(ROOT), "-W", "-n", "--keep-going", "--path-output", str(out)],
                         capture_output=True, text=True, timeout=1800)
    return run, out / "_build" / "html"


def test_book_builds_without_warnings(built_book):
    run, html = built_book
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-6000:]
    assert (html / "index.html").exists()


def test_navigation_lists_every_chapter(built_book):
    run, html = built_book
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    navigation = (html / "book" / "preface.html").read_text(encoding="utf-8")
    for name in toc_files()[1:]:
        assert (html / f"{name}.html").exists(), name
        assert f'{Path(name).name}.html"' in navigation, f"{name} missing from the navigation"
