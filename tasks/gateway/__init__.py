"""The gateway in front of the pool, behind one protocol (protocol.py): the stack's desired
state (desired.py: the one registration both providers use), the factory (factory.py), and
the two implementations, Kong (kong/) and nginx (nginx/)."""
