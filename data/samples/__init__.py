"""Sample logs shipped with shopsim so the demo runs without any download.

- ``rees46``: the first 17,434 events (3 hours) of the REES46 "eCommerce behavior data from
  multi category store", October 2019. Licence: free to use with attribution to REES46 /
  Open CDP (see ``REES46_SOURCE.md``).
- ``uci``: a random 40,000-line sample of the UCI "Online Retail" data set (Chen, 2015),
  CC BY 4.0 (see ``UCI_SOURCE.md``).
- ``obd``: the small Open Bandit Dataset sample (ZOZOTOWN; 10,000 impressions logged by a
  uniform random policy and 10,000 by Bernoulli Thompson Sampling, 80 items, 3 slots), a folder
  ``obd/{random,bts}/{all,item_context}.csv.gz``. CC BY 4.0 (see ``OBD_SOURCE.md``); the real
  data for off-policy evaluation (``shopsim ope obd``).
- ``toy``: a synthetic 32-item shop whose best slate is known (:mod:`shopsim.envs.toy`),
  for agents' learning tests.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from shopsim.errors import ShopsimError

SAMPLES: dict[str, tuple[str, str]] = {
    "rees46": ("rees46_events.csv.gz", "rees46"),
    "uci": ("uci_online_retail.csv.gz", "uci"),
    "toy": ("toy_events.csv.gz", "events"),
    "obd": ("obd", "obd"),
}


def sample_path(name: str) -> Path:
    """Return the path of a bundled sample log.

    :param name: one of :data:`SAMPLES` (``"rees46"``, ``"uci"``, ``"toy"`` or ``"obd"``).
    :return: the file's path inside the installed package (for ``obd``: the folder holding
        ``random/`` and ``bts/``).
    """
    if name not in SAMPLES:
        raise ShopsimError(f"unknown sample {name!r}; bundled samples are: {', '.join(sorted(SAMPLES))}")
    return Path(str(resources.files(__name__).joinpath(SAMPLES[name][0])))


def sample_format(name: str) -> str:
    """Return the ``--format`` that reads bundled sample ``name``."""
    sample_path(name)
    return SAMPLES[name][1]
