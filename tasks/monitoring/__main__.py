"""``python -m tasks.monitoring CONFIG OUT_DIR [SECRETS_DIR]``: render the monitoring files.

The committed files under deployments/ come from
``python -m tasks.monitoring deployments/prometheus/monitoring.yaml deployments
/etc/prometheus/alertmanager-secrets`` (a test checks they are current).
"""

from __future__ import annotations

import sys
from pathlib import Path

from tasks.monitoring import load_monitoring_config, write_monitoring_files

COMMITTED_SECRETS_DIR = Path("/etc/prometheus/alertmanager-secrets")


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3):
        print(__doc__, file=sys.stderr)
        return 2
    cfg = load_monitoring_config(Path(argv[0]))
    secrets = Path(argv[2]) if len(argv) == 3 else COMMITTED_SECRETS_DIR
    files = write_monitoring_files(cfg, Path(argv[1]), secrets_dir=secrets)
    for path in (files.prometheus_config, files.rules, files.alertmanager_config):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
