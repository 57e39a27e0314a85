"""The maintenance flow's work: retention (prune.py), the scaling-log analysis (analysis.py,
needs [analysis]), its report (report.py), and the Prefect tasks over them (steps.py)."""
