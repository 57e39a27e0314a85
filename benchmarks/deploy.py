"""Benchmark deploy-stack.

1. Local provider from nothing (fresh home, free ports; after the image build) and an
   unchanged re-run, with the time of every step.
2. Azure provider against the ARM double with realistic operation delays (VM create LRO 4 s,
   network resources 1 s, polled every 0.5 s), VMs in parallel vs one at a time.

Run:  .venv/bin/python benchmarks/deploy.py [--skip-local] [--skip-azure] [--vm-seconds 4]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PORT_VARS = ("REDIS_PORT", "PROMETHEUS_PORT", "ALERTMANAGER_PORT", "GATEWAY_PORT",
             "GATEWAY_STATUS_PORT", "WEBHOOK_PORT", "API_BASE_PORT")


def bench_local(home: Path) -> None:
    from kongstack.core.procs import free_port

    os.environ["KONGSTACK_HOME"] = str(home)
    for name in PORT_VARS:
        os.environ[f"KONGSTACK_{name}"] = str(free_port())
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from kongstack.cli.localprefect import api_url
    from kongstack.core.settings import LocalSettings
    from tests.deploy.conftest import write_stack_file
    from tests.support.prefect_servers import prefect_server

    config = write_stack_file(home / "stack.yaml", name=f"bench{uuid.uuid4().hex[:6]}")
    settings = LocalSettings()
    # A Prefect server started first, as `kongstack up` does (deploy keeps the consumer keys
    # in Secret blocks); outside the timed part. Without one, the client's ephemeral server
    # started inside the install step and timed out at load 11.
    with prefect_server("sqlite") as server, \
            temporary_settings(updates={PREFECT_API_URL: api_url(server)}):
        _deploy_twice(config, settings)


def _deploy_twice(config: Path, settings: Any) -> None:
    from flows.deploy_stack import deploy
    from kongstack.core.topology import load_topology
    from tasks.providers.local.stack import LocalStack

    try:
        for label in ("from nothing", "unchanged re-run"):
            started = time.monotonic()
            summary = deploy(config, settings=settings, log=lambda _: None)
            wall = time.monotonic() - started
            steps = ", ".join(f"{s.name} {s.seconds:.2f}s" for s in summary.steps.values())
            print(f"local {label:17s}: {wall:6.2f} s  ok={summary.ok} "
                  f"changes={len(summary.changes):2d}  [{steps}]")
            if not summary.ok:
                print(summary.markdown())
                break
    finally:
        LocalStack(load_topology(config), settings, lambda _: None).stop()


def bench_azure(vm_seconds: float, poll: float) -> None:
    from kongstack.core.topology import Topology
    from tasks.providers.azure.provision import AzureProvisioner
    from tests.providers.azure.arm_double import arm_double
    from tests.providers.azure.conftest import HOST_KEY, azure_topology, clients_for

    delays = {"virtualMachines": vm_seconds, "publicIPAddresses": 1.0,
              "networkInterfaces": 1.0, "virtualNetworks": 1.0, "networkSecurityGroups": 1.0,
              "subnets": 0.5, "runCommand": 1.0}
    results: dict[int, float] = {}
    for parallel in (8, 1):
        with tempfile.TemporaryDirectory() as tmp, arm_double(
            delays=delays, host_keys={v: HOST_KEY for v in ("vm-kong", "vm-logs", "vm-monitoring")}
        ) as arm:
            base = azure_topology(Path(tmp))
            data = base.model_dump(mode="json")
            data["azure"].update(max_parallel=parallel, polling_interval_s=poll)
            topo = Topology.model_validate(data)
            clients = clients_for(arm, polling_interval=poll)
            started = time.monotonic()
            report = AzureProvisioner(topology=topo, clients=clients,
                                      ssh_public_key="ssh-ed25519 AAAAbench bench",
                                      known_hosts=Path(tmp) / "known_hosts").provision()
            wall = time.monotonic() - started
            clients.close()
            vm_windows = [(s, d) for rid, kind, s, d in arm.state.op_windows
                          if "/virtualMachines/" in rid and kind == "put"]
            overlap = max(s for s, _ in vm_windows) < min(d for _, d in vm_windows)
            per_vm = ", ".join(f"{k} {v:.2f}s" for k, v in report.seconds.items()
                               if k.startswith("vm-"))
            mode = "parallel  " if parallel > 1 else "sequential"
            print(f"azure {mode}: {wall:6.2f} s total (network {report.seconds['network']:.2f}s;"
                  f" {per_vm}); VM creates overlapped: {overlap}; "
                  f"{len(report.created)} resources created")
            results[parallel] = wall
    print(f"azure speed-up parallel vs sequential: {results[1] / results[8]:.2f}x "
          f"(VM create LRO {vm_seconds:.1f} s each, polled every {poll:.1f} s)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skip-local", action="store_true")
    parser.add_argument("--skip-azure", action="store_true")
    parser.add_argument("--vm-seconds", type=float, default=4.0)
    parser.add_argument("--poll", type=float, default=0.5)
    args = parser.parse_args()
    print(f"command: .venv/bin/python benchmarks/deploy.py {' '.join(sys.argv[1:])}".rstrip())
    print(f"machine: {os.cpu_count()} cores (shared/noisy)")
    if not args.skip_azure:
        bench_azure(args.vm_seconds, args.poll)
    if not args.skip_local:
        with tempfile.TemporaryDirectory(prefix="kongstack-bench-") as tmp:
            bench_local(Path(tmp))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
