"""The other files of a results folder that a reader of report.html should be able to open.

A comparison (``compare.html``, from ``compare`` or ``report --baseline``)
and Locust's own statistics (``locust/``: its HTML report and CSV tables per
cell, with the phones' events as requests) sit beside the report; this
module lists them and adds one short section of relative links to the
rendered report, so the folder still travels as a whole.
"""

from __future__ import annotations

import html as html_lib
from pathlib import Path

#: Marks the section, so a second pass replaces it instead of adding another.
MARK = "<!-- progressbench:related -->"
LOCUST_DIR = "locust"


def related_files(folder: Path) -> list[tuple[str, str]]:
    """(relative path, what it is) for each related file present, in a stable order."""
    found: list[tuple[str, str]] = []
    for name, what in (
        ("compare.html", "comparison with a baseline"),
        ("compare.md", "comparison (Markdown)"),
    ):
        if (folder / name).is_file():
            found.append((name, what))
    locust = folder / LOCUST_DIR
    if locust.is_dir():
        for path in sorted(locust.glob("*.html")):
            found.append((f"{LOCUST_DIR}/{path.name}", f"Locust's report, cell {path.stem}"))
        for path in sorted(locust.glob("*_stats.csv")):
            found.append((f"{LOCUST_DIR}/{path.name}", "Locust's statistics (CSV)"))
    return found


def with_related(text: str, files: list[tuple[str, str]], *, html: bool) -> str:
    """``text`` (a rendered report) with one section linking ``files``; replaces an earlier one."""
    if MARK in text:
        before, _, after = text.partition(MARK)
        text = before + (after[after.find("</body>") :] if html and "</body>" in after else "")
    if html:
        items = "".join(
            f'<li><a href="{html_lib.escape(path)}">{html_lib.escape(path)}</a>: {html_lib.escape(what)}</li>'
            for path, what in files
        )
        section = f"{MARK}\n<h2>Related files</h2>\n<ul>{items}</ul>\n"
        head, sep, tail = text.rpartition("</body>")
        return (head + section + sep + tail) if sep else text + section
    items = "\n".join(f"- [{path}]({path}): {what}" for path, what in files)
    return f"{text.rstrip()}\n\n{MARK}\n## Related files\n\n{items}\n"
