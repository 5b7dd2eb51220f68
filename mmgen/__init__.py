"""mmgen: task-targeted training data for small vision-language models (the MM-Gen method)."""
from pathlib import Path


def _conf_dir() -> str:
    """The Hydra config tree: shipped inside the wheel as mmgen/conf, or conf/ in a checkout."""
    package_dir = Path(__file__).resolve().parent
    for candidate in (package_dir / "conf", package_dir.parent / "conf"):
        if (candidate / "config.yaml").is_file():
            return str(candidate)
    raise RuntimeError(f"mmgen's config tree is missing: neither {package_dir / 'conf'} nor "
                       f"{package_dir.parent / 'conf'} holds config.yaml; reinstall mmgen")


CONF_DIR = _conf_dir()  # absolute, so every stage app finds it from any working directory
