"""Keep the `dlr` package from phoning home.

`dlr` sends device and model data to an AWS endpoint when it is imported and whenever a model loads,
unless `dlr/counter/ccm_config.json` in its installed package says `{"enable_phone_home": false}`
(its own `PhoneHome.get_instance()` turns the feature *on* when that file is missing). We find the
package without importing it, make the file say so, and only then import it. If the file cannot be
written we refuse to import dlr at all, so no connection is ever attempted.
"""

from __future__ import annotations

import importlib.util
import json
import os
import tempfile
from pathlib import Path

from actions.errors import ModelError

CONFIG_NAME = "ccm_config.json"


def dlr_config_path() -> Path:
    """Where the installed dlr package reads its phone-home switch, found without importing dlr."""
    spec = importlib.util.find_spec("dlr")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("the dlr package is not installed; install it with: pip install 'edge-console[device]'")
    return Path(list(spec.submodule_search_locations)[0]) / "counter" / CONFIG_NAME


def ensure_phone_home_disabled() -> Path:
    """Make dlr's config say `enable_phone_home: false`, writing it atomically if needed.

    Returns:
        The config file's path.

    Raises:
        ModelError: the file cannot be written (read-only site-packages, say); dlr must not be imported.
    """
    path = dlr_config_path()
    config: dict = {}
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(config, dict):
            config = {}
    except FileNotFoundError:
        pass
    except (OSError, ValueError):
        config = {}  # unreadable or corrupt: rewrite it
    if config.get("enable_phone_home") is False:
        return path
    config["enable_phone_home"] = False
    try:
        fd, tmp = tempfile.mkstemp(prefix=".ccm_config.", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(config, fh)
        os.replace(tmp, path)
    except OSError as exc:
        raise ModelError(
            f"cannot write {path} to turn off dlr's phone-home ({exc.strerror or exc}); refusing to load dlr. "
            f"Create it once as the owner of that Python environment with the content {{\"enable_phone_home\": false}}"
        ) from None
    return path


def import_dlr():
    """Import dlr with phone-home off, and check that it really is off."""
    ensure_phone_home_disabled()
    import dlr  # noqa: F401  (the import is the point)
    from dlr.counter import phone_home

    if phone_home.PhoneHome.is_enabled() or phone_home.MGR is not None:
        raise ModelError("dlr's phone-home is still enabled after writing its config; refusing to use dlr")
    return dlr
