"""hadeploy finds its roles and playbooks from a checkout and from a built wheel."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from tests.conftest import REPO


def test_checkout_layout():
    from hadeploy import paths

    assert paths.data_root() == REPO
    assert (paths.roles_dir() / "haproxy" / "tasks" / "main.yml").exists()
    assert paths.playbook("site.yml").exists()


def test_wheel_carries_roles_and_finds_them(tmp_path: Path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(tmp_path), str(REPO)], check=True, capture_output=True)
    wheel = next(tmp_path.glob("hadeploy-*.whl"))
    target = tmp_path / "site"
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        zf.extractall(target)
    assert "hadeploy/_data/playbooks/site.yml" in names
    assert "hadeploy/_data/roles/app/files/hadeploy_app.py" in names
    assert "hadeploy/_data/inventories/lab/group_vars/all.yml" in names
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from hadeploy import paths; "
            "print(paths.data_root()); print(paths.playbook('site.yml').exists())")
    out = subprocess.run([sys.executable, "-c", code, str(target)], capture_output=True,
                         text=True, check=True, cwd=tmp_path).stdout.split()
    assert out == [str(target / "hadeploy" / "_data"), "True"]
