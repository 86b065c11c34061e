"""A1111's sampler names as infotext writes and reads them (spec §6.1): pure constants.

Infotext knows every A1111 sampler name, including ones the engine does not run (``DPM adaptive``,
``DDIM CFG++``): an image from A1111 must read back with its own names. The samplers the engine
runs are listed in :mod:`app.engine.sampling.names`; this table stays below the engine so that
infotext, file names and NovelAI conversion never import it.
"""

from __future__ import annotations

__all__ = ["DEFAULT_SCHEDULE_LABELS", "SAMPLER_NAMES", "schedule_label"]

#: Sampler name/alias (lower case) -> A1111 sampler name. Used for NovelAI images and for
#: resolving "Automatic" schedule labels without importing the (torch) engine.
SAMPLER_NAMES: dict[str, str] = {}
#: A1111 sampler name -> its default schedule label when the schedule type is "Automatic".
DEFAULT_SCHEDULE_LABELS: dict[str, str] = {}
for _name, _aliases, _sched in (
    ("DPM++ 2M", ("k_dpmpp_2m",), "Karras"), ("DPM++ SDE", ("k_dpmpp_sde",), "Karras"),
    ("DPM++ 2M SDE", ("k_dpmpp_2m_sde",), "Exponential"),
    ("DPM++ 2M SDE Heun", ("k_dpmpp_2m_sde_heun",), "Exponential"),
    ("DPM++ 2S a", ("k_dpmpp_2s_a",), "Karras"), ("DPM++ 3M SDE", ("k_dpmpp_3m_sde",), "Exponential"),
    ("Euler a", ("k_euler_a", "k_euler_ancestral"), None), ("Euler", ("k_euler",), None),
    ("LMS", ("k_lms",), None), ("Heun", ("k_heun",), None), ("DPM2", ("k_dpm_2",), "Karras"),
    ("DPM2 a", ("k_dpm_2_a",), "Karras"), ("DPM fast", ("k_dpm_fast",), None),
    ("DPM adaptive", ("k_dpm_ad",), None), ("Restart", ("restart",), "Karras"), ("DDIM", ("ddim",), None),
    ("DDIM CFG++", ("ddim_cfgpp",), None), ("PLMS", ("plms",), None), ("UniPC", ("unipc",), None),
    ("LCM", ("k_lcm",), None),
):
    for _alias in (_name, *_aliases):
        SAMPLER_NAMES[_alias.lower()] = _name
    if _sched:
        DEFAULT_SCHEDULE_LABELS[_name] = _sched


def schedule_label(sampler_name: str, scheduler: str) -> str:
    """The `Schedule type` A1111 writes: "Automatic" resolves to the sampler's default, if any."""
    if scheduler in ("", "Automatic", "automatic"):
        return DEFAULT_SCHEDULE_LABELS.get(sampler_name, "Automatic")
    return scheduler
