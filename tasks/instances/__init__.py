"""Instance drivers: start, list, probe and stop the backend stock API instances. The protocol
(base.py), what drivers share (common.py), containers (docker.py, any Docker-API engine),
gunicorn processes (process.py) and the choice between them (factory.py)."""
