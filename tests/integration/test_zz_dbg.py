import json, time
from test_checks import preflight, images, IMAGE  # noqa

def test_x(run_product, host_tools, gpu_engine, images):
    host_tools.use_nvidia_smi("nvml_mismatch")
    run = preflight(run_product, host_tools, "--llem-image", IMAGE)
    print(json.dumps(run.warnings, indent=1))
    env, _ = host_tools.prepare("no_docker", gpu_engine)
    host_tools.use_toolkit([])
    run = preflight(run_product, host_tools, "--llem-image", IMAGE, "-x", "--maxfail=1", env=env)
    print(run.failure_causes, run.outcomes)
