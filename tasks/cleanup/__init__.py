"""The cleanup flow's work: plan what carries the stack's owner label/tag, wait for a person's
approval, remove exactly that, verify (steps.py); answering a paused run (approval.py)."""
