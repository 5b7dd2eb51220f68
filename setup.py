"""Packages for the build; every other setting lives in pyproject.toml.

conf/ stays at the top of the repository (the design card) but must ship with the package, or an
installed mmgen has no config tree: the build maps it to mmgen/conf, where mmgen.CONF_DIR looks
first. pyproject.toml alone cannot add a mapped package to automatic discovery.
"""
from setuptools import find_namespace_packages, setup

# namespace discovery, as pyproject's own: a folder without __init__.py still ships
setup(packages=[*find_namespace_packages(include=["mmgen", "mmgen.*"]), "mmgen.conf"],
      package_dir={"mmgen.conf": "conf"})
