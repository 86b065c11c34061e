"""A1111's built-in always-on scripts named in `alwayson_scripts`: "Refiner", "Seed", "Sampler", "Extra options".

A1111 1.7+ builds the Refiner accordion, the seed row and the sampler controls as always-on scripts
(`modules/processing_scripts/refiner.py`, `seed.py`, `sampler.py`, classes of `ScriptBuiltinUI`), and the "Extra options"
section too, so API clients (and payloads copied from the UI) name them in `alwayson_scripts`. Their `setup()` copies the
args onto `p`, but `ScriptBuiltinUI.setup_for_ui_only` is True and the API sets `p.is_api = True` before `p.script_args`,
so `ScriptRunner.setup_scrips(p, is_ui=False)` skips them: through A1111's API their args never reach the job and the
request's own fields (`seed`, `steps`, `sampler_name`, `scheduler`, `refiner_checkpoint`, ...) decide. We do the same:
the names are accepted (case-insensitive, as A1111's `script_name_to_index`) and listed in `/script-info`, their args are
checked for shape, and where they ask for something other than what the job will do, the response's `info.warnings`
says so and names the request field to set instead (A1111 is silent about it).

What each one's `setup()` would set (`setup_values`), in A1111 API field names:
- Refiner `[enabled, checkpoint, switch_at]`: `refiner_checkpoint`/`refiner_switch_at` when enabled with a checkpoint,
  else no refiner.
- Seed `[seed, extra, subseed, subseed_strength, seed_resize_from_w, seed_resize_from_h]`: `seed`; with Extra ticked,
  the variation seed when its strength is > 0 and the resize when both sizes are > 0.
- Sampler `[steps, sampler_name, scheduler]`: the three.
- Extra options: its controls are the settings chosen in `extra_options_txt2img`/`img2img` (none by default); nothing.
"""

from __future__ import annotations

from typing import Any

from app.api.checks import warn
from app.api.errors import ApiError
from app.api.scripts import BUILTIN_ALWAYSON_TITLES, builtin_alwayson

#: lower-cased title → title.
BUILTIN_TITLES: dict[str, str] = {t.lower(): t for t in BUILTIN_ALWAYSON_TITLES}


def _filled(title: str, args: list[Any]) -> list[Any]:
    """The script's args with A1111's `ui()` defaults for the ones not sent (A1111 starts from the defaults)."""
    defaults = next([a["value"] for a in s.args] for s in builtin_alwayson() if s.title == title)
    return list(args[: len(defaults)]) + defaults[len(args):]


def _number(where: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ApiError(422, f"{where}: expected a number, got {value!r}")
    return float(value)


def setup_values(title: str, args: Any, where: str) -> dict[str, Any]:
    """What A1111's `setup()` of the built-in script *title* would set on `p` from *args* (module doc); 422 for args of
    the wrong shape."""
    if isinstance(args, dict):
        raise ApiError(422, f"{where}: A1111's {title} script takes its args as a list")
    values = _filled(title, list(args))
    if title == "Refiner":
        enabled, checkpoint, switch_at = values
        if not enabled or checkpoint in (None, "", "None"):
            return {"refiner_checkpoint": None}
        return {"refiner_checkpoint": str(checkpoint), "refiner_switch_at": _number(f"{where}[2]", switch_at)}
    if title == "Seed":
        seed, extra, subseed, strength, resize_w, resize_h = values
        out: dict[str, Any] = {"seed": int(_number(f"{where}[0]", seed))}
        if extra and _number(f"{where}[3]", strength) > 0:
            out.update(subseed=int(_number(f"{where}[2]", subseed)), subseed_strength=float(strength))
        if extra and _number(f"{where}[4]", resize_w) > 0 and _number(f"{where}[5]", resize_h) > 0:
            out.update(seed_resize_from_w=int(resize_w), seed_resize_from_h=int(resize_h))
        return out
    if title == "Sampler":
        steps, sampler_name, scheduler = values
        return {"steps": int(_number(f"{where}[0]", steps)), "sampler_name": str(sampler_name),
                "scheduler": str(scheduler)}
    return {}


def _job_value(key: str, params: Any) -> Any:
    if key == "refiner_checkpoint":
        return params.refiner_checkpoint or None
    if key in ("seed", "subseed", "subseed_strength", "seed_resize_from_w", "seed_resize_from_h"):
        return getattr(params.seed, key)
    return getattr(params, key)


def _same(key: str, asked: Any, job: Any, catalog: Any) -> bool:
    if key == "refiner_checkpoint" and asked and job and catalog is not None:
        found = catalog.find_checkpoint(str(asked))
        return found is not None and str(found.title) == str(job)
    if key in ("sampler_name", "scheduler"):
        from app.engine.sampling import names  # the pure name table; imported when a request needs it

        try:
            sampler, schedule = names.resolve_names(asked if key == "sampler_name" else "Euler",
                                                    asked if key == "scheduler" else "Automatic")
        except ValueError:  # an unknown name: certainly not what the job uses
            return False
        return (sampler.name if key == "sampler_name" else schedule.label) == job
    if isinstance(asked, float) or isinstance(job, float):
        return job is not None and asked is not None and abs(float(asked) - float(job)) < 1e-9
    return bool(asked == job)


def check_builtin(name: str, title: str, args: Any, params: Any, warnings: list[str], catalog: Any = None) -> None:
    """Check the args of a built-in always-on script and say in *warnings* what they ask for that the job will not
    do (A1111's API does not apply them: module doc). The params are not changed."""
    where = f"alwayson_scripts.{name}.args"
    asked = setup_values(title, args, where)
    differ = [f"{key} {value!r} (the job uses {_job_value(key, params)!r})" for key, value in asked.items()
              if not _same(key, value, _job_value(key, params), catalog)]
    if differ:
        warn(warnings,
             f"alwayson_scripts.{name}: not applied, as in A1111, whose API never runs its built-in {title} script "
             f"(the request's fields decide): {', '.join(differ)}; set those request fields instead")
