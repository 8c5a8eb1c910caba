"""The chaos suite: the engine driven from outside, as an operator would, under injected faults.

Black-box: the daemon is ``tl-engine run --config ...`` in its own process, the venue is
``tl-engine sim`` in its own process, signals arrive over HTTP ``POST /signals`` (or are produced
to Kafka), faults go through the sandbox's ``/sandbox/faults``, orders are counted at the sandbox
by their ``strategyId`` tag and outcomes are read from the daemon's ``log`` sink (one JSON line
per event in its log file). Nothing here is imported by ``engine``; ``tl-engine chaos`` runs it
(``chaos.cli``) and ``tests/chaos/`` runs a short version of every run. The runs, their goals and
the last measured figures: ``docs/reliability.md``.
"""
