"""deploy-stack: the Provider protocol and the typed step results (protocol.py), the steps as
Prefect tasks and the run that sequences them (deploy.py), the summary and resume markers
(report.py); the providers themselves are local/ (this machine) and azure/ (ARM + SSH)."""
