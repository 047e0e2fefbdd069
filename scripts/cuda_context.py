"""Hold a CUDA context on GPU 0 (1 GiB allocated, no kernel) for SECONDS, through libcuda alone.

A process like this is what the gpu-idle check must catch even at 0 % utilization. Prints
"ready" once the context exists. Usage: python3 scripts/cuda_context.py [SECONDS]
"""

from __future__ import annotations

import ctypes
import sys
import time


def main(seconds: float) -> int:
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError as error:
        print(f"no CUDA driver library: {error}", flush=True)
        return 1
    device, context, memory = ctypes.c_int(), ctypes.c_void_p(), ctypes.c_uint64()
    steps = (
        ("cuInit", cuda.cuInit, (0,)),
        ("cuDeviceGet", cuda.cuDeviceGet, (ctypes.byref(device), 0)),
        ("cuCtxCreate", cuda.cuCtxCreate_v2, (ctypes.byref(context), 0, device)),
        ("cuMemAlloc", cuda.cuMemAlloc_v2, (ctypes.byref(memory), ctypes.c_size_t(1 << 30))),
    )
    for name, function, args in steps:
        status = function(*args)
        if status != 0:
            print(f"{name} failed with CUDA error {status}", flush=True)
            return 1
    print("ready", flush=True)
    time.sleep(seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main(float(sys.argv[1]) if len(sys.argv) > 1 else 60))
