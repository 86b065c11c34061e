"""Settings: the option vocabulary (`schema`), the built-in table (`options`), the store of current values
backed by config.json (`store`), the UI defaults of ui-config.json (`ui_config`) and the model-file settings'
choices from the catalog (`model_choices`).

Imports point one way: schema ← options ← store ← ui_config. This face re-exports the two names most callers
use, `Settings` and `setting_value`; everything else is imported from its module.
"""

from app.settings.store import Settings, setting_value

__all__ = ["Settings", "setting_value"]
