"""Fill the documentation templates in docs/src/ with the tool's real output.

Each ``<!-- run: CMD -->`` line becomes a fenced block showing ``$ CMD`` and what the tool printed
(stdout and stderr, plain, as when piped); ``<!-- run-rc: CMD -->`` also shows the exit code.
``<!-- write: FILE -->`` before a fenced block writes that block into the scratch directory the
commands run in. Usage: python docs/generate.py docs/src/user-guide.md.in docs/user-guide.md
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run(cmd: str, show_rc: bool, workdir: Path) -> str:
    env = dict(os.environ, COLUMNS="100", PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    env.pop("FORCE_COLOR", None)
    proc = subprocess.run(["bash", "-c", cmd], cwd=workdir, env=env, capture_output=True, text=True)
    out = proc.stdout + proc.stderr
    if proc.returncode not in (0, 1, 2) and "|" not in cmd:
        sys.exit(f"{cmd} failed ({proc.returncode}):\n{out}")
    text = "\n".join(line.rstrip() for line in out.rstrip("\n").splitlines())
    if show_rc:
        text += f"\n[exit code {proc.returncode}]"
    return f"```text\n$ {cmd}\n{text}\n```"


def generate(src: Path, dst: Path) -> None:
    """Write ``dst`` from the template ``src``."""
    lines: list[str] = []
    source = src.read_text(encoding="utf-8").splitlines()
    with tempfile.TemporaryDirectory() as scratch:
        workdir = Path(scratch)
        index = 0
        while index < len(source):
            line = source[index]
            index += 1
            write = re.fullmatch(r"<!-- write: (\S+) -->", line.strip())
            if write:  # the fenced block that follows is shown and also written into the scratch directory
                end = source.index("```", index + 1)
                (workdir / write.group(1)).write_text("\n".join(source[index + 1:end]) + "\n", encoding="utf-8")
                continue
            match = re.fullmatch(r"<!-- (run|run-rc): (.+) -->", line.strip())
            lines.append(run(match.group(2), match.group(1) == "run-rc", workdir) if match else line)
    dst.write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    generate(Path(sys.argv[1]), Path(sys.argv[2]))
