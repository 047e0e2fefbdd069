"""Built-in defaults shared by the plugin's options and the study file (no imports here)."""

DEFAULT_PROBE_IMAGE = "nvidia/cuda:12.0.0-base-ubuntu22.04"
DEFAULT_PROBE_TIMEOUT_S = 30.0
DEFAULT_PULL_TIMEOUT_S = 600.0
DEFAULT_CACHE_S = 900.0
# Limit for the quick host commands (docker version/info/inspect, nvidia-smi).
HOST_COMMAND_TIMEOUT_S = 10.0
