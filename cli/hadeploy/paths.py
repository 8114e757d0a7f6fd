"""Where hadeploy finds its Ansible content and keeps a deployment's state."""

from __future__ import annotations

import os
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def data_root() -> Path:
    """Roles, playbooks and inventories: inside the wheel, or at the checkout's root."""
    installed = _PACKAGE / "_data"
    if (installed / "roles").is_dir():
        return installed
    checkout = _PACKAGE.parent.parent
    if (checkout / "roles").is_dir() and (checkout / "playbooks").is_dir():
        return checkout
    from hadeploy.errors import ExitCode, HadeployError

    raise HadeployError(f"hadeploy's Ansible roles are missing (looked in {installed} and "
                        f"{checkout})", hint="reinstall hadeploy from a wheel or run it from "
                        "a checkout of the repository", code=ExitCode.ENVIRONMENT)


def roles_dir() -> Path:
    return data_root() / "roles"


def playbook(name: str) -> Path:
    return data_root() / "playbooks" / name


def inventory_dir(target: str) -> Path:
    return data_root() / "inventories" / target


def state_root() -> Path:
    """``$HADEPLOY_STATE_DIR``, else ``./.hadeploy`` (like ``.terraform/``)."""
    env = os.environ.get("HADEPLOY_STATE_DIR")
    return Path(env) if env else Path.cwd() / ".hadeploy"


def state_dir(deployment: str) -> Path:
    return state_root() / deployment
