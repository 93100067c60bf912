"""kdfair_utils: the helper package behind the kdfair notebook series.

Modules: ``trifeature`` / ``datasets`` (data), ``models``, ``distill`` (KD loss), ``train``,
``grid`` (cached teacher/NDS/DS grid), ``metrics`` (DPD/EOD, Algorithm 1), ``stats`` (class-bias
Welch tests), ``individual`` (Lipschitz ratio), ``plots``, ``series`` (notebook runner, report),
``cli`` (the ``kdfair`` command).
"""

__version__ = "0.1.0"
