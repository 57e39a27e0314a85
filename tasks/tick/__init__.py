"""The autoscale tick, one module per step: config + lock, repair, observe (world -> core
types), decide (memory + manual-change rule + the pure core), act, record; run.py holds a
tick's context. ``kongstack scale`` comes through the same act and record (manual_scale.py)."""
