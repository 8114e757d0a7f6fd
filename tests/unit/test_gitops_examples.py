"""The example pipelines parse, say what each job runs, and skip only the forge-API line.
(They run against the lab in tests/integration/test_lab.py.)"""

from __future__ import annotations

from tests.pipelines import github_jobs, gitlab_jobs


def test_github_workflow_plans_on_pull_requests_applies_on_main_and_checks_drift():
    jobs = github_jobs()
    assert set(jobs) == {"plan", "apply", "drift"}
    assert "--detailed-exitcode --format markdown" in jobs["plan"].scripts[0]
    assert jobs["plan"].skipped == ['gh pr comment "$PR" --body-file plan.md']
    assert jobs["apply"].scripts[0].startswith("hadeploy up ") and not jobs["apply"].skipped
    assert "--drift --detailed-exitcode" in jobs["drift"].scripts[0]
    assert jobs["apply"].env["HADEPLOY_STATE_DIR"] == "/var/lib/hadeploy/state"


def test_gitlab_pipeline_has_the_same_three_jobs():
    jobs = gitlab_jobs()
    assert set(jobs) == {"plan", "apply", "drift"}
    assert len(jobs["plan"].skipped) == 1 and "merge_requests" in jobs["plan"].skipped[0]
    assert "hadeploy up --config hadeploy.yaml --yes" in jobs["apply"].scripts[0]
    assert "--drift --detailed-exitcode" in jobs["drift"].scripts[0]
    assert all(len(job.scripts) == 1 for job in jobs.values())  # one shell per job
