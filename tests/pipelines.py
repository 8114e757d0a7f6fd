"""The example pipelines (examples/gitops/) as the tests run them: every job's shell lines,
in order, the way the CI system would (GitHub: each `run:` in `bash -eo pipefail`; GitLab:
a job's script lines in one `bash` with `set -eo pipefail`), with the pipeline's own
variables and the test's overrides. The one line per file that talks to the forge's API
(posting the plan as a comment) cannot run here; it is named, skipped and counted."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "gitops"
FORGE_API = ("gh pr comment", "$CI_API_V4_URL")


@dataclass
class Job:
    name: str
    scripts: list[str]  # each one shell script, run in order; the job fails at the first error
    env: dict[str, str]
    skipped: list[str]  # lines that call the forge's API


def _forge(line: str) -> bool:
    return any(marker in line for marker in FORGE_API)


def github_jobs(path: Path = EXAMPLES / "github-actions.yml") -> dict[str, Job]:
    doc = yaml.safe_load(path.read_text())
    out = {}
    for name, job in doc["jobs"].items():
        scripts, skipped, env = [], [], {**doc.get("env", {}), **job.get("env", {})}
        for step in job["steps"]:
            if "run" not in step:
                assert step["uses"].startswith("actions/checkout@"), step  # the checkout
                continue
            if _forge(step["run"]):
                skipped.append(step["run"].strip())
                continue
            assert "${{" not in step["run"], "expressions go through env:, not into scripts"
            scripts.append(step["run"])
        out[name] = Job(name, scripts, {k: str(v) for k, v in env.items()}, skipped)
    return out


def gitlab_jobs(path: Path = EXAMPLES / "gitlab-ci.yml") -> dict[str, Job]:
    doc = yaml.safe_load(path.read_text())
    variables = {k: str(v) for k, v in doc.get("variables", {}).items()}
    out = {}
    for name, job in doc.items():
        if not isinstance(job, dict) or "script" not in job:
            continue
        lines = [line for line in job["script"] if not _forge(line)]
        out[name] = Job(name, ["\n".join(lines)], {**variables, **job.get("variables", {})},
                        [line for line in job["script"] if _forge(line)])
    return out


def run_job(job: Job, cwd: Path, overrides: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run the job's scripts in order in ``cwd`` (a checkout); the first failure stops it."""
    env = {**os.environ, **job.env, **overrides}
    result = subprocess.CompletedProcess[str]([], 0, "", "")
    out, err = [], []
    for script in job.scripts:
        result = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c",
                                 script], cwd=cwd, env=env, capture_output=True, text=True,
                                timeout=900, check=False)
        out.append(result.stdout)
        err.append(result.stderr)
        if result.returncode != 0:
            break
    return subprocess.CompletedProcess(job.scripts, result.returncode, "".join(out),
                                       "".join(err))
