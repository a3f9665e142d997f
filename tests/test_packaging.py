"""Install surface: pyproject, requirements.txt (the seed's `pip install -r`), Makefile, CI, presets."""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def _requirement_lines(path: Path) -> list[str]:
    lines = (line.split("#", 1)[0].strip() for line in path.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~ ;\[]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def test_requirements_txt_equals_the_runtime_dependencies():
    requirements = _requirement_lines(REPO_ROOT / "requirements.txt")
    dependencies = PYPROJECT["project"]["dependencies"]
    assert requirements == dependencies, "update requirements.txt from [project.dependencies]"
    names = {_name(r) for r in requirements}
    assert {"torch", "numpy", "pydantic", "pyyaml", "symusic", "soundfile", "tqdm"} <= names
    assert len(names) == len(requirements)  # no package twice


def test_pyproject_declares_the_console_command_python_and_extras():
    project = PYPROJECT["project"]
    assert project["name"] == "cinematic"
    assert project["scripts"]["cinematic"] == "cinematic.cli:main"
    assert "3.11" in project["requires-python"]
    extras = project["optional-dependencies"]
    assert {"pytest", "ruff"} <= {_name(r) for r in extras["dev"]}
    assert {"wandb"} <= {_name(r) for r in extras["wandb"]}
    assert any(r.startswith("torch") for r in project["dependencies"])
    assert "presets/*.yaml" in PYPROJECT["tool"]["setuptools"]["package-data"]["cinematic"]


def test_makefile_has_the_two_commands_and_an_idempotent_install():
    makefile = (REPO_ROOT / "Makefile").read_text(encoding="utf-8")
    for target in ("install:", "test:", "quickstart:"):
        assert re.search(rf"^{target}", makefile, re.MULTILINE), target
    assert re.search(r"^test: install", makefile, re.MULTILINE)
    assert re.search(r"^quickstart: install", makefile, re.MULTILINE)
    assert "torch==2.13.0" in makefile and '-e ".[dev]"' in makefile
    assert "apt-get install" in makefile and "espeak-ng" in makefile
    assert "ruff check" in makefile and "pytest" in makefile


def test_ci_runs_make_test():
    ci = REPO_ROOT / ".ci" / "run"
    assert os.access(ci, os.X_OK)
    commands = [
        line for line in ci.read_text(encoding="utf-8").splitlines() if line and not line.startswith("#")
    ]
    assert "make test" in commands


def test_readme_starts_with_the_two_commands():
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    first_section = readme.split("\n## ", 2)[:2]
    text = "\n".join(first_section)
    assert "make quickstart" in text and "make test" in text


def test_config_presets_are_the_packaged_ones():
    presets = REPO_ROOT / "src" / "cinematic" / "presets"
    for name in ("tiny.yaml", "base.yaml"):
        link = REPO_ROOT / "configs" / name
        assert link.resolve() == (presets / name).resolve()
        assert link.read_text(encoding="utf-8") == (presets / name).read_text(encoding="utf-8")
