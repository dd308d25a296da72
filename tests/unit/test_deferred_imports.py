"""providers/deferred.py: the providers import a few SDK modules, and the SDKs stay whole for everyone else."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.support.procs import REPO


def run(code: str) -> str:
    """In a fresh interpreter: whether a module was imported depends on everything imported before."""
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip()


def test_the_providers_leave_the_rest_of_each_sdk_unimported() -> None:
    out = run("""
        import sys
        import providers.kubernetes, providers.vertex
        print(sorted(m for m in ("google.cloud.aiplatform_v1.types.dataset",
                                 "google.cloud.aiplatform_v1.services.dataset_service",
                                 "kubernetes.client.models.v1_pod", "kubernetes.client.api.core_v1_api",
                                 "kubernetes.watch") if m in sys.modules))
    """)
    assert out == "[]"


def test_the_packages_are_whole_when_used_as_usual() -> None:
    out = run("""
        import providers.kubernetes, providers.vertex
        import google.cloud.aiplatform_v1 as aiplatform
        import kubernetes
        from google.cloud.aiplatform_v1.types import CreatePipelineJobRequest
        from kubernetes import client
        print(aiplatform.ScheduleServiceClient is providers.vertex.ScheduleServiceClient,
              aiplatform.Schedule is providers.vertex.Schedule,
              aiplatform.PipelineJob.__name__, CreatePipelineJobRequest.__name__,
              client.Configuration is providers.kubernetes.Configuration,
              client.BatchV1Api is providers.kubernetes.BatchV1Api,
              client.V1CronJob.__name__, kubernetes.watch.__name__, bool(kubernetes.__version__))
    """)
    assert out == "True True PipelineJob CreatePipelineJobRequest True True V1CronJob kubernetes.watch True"


def test_an_sdk_imported_first_is_left_alone() -> None:
    out = run("""
        import google.cloud.aiplatform_v1 as aiplatform
        from kubernetes import client
        import providers.kubernetes, providers.vertex
        print(aiplatform.Schedule is providers.vertex.Schedule, client.ApiClient is providers.kubernetes.ApiClient)
    """)
    assert out == "True True"
