"""The test bed: a simulated GPU host around a real Docker engine.

Independent of pytest_llem by design, so that the tests can catch the product's mistakes.
"""

from .engine import DOCKER_CLI, Engine, EngineError, engine_unavailable_reason, rootfs_tar
from .hanging import HangingSocket
from .hook import DELAY_ENV, REQUIREMENT_ERROR, HookCall, compare_versions, unsatisfied_requirement
from .host import (
    DOCKER_CLIS,
    TEST_USER,
    TOOLKIT,
    HostScenario,
    HostSetup,
    HostSmi,
    HostTools,
    ProductRunner,
    as_user,
    ensure_test_user,
    run,
    user_command,
)
from .hostile import HOSTILE_PATH, build_hostile_image
from .recording import RecordingSocket
from .registry import Registry, SlowLink, registry_unavailable_reason
from .scenario import (
    DEFAULT_GPUS,
    Gpu,
    GpuScenario,
    HookBehaviour,
    ScenarioSetter,
    nvidia_smi_script,
    server_gpus,
    visible_gpus,
)
from .workload import WORKLOAD_PATH, build_workload_image

__all__ = [
    "DEFAULT_GPUS",
    "DELAY_ENV",
    "DOCKER_CLI",
    "DOCKER_CLIS",
    "HOSTILE_PATH",
    "REQUIREMENT_ERROR",
    "TEST_USER",
    "TOOLKIT",
    "WORKLOAD_PATH",
    "Engine",
    "EngineError",
    "Gpu",
    "GpuScenario",
    "HangingSocket",
    "HookBehaviour",
    "HookCall",
    "HostScenario",
    "HostSetup",
    "HostSmi",
    "HostTools",
    "ProductRunner",
    "RecordingSocket",
    "Registry",
    "ScenarioSetter",
    "SlowLink",
    "as_user",
    "build_hostile_image",
    "build_workload_image",
    "compare_versions",
    "engine_unavailable_reason",
    "ensure_test_user",
    "nvidia_smi_script",
    "registry_unavailable_reason",
    "rootfs_tar",
    "run",
    "server_gpus",
    "unsatisfied_requirement",
    "user_command",
    "visible_gpus",
]
