"""The README's and docs' commands write their outputs under git-ignored directories (out/, audits/),
never into the repository's tracked tree."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUTPUT_OPTIONS = ("-o", "--output")


def ignored_dirs() -> set[str]:
    lines = (ROOT / ".gitignore").read_text(encoding="utf-8").splitlines()
    return {line.strip().rstrip("/") for line in lines if line.strip() and not line.startswith("#")}


def outputs(text: str) -> list[str]:
    found = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            command = line.split("#")[0].strip().rstrip("\\").strip()  # a continued line: its words
            words = shlex.split(command) if "lrp-audit" in command else []
            if not words or not words[0].endswith("lrp-audit"):
                continue
            found += [words[i + 1] for i, w in enumerate(words[:-1]) if w in OUTPUT_OPTIONS]
    return found


def test_documented_commands_write_under_ignored_directories():
    ignored = ignored_dirs()
    seen = []
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for out in outputs(page.read_text(encoding="utf-8")):
            top = Path(out).parts[0]
            if Path(out).is_absolute() or top in ("/tmp", "..") or out.startswith("$"):
                continue
            seen.append((page.name, out))
            assert top in ignored, f"{page.name}: `-o {out}` writes into the repository ({top}/ is not git-ignored)"
    assert ("README.md", "out/report.html") in seen  # the finder sees the README's commands
