"""Instance driver timings: start -> /ready and stop, for processes and containers; image builds.

    .venv/bin/python benchmarks/instances.py [--runs 5] [--skip-docker] [--skip-cold]

Prints, per driver, the median (and min/max) of ``--runs`` start->ready and stop times of one
idle stock API instance against a real Redis, then the no-op ``scripts/build-image`` time
(median of 3) and, unless ``--skip-cold``, a cold build (debootstrap base + app image with no
layer cache) into throwaway tags that are removed afterwards. Writes nothing; copy the output
into docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kongstack.core.settings import REPO_ROOT, LocalSettings  # noqa: E402
from tasks.instances.base import InstanceDriver  # noqa: E402
from tasks.instances.common import DockerSettings, ProcessSettings, engine_usable  # noqa: E402
from tests.support.services import redis_server  # noqa: E402

BUILD = str(REPO_ROOT / "scripts" / "build-image")


def _summary(label: str, values: list[float]) -> str:
    return (f"{label:<34} median {statistics.median(values):6.2f} s   "
            f"min {min(values):6.2f}   max {max(values):6.2f}   (n={len(values)})")


def time_driver(driver: InstanceDriver, runs: int, grace: float) -> tuple[list[float], list[float]]:
    ready_s, stop_s = [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        instance = driver.wait_ready(driver.start(), timeout=120)
        t1 = time.perf_counter()
        driver.stop(instance.id, grace=grace)
        t2 = time.perf_counter()
        ready_s.append(t1 - t0)
        stop_s.append(t2 - t1)
    return ready_s, stop_s


def _timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _run_build(*args: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run([BUILD, *args], env={**os.environ, **(env or {})},
                          capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise SystemExit(f"scripts/build-image failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def noop_builds(runs: int = 3) -> list[float]:
    """Timed runs of scripts/build-image that found nothing to do (a run that rebuilt because
    stock_api/ changed meanwhile is not a no-op and is left out)."""
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        out = _run_build()
        if "nothing to do" in out:
            times.append(time.perf_counter() - t0)
    return times


def cold_build() -> tuple[float, float]:
    """(base via debootstrap + import, app image with no cache) into throwaway tags."""
    tag = f"bench-{os.getpid()}"
    base, image = f"localhost/kongstack-base:{tag}", f"localhost/kongstack-stock-api:{tag}"
    with tempfile.TemporaryDirectory(prefix="kongstack-rootfs-") as rootfs:
        env = {"KONGSTACK_LOCAL_BASE": base, "KONGSTACK_IMAGE": image,
               "KONGSTACK_ROOTFS_DIR": f"{rootfs}/rootfs"}
        # Only the base step: KONGSTACK_IMAGE_BASE unset and the tag absent -> debootstrap.
        total = _timed(lambda: _run_build("--no-cache", env=env))
        app_only = _timed(lambda: _run_build("--no-cache", env=env))  # base now present
    subprocess.run(["podman", "rmi", "-f", image, base], capture_output=True, timeout=120)
    return total, app_only


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--grace", type=float, default=10.0, help="stop grace period (s)")
    parser.add_argument("--skip-docker", action="store_true")
    parser.add_argument("--skip-cold", action="store_true", help="skip the ~1 min cold build")
    args = parser.parse_args()
    print(f"$ .venv/bin/python benchmarks/instances.py --runs {args.runs}"
          + (" --skip-docker" if args.skip_docker else "")
          + (" --skip-cold" if args.skip_cold else ""))
    print(f"machine: {os.cpu_count()} cores, shared/noisy; one idle instance at a time\n")
    local = LocalSettings()
    with tempfile.TemporaryDirectory(prefix="kongstack-bench-") as tmp_name:
        tmp = Path(tmp_name)
        with redis_server(tmp / "redis") as (host, port, _daemon):
            redis_url = f"redis://{host}:{port}/0"
            from tasks.instances.process import ProcessDriver

            process = ProcessDriver(ProcessSettings(
                stack="bench-proc", redis_url=redis_url, data_dir=tmp / "data",
                run_dir=tmp / "run", log_dir=tmp / "log",
            ))
            ready, stop = time_driver(process, args.runs, args.grace)
            print(_summary("process: start -> /ready", ready))
            print(_summary("process: stop (SIGTERM, idle)", stop))

            reason = None if not args.skip_docker else "--skip-docker"
            reason = reason or engine_usable(local.docker_host)
            if reason is None:
                _run_build()  # make sure the image is current before timing containers
                from tasks.instances.docker import DockerDriver

                docker = DockerDriver(DockerSettings(
                    stack="bench-docker", base_url=local.docker_host, image=local.image,
                    redis_url=redis_url, data_dir=tmp / "data-docker", cpus=1.0, memory="256m",
                ))
                ready, stop = time_driver(docker, args.runs, args.grace)
                print(_summary("docker: start -> /ready (1 CPU)", ready))
                print(_summary("docker: stop + remove (idle)", stop))
                noop = noop_builds()
                if noop:
                    print(_summary("image: no-op scripts/build-image", noop))
                if not args.skip_cold:
                    total, app_only = cold_build()
                    print(f"{'image: cold build, base + app':<34} {total:6.1f} s")
                    print(f"{'image: cold app build (no cache)':<34} {app_only:6.1f} s")
            else:
                print(f"docker: skipped ({reason})")


if __name__ == "__main__":
    main()
