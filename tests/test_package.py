"""The package installs with its data and keeps the import direction of DESIGN.md."""

import ast
import os
import subprocess
import sys
from importlib import resources
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_catalogue_ships_as_package_data():
    text = resources.files("convnet_apps_data").joinpath("weights.tsv").read_text()
    assert "yolo-fastest-1.1-xl.weights" in text
    names = resources.files("convnet_apps_data").joinpath("coco.names").read_text().split("\n")
    assert names[2] == "car" and len([n for n in names if n]) == 80


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_shared_never_imports_an_app():
    offenders = [
        f"{path.relative_to(REPO_ROOT)} imports {module}"
        for path in (REPO_ROOT / "shared").rglob("*.py")
        for module in _imported_modules(path)
        if module == "apps" or module.startswith("apps.")
    ]
    assert offenders == []


def test_apps_never_import_each_other():
    offenders = []
    for app_dir in (REPO_ROOT / "apps").iterdir():
        if not app_dir.is_dir() or app_dir.name.startswith("__"):
            continue
        for path in app_dir.rglob("*.py"):
            for module in _imported_modules(path):
                parts = module.split(".")
                if parts[0] == "apps" and len(parts) > 1 and parts[1] != app_dir.name:
                    offenders.append(f"{path.relative_to(REPO_ROOT)} imports {module}")
    assert offenders == []


def test_every_package_is_listed_for_installation():
    import tomllib

    config = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    listed = set(config["tool"]["setuptools"]["packages"])
    on_disk = {
        ".".join(init.parent.relative_to(REPO_ROOT).parts)
        for top in ("apps", "shared")
        for init in (REPO_ROOT / top).rglob("__init__.py")
    }
    assert on_disk <= listed, f"add to [tool.setuptools] packages: {sorted(on_disk - listed)}"


def test_test_files_have_unique_names():
    # tests/ has no __init__.py files (a package named "shared" would shadow the real one), so
    # pytest imports test modules by basename: two files with one name cannot both be collected.
    names = [path.name for path in (REPO_ROOT / "tests").rglob("test_*.py")]
    assert sorted({n for n in names if names.count(n) > 1}) == []


def test_plain_pytest_collects_as_python_m_pytest_does():
    """The `pytest` script does not put the checkout on sys.path; without the `pythonpath`
    setting `tests/apps` shadowed the `apps` package and collection failed."""
    script = Path(sys.executable).with_name("pytest")
    module = "tests/apps/car_detection/test_results.py"
    done = subprocess.run(
        [str(script), "--collect-only", "-q", "-p", "no:cacheprovider", module],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:]


MISSING_RESOURCES_TEST = """
def test_needs_resources(shared_dir):
    assert shared_dir.is_dir()
"""


def test_missing_shared_resources_fail_when_required(tmp_path):
    """CI sets CONVNET_APPS_REQUIRE_SHARED=1: a run without ../shared is red, not skipped."""
    (tmp_path / "test_needs_resources.py").write_text(MISSING_RESOURCES_TEST)
    outcomes = {}
    for required in ("", "1"):
        environment = os.environ | {
            "CONVNET_APPS_SHARED": str(tmp_path / "absent"),
            "CONVNET_APPS_REQUIRE_SHARED": required,
            "PYTHONPATH": str(REPO_ROOT / "tests"),
        }
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-p",
                "conftest",
                "-p",
                "no:cacheprovider",
                "-p",
                "no:xdist",
                str(tmp_path),
            ],
            cwd=tmp_path,
            env=environment,
            capture_output=True,
            text=True,
            check=False,
        )
        outcomes[required] = (done.returncode, done.stdout.strip().splitlines()[-1])
    assert outcomes[""][0] == 0 and "1 skipped" in outcomes[""][1]
    assert outcomes["1"][0] == 1 and "1 error" in outcomes["1"][1]
