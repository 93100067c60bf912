"""kdfair_utils: the helper package behind the kdfair notebook series.

One module per concept: ``trifeature`` / ``datasets`` (data), ``models``, ``distill`` (KD loss),
``train``, ``grid`` (cached teacher/NDS/DS grid), ``experiments`` (profiles and the override
vocabulary), ``paper`` (the paper's numbers and claims), ``results`` / ``stats`` (populations,
typed records, statistics), ``class_bias``, ``group_fairness``, ``individual_fairness``,
``report``, ``runner`` (``kdfair run``), ``lesson`` (notebook setup), ``course`` (student notebooks)
and ``checks`` (the exercises' self-checks), ``validation`` (argument checks), ``paths``, ``cache``,
``plots``, ``cli`` (the ``kdfair`` command).
"""

__version__ = "0.2.0"
